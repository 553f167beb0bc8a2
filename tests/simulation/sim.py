"""A seeded, deterministic simulator of real ConsensusCore nodes over a hostile network.

One logical clock (a priority queue of events) drives N validators. The network delays each
message randomly, loses, duplicates and reorders them, and partitions validators until a heal
time. Honest nodes crash and restart from their persisted signer state and stored chain. The
simulator plays the shell: on Decide it stores the block, then feeds BlockApplied; it plays
block sync (CommitReceived from another node's store) when a node sees a higher height and on
a periodic sync tick. Up to f validators are Byzantine: silent, equivocating (conflicting
votes and proposals signed with the raw key, bypassing the Signer) or split-brained (two
honest-looking cores, each talking to half of the network).

Checkers raise SimulationFailure (its message starts with the seed): agreement, validity, no
honest double-sign, and liveness after the heal.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from consensus import (
    BlockApplied,
    Broadcast,
    CommitReceived,
    ConsensusConfig,
    ConsensusCore,
    Decide,
    EventsAvailable,
    EvidenceFound,
    MemorySignerPersistence,
    Message,
    Proposal,
    ProposalReceived,
    ScheduleTimeout,
    Signer,
    Start,
    Step,
    Tick,
    TimeoutFired,
    VoteReceived,
    decode_message,
    encode_message,
    proposal_sign_bytes,
)
from consensus.messages import VOTE_STEP
from ledger import crypto
from ledger.blocks import Block, Commit, Header, Validator, ValidatorSet, Vote, vote_sign_bytes
from ledger.errors import BadSignature
from ledger.merkle import leaf_hash, root_from_leaf_hashes

CHAIN = "sim-chain"
GENESIS_HASH = crypto.sha256(b"sim-genesis")
ZERO = b"\x00" * 32
BLOCK_LIMIT = 4
TICK_MS = 500
SYNC_MS = 1000
SYNC_GAP_MS = 200
HONEST = "honest"
SILENT = "silent"
EQUIVOCATE = "equivocate"
SPLIT = "split"
BYZANTINE_STRATEGIES = (SILENT, EQUIVOCATE, SPLIT)

# event kinds, in the heap as (time, seq, kind, payload)
DELIVER, TIMER, TICK, SYNC, TX, TX_ARRIVE, APPLY, CRASH, RESTART, HEAL = range(10)


def events_root(events: tuple[bytes, ...]) -> bytes:
    """The Merkle root a header commits its events to (as the ledger computes it)."""
    return root_from_leaf_hashes([leaf_hash(e) for e in events])


class SimulationFailure(AssertionError):
    """A checker found a violation; the message starts with the seed to replay."""


_VERIFIED: dict[tuple[bytes, bytes, bytes], bool] = {}


def cached_verify(public_key: bytes, message: bytes, signature: bytes) -> None:
    """crypto.verify with a process-wide cache (simulator only: signatures repeat a lot)."""
    cache_key = (public_key, message, signature)
    ok = _VERIFIED.get(cache_key)
    if ok is None:
        if len(_VERIFIED) > 200_000:
            _VERIFIED.clear()
        try:
            crypto.verify(public_key, message, signature)
            ok = True
        except BadSignature:
            ok = False
        _VERIFIED[cache_key] = ok
    if not ok:
        raise BadSignature("signature does not verify")


_KEYS: dict[int, crypto.PrivateKey] = {}


def sim_key(index: int) -> crypto.PrivateKey:
    """Deterministic validator keys (derived from the index, shared by every seed)."""
    if index not in _KEYS:
        _KEYS[index] = crypto.PrivateKey(ec.derive_private_key(0xB10C0000 + index, ec.SECP256R1()))
    return _KEYS[index]


def sim_validators(n: int) -> ValidatorSet:
    return ValidatorSet(tuple(Validator(f"n{i}", sim_key(i).public_key, 1) for i in range(n)))


# -- checkers ---------------------------------------------------------------------------------


class AgreementChecker:
    """No two different blocks are committed at one height by honest nodes."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.decided: dict[int, tuple[bytes, str]] = {}

    def record(self, node: str, height: int, block_hash: bytes) -> None:
        first = self.decided.setdefault(height, (block_hash, node))
        if first[0] != block_hash:
            raise SimulationFailure(
                f"seed {self.seed}: agreement violated at height {height}: {first[1]} "
                f"committed {first[0].hex()[:12]}, {node} committed {block_hash.hex()[:12]}"
            )


class DoubleSignChecker:
    """No honest validator signs two different sign-bytes for one (height, round, step)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.signed: dict[tuple[bytes, int, int, int], bytes] = {}

    def record(self, validator: bytes, height: int, round: int, step: int, data: bytes) -> None:
        first = self.signed.setdefault((validator, height, round, step), data)
        if first != data:
            raise SimulationFailure(
                f"seed {self.seed}: honest validator {validator.hex()[:12]} double-signed "
                f"height {height} round {round} step {Step(step).name}"
            )


class ValidityChecker:
    """Every committed block was built by some node and validly extends the committed chain."""

    def __init__(self, seed: int, validators: ValidatorSet) -> None:
        self.seed = seed
        self.validators = validators
        self.built: set[bytes] = set()

    def record(self, node: str, chain: list[Block], block: Block, commit: Commit) -> None:
        def fail(why: str) -> SimulationFailure:
            return SimulationFailure(
                f"seed {self.seed}: {node} committed an invalid block at height "
                f"{len(chain) + 1}: {why}"
            )

        header = block.header
        prev = chain[-1].block_hash if chain else GENESIS_HASH
        if block.block_hash not in self.built:
            raise fail("nobody proposed it")
        if header.height != len(chain) + 1 or header.prev != prev or header.chain != CHAIN:
            raise fail("it does not extend the chain")
        if not all(e.startswith(b"tx-") for e in block.events):
            raise fail("bad events")
        committed = {e for b in chain for e in b.events}
        if len(set(block.events)) != len(block.events) or committed & set(block.events):
            raise fail("duplicate events")
        if commit.block_hash != block.block_hash or commit.height != header.height:
            raise fail("the commit is for another block")
        signers = set()
        for entry in commit.signatures:
            message = vote_sign_bytes(
                CHAIN, commit.height, commit.round, "precommit", commit.block_hash
            )
            cached_verify(entry.validator, message, entry.signature)
            signers.add(entry.validator)
        if len(signers) != len(commit.signatures) or not self.validators.has_quorum(
            self.validators.power_of(signers)
        ):
            raise fail("the commit lacks a quorum")


def check_liveness(seed: int, heights: dict[str, int], target: int, deadline: int) -> None:
    """Every honest node reached `target` committed blocks by the deadline."""
    behind = {name: h for name, h in heights.items() if h < target}
    if behind:
        raise SimulationFailure(
            f"seed {seed}: liveness violated: by t={deadline} ms these honest nodes have not "
            f"committed {target} blocks: {behind}"
        )


# -- scenarios --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """Everything random about one run is drawn from `seed`; these are the knobs."""

    seed: int
    validators: int = 4
    byzantine: tuple[str, ...] = ()
    heights_after_heal: int = 3
    loss: float = 0.0
    duplicate: float = 0.0
    max_delay_ms: int = 50
    partition: bool = False
    crashes: int = 0
    heal_at: int = 0
    liveness_budget_ms: int = 60_000
    tx_gap_ms: int = 800
    idle_block_interval_ms: int = 2000
    check_liveness: bool = True
    honest_cut: tuple[tuple[int, int], ...] = ()
    end_at: int = 0

    @classmethod
    def random(cls, seed: int, validators: int | None = None) -> Scenario:
        rng = random.Random(f"scenario-{seed}")
        n = validators or rng.choice((4, 7))
        f = (n - 1) // 3
        byzantine = tuple(rng.choice(BYZANTINE_STRATEGIES) for _ in range(rng.randint(0, f)))
        faulty = rng.random() < 0.7
        return cls(
            seed=seed,
            validators=n,
            byzantine=byzantine,
            heights_after_heal=rng.randint(3, 4),
            loss=rng.choice((0.02, 0.1, 0.3)) if faulty else 0.0,
            duplicate=rng.choice((0.0, 0.05, 0.2)),
            max_delay_ms=rng.choice((20, 100, 400)),
            partition=faulty and rng.random() < 0.5,
            crashes=rng.randint(0, 2) if faulty else 0,
            heal_at=rng.randint(1000, 6000) if faulty else 0,
            tx_gap_ms=rng.choice((200, 1500, 6000)),
            idle_block_interval_ms=rng.choice((0, 1000, 3000)),
        )

    @classmethod
    def fork(cls, seed: int) -> Scenario:
        """2 of 4 validators split-brained and the two honest ones cut apart: safety can break."""
        return cls(
            seed=seed,
            validators=4,
            byzantine=(SPLIT, SPLIT),
            heights_after_heal=3,
            check_liveness=False,
            honest_cut=((0, 1),),
            heal_at=10**9,
            end_at=20_000,
        )


# -- nodes ------------------------------------------------------------------------------------


@dataclass
class Endpoint:
    """One network address: an honest node, an equivocator, or one side of a split-brain."""

    name: str
    index: int
    role: str
    side: int
    key: crypto.PrivateKey
    persistence: MemorySignerPersistence = field(default_factory=MemorySignerPersistence)
    chain: list[Block] = field(default_factory=list)
    commits: list[Commit] = field(default_factory=list)
    committed_events: set[bytes] = field(default_factory=set)
    mempool: dict[bytes, None] = field(default_factory=dict)
    core: ConsensusCore | None = None
    incarnation: int = 0
    crashed: bool = False
    last_sync: int = -(10**9)
    seen_values: dict[tuple[int, int], list[bytes]] = field(default_factory=dict)

    @property
    def honest(self) -> bool:
        return self.role == HONEST


class SimApp:
    """The BlockSource of one endpoint: blocks chain on its store, events from its mempool."""

    def __init__(self, sim: Simulation, endpoint: Endpoint) -> None:
        self.sim = sim
        self.endpoint = endpoint

    def _tip(self) -> tuple[bytes, int]:
        chain = self.endpoint.chain
        return (chain[-1].block_hash, chain[-1].header.time) if chain else (GENESIS_HASH, 0)

    def has_pending(self) -> bool:
        return bool(self.endpoint.mempool)

    def build_block(self, height: int, round: int, time: int, proposer: bytes) -> Block:
        events = list(self.endpoint.mempool)[:BLOCK_LIMIT]
        if self.endpoint.role == SPLIT:
            events.append(b"tx-side-%d-%d-%d" % (self.endpoint.index, self.endpoint.side, height))
        return self.sim.make_block(self._tip(), height, time, proposer, tuple(events))

    def validate_block(self, block: Block) -> bool:
        header = block.header
        prev, prev_time = self._tip()
        events = block.events
        return (
            header.height == len(self.endpoint.chain) + 1
            and header.prev == prev
            and header.chain == CHAIN
            and header.time > prev_time
            and header.validators == self.sim.validator_hash
            and all(e.startswith(b"tx-") for e in events)
            and len(set(events)) == len(events)
            and not any(e in self.endpoint.committed_events for e in events)
        )


@dataclass
class Result:
    scenario: Scenario
    heights: dict[str, int]
    end_time: int
    deliveries: int
    evidence: int
    rounds: int
    target: int


class Simulation:
    """One run of one scenario; `run()` raises SimulationFailure on any violation."""

    def __init__(self, scenario: Scenario, log: Callable[[str], None] | None = None) -> None:
        self.scenario = scenario
        self.seed = scenario.seed
        self.rng = random.Random(scenario.seed)
        self.log = log
        n = scenario.validators
        self.n = n
        self.validators = sim_validators(n)
        self.validator_hash = self.validators.hash()
        self.config = ConsensusConfig(idle_block_interval_ms=scenario.idle_block_interval_ms)
        self.agreement = AgreementChecker(self.seed)
        self.double_sign = DoubleSignChecker(self.seed)
        self.validity = ValidityChecker(self.seed, self.validators)
        self.queue: list[tuple[int, int, int, Any]] = []
        self.seq = 0
        self.now = 0
        self.deliveries = 0
        self.evidence = 0
        self.max_round = 0
        self.target: int | None = None
        self.tx_counter = 0
        roles = [HONEST] * (n - len(scenario.byzantine)) + list(scenario.byzantine)
        self.roles = roles
        self.endpoints: list[list[Endpoint]] = []
        for i, role in enumerate(roles):
            if role == SILENT:
                self.endpoints.append([])
            elif role == SPLIT:
                self.endpoints.append(
                    [Endpoint(f"n{i}/s{s}", i, SPLIT, s, sim_key(i)) for s in (0, 1)]
                )
            else:
                side = i % 2 if scenario.honest_cut else self.rng.randint(0, 1)
                self.endpoints.append([Endpoint(f"n{i}", i, role, side, sim_key(i))])
        self.honest = [e for group in self.endpoints for e in group if e.honest]
        self.blocked: set[tuple[int, int]] = set()
        for a, b in scenario.honest_cut:
            self.blocked |= {(a, b), (b, a)}
        if scenario.partition:
            group = {i for i in range(n) if self.rng.random() < 0.5}
            for a in range(n):
                for b in range(n):
                    if (a in group) != (b in group):
                        self.blocked.add((a, b))

    # -- plumbing ---------------------------------------------------------------------------

    def trace(self, text: str) -> None:
        if self.log is not None:
            self.log(f"{self.now:>8} ms  {text}")

    def push(self, delay: int, kind: int, payload: Any) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (self.now + delay, self.seq, kind, payload))

    def faulty(self) -> bool:
        return self.now < self.scenario.heal_at

    def make_block(
        self,
        tip: tuple[bytes, int],
        height: int,
        time: int,
        proposer: bytes,
        events: tuple[bytes, ...],
    ) -> Block:
        prev, prev_time = tip
        header = Header(
            chain=CHAIN,
            height=height,
            time=max(time, prev_time + 1),
            prev=prev,
            proposer=proposer,
            events_root=events_root(events),
            tree_size=height,
            tree_root=ZERO,
            state_root=ZERO,
            validators=self.validator_hash,
        )
        block = Block(header, events)
        self.validity.built.add(block.block_hash)
        return block

    # -- lifecycle --------------------------------------------------------------------------

    def boot(self, endpoint: Endpoint) -> None:
        endpoint.crashed = False
        endpoint.incarnation += 1
        signer = Signer(endpoint.key, endpoint.persistence)
        endpoint.core = ConsensusCore(
            self.config,
            CHAIN,
            self.validators,
            signer,
            SimApp(self, endpoint),
            len(endpoint.chain) + 1,
            verify=cached_verify,
        )
        self.feed(endpoint, Start(self.now))
        self.push(self.rng.randint(1, TICK_MS), TICK, (endpoint, endpoint.incarnation))
        self.push(self.rng.randint(1, SYNC_MS), SYNC, (endpoint, endpoint.incarnation))

    def crash(self, endpoint: Endpoint) -> None:
        self.trace(f"{endpoint.name} crashes at height {len(endpoint.chain) + 1}")
        endpoint.crashed = True
        endpoint.incarnation += 1
        endpoint.core = None
        endpoint.mempool.clear()

    def schedule_faults(self) -> None:
        scenario = self.scenario
        if scenario.partition or scenario.honest_cut:
            self.push(scenario.heal_at, HEAL, None)
        for _ in range(scenario.crashes):
            if not self.honest or scenario.heal_at <= 100:
                break
            victim = self.rng.choice(self.honest)
            at = self.rng.randint(0, scenario.heal_at - 100)
            back = min(scenario.heal_at, at + self.rng.randint(100, 3000))
            self.push(at, CRASH, victim)
            self.push(back, RESTART, victim)

    # -- the shell ------------------------------------------------------------------------

    def feed(self, endpoint: Endpoint, event: Any) -> None:
        core = endpoint.core
        assert core is not None
        before = (core.height, core.round)
        outputs = core.handle(event)
        if self.log is not None and (core.height, core.round) != before and core.round > 0:
            self.trace(f"{endpoint.name} at height {core.height} round {core.round}")
        self.max_round = max(self.max_round, core.round)
        for output in outputs:
            if isinstance(output, Broadcast):
                self.broadcast(endpoint, output.message)
            elif isinstance(output, ScheduleTimeout):
                timer = TimeoutFired(output.kind, output.height, output.round, 0)
                self.push(output.delay_ms, TIMER, (endpoint, endpoint.incarnation, timer))
            elif isinstance(output, EvidenceFound):
                self.on_evidence(endpoint, output)
        for output in outputs:
            if isinstance(output, Decide):
                self.on_decide(endpoint, output.block, output.commit)

    def on_evidence(self, endpoint: Endpoint, output: EvidenceFound) -> None:
        evidence = output.evidence
        evidence.verify(CHAIN, self.validators)
        culprit = next(i for i in range(self.n) if sim_key(i).public_key == evidence.validator)
        if self.roles[culprit] == HONEST:
            raise SimulationFailure(f"seed {self.seed}: evidence against honest n{culprit}")
        self.evidence += 1
        self.trace(f"{endpoint.name} found evidence against n{culprit}")

    def on_decide(self, endpoint: Endpoint, block: Block, commit: Commit) -> None:
        height = block.header.height
        if endpoint.honest:
            self.validity.record(endpoint.name, endpoint.chain, block, commit)
            self.agreement.record(endpoint.name, height, block.block_hash)
        assert height == len(endpoint.chain) + 1
        endpoint.chain.append(block)
        endpoint.commits.append(commit)
        endpoint.committed_events.update(block.events)
        for event in block.events:
            endpoint.mempool.pop(event, None)
        self.trace(
            f"{endpoint.name} commits height {height} round {commit.round} "
            f"{block.block_hash.hex()[:12]} ({len(block.events)} events)"
        )
        self.push(self.rng.randint(0, 20), APPLY, (endpoint, endpoint.incarnation, height))

    def record_signature(self, endpoint: Endpoint, message: Message) -> None:
        if isinstance(message, Proposal):
            slot = (message.proposer, message.height, message.round, int(Step.PROPOSE))
        else:
            slot = (message.validator, message.height, message.round, int(VOTE_STEP[message.type]))
        self.double_sign.record(*slot, message.sign_bytes(CHAIN))

    def route(self, sender: Endpoint, index: int) -> Endpoint | None:
        group = self.endpoints[index]
        if not group:
            return None
        if len(group) == 1:
            target = group[0]
            return None if sender.role == SPLIT and target.side != sender.side else target
        return group[sender.side]

    def broadcast(self, sender: Endpoint, message: Message) -> None:
        own = (
            message.proposer if isinstance(message, Proposal) else message.validator
        ) == sender.key.public_key
        if sender.honest and own:
            self.record_signature(sender, message)
        peers = [i for i in range(self.n) if i != sender.index]
        if sender.role == EQUIVOCATE and own:
            self.rng.shuffle(peers)
            half = set(peers[: len(peers) // 2])
            other = self.conflicting(sender, message)
            for i in peers:
                target = self.route(sender, i)
                if target is not None:
                    self.send(sender, target, other if i in half else message)
            return
        for i in peers:
            target = self.route(sender, i)
            if target is not None:
                self.send(sender, target, message)

    def send(self, sender: Endpoint, target: Endpoint, message: Message) -> None:
        if self.faulty():
            if (sender.index, target.index) in self.blocked:
                return
            if self.rng.random() < self.scenario.loss:
                return
        self.push(self.rng.randint(1, self.scenario.max_delay_ms), DELIVER, (target, message))
        if self.rng.random() < self.scenario.duplicate:
            self.push(self.rng.randint(1, self.scenario.max_delay_ms), DELIVER, (target, message))

    def deliver(self, target: Endpoint, message: Message) -> None:
        core = target.core
        if target.crashed or core is None:
            return
        self.deliveries += 1
        if self.rng.random() < 0.03:
            message = decode_message(encode_message(message))
        if isinstance(message, Proposal):
            target.seen_values.setdefault((message.height, message.round), []).append(
                message.block_hash
            )
            self.feed(target, ProposalReceived(message, self.now))
        else:
            self.feed(target, VoteReceived(message, self.now))
        if message.height > core.height and self.now - target.last_sync >= SYNC_GAP_MS:
            self.sync(target)

    def reachable(self, a: Endpoint, b: Endpoint) -> bool:
        return not b.crashed and not (self.faulty() and (a.index, b.index) in self.blocked)

    def sync(self, endpoint: Endpoint) -> None:
        """Block sync: CommitReceived for the next height from a reachable honest store."""
        core = endpoint.core
        if core is None or core.decision is not None:
            return
        endpoint.last_sync = self.now
        height = core.height
        sources = [
            e
            for e in self.honest
            if e is not endpoint
            and len(e.chain) >= height
            and (endpoint.role != SPLIT or e.side == endpoint.side)
            and self.reachable(endpoint, e)
        ]
        if not sources:
            return
        source = self.rng.choice(sources)
        self.trace(f"{endpoint.name} syncs height {height} from {source.name}")
        block, commit = source.chain[height - 1], source.commits[height - 1]
        self.feed(endpoint, CommitReceived(block, commit, self.now))

    # -- Byzantine behaviour ----------------------------------------------------------------

    def conflicting(self, sender: Endpoint, message: Message) -> Message:
        """A second, different message for the same slot, signed with the raw key."""
        key = sender.key
        if isinstance(message, Vote):
            options = [
                v
                for v in sender.seen_values.get((message.height, message.round), [])
                if v != message.block_hash
            ]
            if message.block_hash is not None:
                options.append(None)  # type: ignore[arg-type]
            value = self.rng.choice(options) if options else self.rng.randbytes(32)
            data = vote_sign_bytes(CHAIN, message.height, message.round, message.type, value)
            return replace(message, block_hash=value, signature=key.sign(data))
        block = message.block
        if self.rng.random() < 0.3:
            events: tuple[bytes, ...] = (b"bad",)
        else:
            self.tx_counter += 1
            events = (*block.events, b"tx-byz-%d" % self.tx_counter)
        header = replace(block.header, events_root=events_root(events))
        other = Block(header, events)
        self.validity.built.add(other.block_hash)
        data = proposal_sign_bytes(
            CHAIN, message.height, message.round, other.block_hash, message.valid_round
        )
        return replace(message, block=other, signature=key.sign(data))

    # -- events ---------------------------------------------------------------------------

    def new_transaction(self) -> None:
        self.tx_counter += 1
        tx = b"tx-%d-%d" % (self.seed, self.tx_counter)
        for group in self.endpoints:
            for endpoint in group:
                self.push(self.rng.randint(1, 50), TX_ARRIVE, (endpoint, endpoint.incarnation, tx))
        gap = max(1, int(self.rng.expovariate(1 / self.scenario.tx_gap_ms)))
        self.push(gap, TX, None)

    def tx_arrives(self, endpoint: Endpoint, incarnation: int, tx: bytes) -> None:
        if endpoint.crashed or incarnation != endpoint.incarnation or endpoint.core is None:
            return
        if tx in endpoint.committed_events or tx in endpoint.mempool:
            return
        was_empty = not endpoint.mempool
        endpoint.mempool[tx] = None
        if was_empty:
            self.feed(endpoint, EventsAvailable(self.now))

    def heights(self) -> dict[str, int]:
        return {e.name: len(e.chain) for e in self.honest}

    def done(self) -> bool:
        return self.target is not None and all(len(e.chain) >= self.target for e in self.honest)

    def run(self) -> Result:
        scenario = self.scenario
        self.trace(f"scenario {scenario}")
        for group in self.endpoints:
            for endpoint in group:
                self.boot(endpoint)
        self.schedule_faults()
        self.push(self.rng.randint(0, scenario.tx_gap_ms), TX, None)
        end = scenario.end_at or scenario.heal_at + scenario.liveness_budget_ms
        while self.queue:
            time, _, kind, payload = heapq.heappop(self.queue)
            if time > end:
                break
            self.now = time
            if self.target is None and time >= scenario.heal_at:
                self.on_heal()
            self.step(kind, payload)
            if self.done():
                break
        if scenario.check_liveness:
            if self.target is None:
                self.on_heal()
            assert self.target is not None
            check_liveness(self.seed, self.heights(), self.target, end)
        return Result(
            scenario,
            self.heights(),
            self.now,
            self.deliveries,
            self.evidence,
            self.max_round,
            self.target or 0,
        )

    def on_heal(self) -> None:
        self.target = max(len(e.chain) for e in self.honest) + self.scenario.heights_after_heal
        self.trace(f"faults stop; every honest node must commit {self.target} blocks")

    def step(self, kind: int, payload: Any) -> None:
        if kind == DELIVER:
            self.deliver(*payload)
        elif kind == TIMER:
            endpoint, incarnation, timer = payload
            if incarnation == endpoint.incarnation and endpoint.core is not None:
                self.feed(endpoint, replace(timer, now=self.now))
        elif kind == TICK:
            endpoint, incarnation = payload
            if incarnation == endpoint.incarnation and endpoint.core is not None:
                self.feed(endpoint, Tick(self.now))
                self.push(TICK_MS, TICK, payload)
        elif kind == SYNC:
            endpoint, incarnation = payload
            if incarnation == endpoint.incarnation and endpoint.core is not None:
                self.sync(endpoint)
                self.push(SYNC_MS, SYNC, payload)
        elif kind == APPLY:
            endpoint, incarnation, height = payload
            if incarnation == endpoint.incarnation and endpoint.core is not None:
                self.feed(endpoint, BlockApplied(height, self.now))
                self.sync(endpoint)
        elif kind == TX:
            self.new_transaction()
        elif kind == TX_ARRIVE:
            self.tx_arrives(*payload)
        elif kind == CRASH:
            if not payload.crashed:
                self.crash(payload)
        elif kind == RESTART:
            if payload.crashed:
                self.trace(f"{payload.name} restarts at height {len(payload.chain) + 1}")
                self.boot(payload)
        elif kind == HEAL:
            self.trace("the partition heals")


def run_seed(seed: int, log: Callable[[str], None] | None = None, **overrides: Any) -> Result:
    """Run the random scenario of `seed` (fields of Scenario can be overridden)."""
    scenario = replace(Scenario.random(seed, overrides.pop("validators", None)), **overrides)
    return Simulation(scenario, log).run()


__all__ = [
    "AgreementChecker",
    "DoubleSignChecker",
    "Result",
    "Scenario",
    "Simulation",
    "SimulationFailure",
    "ValidityChecker",
    "check_liveness",
    "run_seed",
]
