"""The votes of one (height, round, type): power per value, thresholds and equivocation.

Callers add only votes whose signature they checked. Thresholds come from the validator set:
`has_quorum` (> 2/3) and `exceeds_one_third` (> 1/3). Each validator counts once toward the
power of "any vote" and once per value it voted for. A second, different vote from a validator
is equivocation: the first such pair is kept as `Evidence`, and the conflicting vote counts for
its own value only if that value is relevant (nil, or a proposed block: `relevant`), as in the
paper, where 2f+1 <PREVOTE, id(v)> counts every distinct sender of that message; otherwise it is
parked (bounded) until `promote(value)` says the value became relevant. Counting a Byzantine
vote for two values is safe (two quorums for different values need more than 1/3 equivocators)
and needed for liveness: another correct process may have seen only the other vote.
"""

from __future__ import annotations

from collections.abc import Callable

from consensus.errors import NoQuorum
from consensus.messages import Evidence
from ledger.blocks import PRECOMMIT, Commit, CommitSignature, ValidatorSet, Vote

MAX_PARKED_PER_VALIDATOR = 2


def _always(value: bytes | None) -> bool:
    return True


class VoteSet:
    """Prevotes or precommits of one round of one height; a value is a block hash or None (nil)."""

    def __init__(
        self,
        validators: ValidatorSet,
        height: int,
        round: int,
        vote_type: str,
        relevant: Callable[[bytes | None], bool] = _always,
    ) -> None:
        self.validators = validators
        self.height = height
        self.round = round
        self.type = vote_type
        self._relevant = relevant
        self._first: dict[bytes, Vote] = {}
        self._by_value: dict[bytes | None, dict[bytes, Vote]] = {}
        self._power: dict[bytes | None, int] = {}
        self._total = 0
        self._parked: dict[bytes, dict[bytes | None, Vote]] = {}
        self._evidence: dict[bytes, Evidence] = {}

    def get(self, validator: bytes) -> Vote | None:
        """The first vote counted from `validator`, if any."""
        return self._first.get(validator)

    def seen(self, validator: bytes, block_hash: bytes | None) -> bool:
        """Whether this validator's vote for `block_hash` is already held (no need to verify)."""
        if validator in self._by_value.get(block_hash, {}):
            return True
        return block_hash in self._parked.get(validator, {})

    def add(self, vote: Vote) -> Evidence | None:
        """Add a verified vote; return Evidence the first time its validator equivocates."""
        assert (vote.height, vote.round, vote.type) == (self.height, self.round, self.type)
        assert self.validators.get(vote.validator) is not None
        if self.seen(vote.validator, vote.block_hash):
            return None
        first = self._first.get(vote.validator)
        if first is None:
            self._first[vote.validator] = vote
            self._total += self._power_of(vote.validator)
            self._count(vote)
            return None
        if self._relevant(vote.block_hash):
            self._count(vote)
        else:
            parked = self._parked.setdefault(vote.validator, {})
            if len(parked) >= MAX_PARKED_PER_VALIDATOR:
                del parked[next(iter(parked))]
            parked[vote.block_hash] = vote
        if vote.validator in self._evidence:
            return None
        evidence = Evidence.of(first, vote)
        self._evidence[vote.validator] = evidence
        return evidence

    def promote(self, value: bytes | None) -> None:
        """Count the parked conflicting votes for `value`, which became relevant."""
        for validator, parked in self._parked.items():
            vote = parked.pop(value, None)
            if vote is not None and validator not in self._by_value.get(value, {}):
                self._count(vote)

    def remove(self, validator: bytes) -> None:
        """Forget every vote of `validator` (bounded buffering of far-future rounds)."""
        if self._first.pop(validator, None) is None:
            return
        power = self._power_of(validator)
        self._total -= power
        for value, voters in list(self._by_value.items()):
            if voters.pop(validator, None) is not None:
                self._power[value] -= power
            if not voters:
                del self._by_value[value]
                del self._power[value]
        self._parked.pop(validator, None)
        self._evidence.pop(validator, None)

    def is_empty(self) -> bool:
        """No vote of anyone is held (every voter was removed)."""
        return not self._first

    def _power_of(self, validator: bytes) -> int:
        member = self.validators.get(validator)
        assert member is not None
        return member.power

    def _count(self, vote: Vote) -> None:
        self._by_value.setdefault(vote.block_hash, {})[vote.validator] = vote
        self._power[vote.block_hash] = self._power.get(vote.block_hash, 0) + self._power_of(
            vote.validator
        )

    @property
    def evidence(self) -> tuple[Evidence, ...]:
        return tuple(self._evidence.values())

    @property
    def total_power(self) -> int:
        """Power of the distinct validators that voted, whatever they voted."""
        return self._total

    def votes(self) -> tuple[Vote, ...]:
        """Every counted vote (an equivocator's votes for several values included)."""
        return tuple(v for voters in self._by_value.values() for v in voters.values())

    def power_for(self, value: bytes | None) -> int:
        return self._power.get(value, 0)

    def has_quorum_for(self, value: bytes | None) -> bool:
        """More than 2/3 of the power voted for `value` (None: nil)."""
        return self.validators.has_quorum(self._power.get(value, 0))

    def has_quorum_any(self) -> bool:
        """More than 2/3 of the power voted, for anything (the paper's 2f+1 <*, ..., *>)."""
        return self.validators.has_quorum(self._total)

    def has_one_third_any(self) -> bool:
        return self.validators.exceeds_one_third(self._total)

    def quorum_value(self) -> tuple[bool, bytes | None]:
        """(True, value) if some value (possibly nil) has more than 2/3, else (False, None)."""
        for value, power in self._power.items():
            if self.validators.has_quorum(power):
                return True, value
        return False, None

    def quorum_blocks(self) -> list[bytes]:
        """Block hashes with more than 2/3 of the power (several only beyond f Byzantine)."""
        return [
            value
            for value, power in self._power.items()
            if value is not None and self.validators.has_quorum(power)
        ]

    def make_commit(self, block_hash: bytes) -> Commit:
        """The commit certificate from these precommits for `block_hash` (validator-set order)."""
        if self.type != PRECOMMIT:
            raise NoQuorum("a commit is made of precommits")
        if not self.has_quorum_for(block_hash):
            raise NoQuorum(f"no quorum of {self.type}s for this block in round {self.round}")
        voters = self._by_value[block_hash]
        signatures = tuple(
            CommitSignature(v.public_key, voters[v.public_key].signature)
            for v in self.validators.validators
            if v.public_key in voters
        )
        return Commit(self.height, self.round, block_hash, signatures)


__all__ = ["VoteSet"]
