"""Following the validator set: whom this node sends to and whom its peer port accepts.

After each block the set in force at the next height and the one after (a change takes
effect two heights after the block that decides it, docs/PROTOCOL.md §19) decide:
- the peer links: the configured peers plus every validator of those two sets (by the URL
  its entry names), so a new validator is reached from its first height and a removed one
  stops receiving consensus traffic;
- the keys the peer port accepts: the configured ones, every key any validator set of the
  chain has held (so a removed validator still follows as a full node), the keys named by
  open add-validator proposals (so a joining full node can sync before it is approved), and
  the node's own (its operator's tools: snapshot, backup);
- which senders' events are not relayed (validators gossip to every validator themselves).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from itertools import islice

from ledger import codec, governance
from ledger.blocks import ValidatorSet
from ledger.rules import PROPOSAL, PROPOSAL_OPEN, TRANSITION
from ledger.store import Store
from node.server.executor import BlockExecutor
from node.server.p2p import Network, PeerLink
from node.server.peer_auth import PeerAuthenticator

log = logging.getLogger("provledger.membership")

# Open proposals looked at for keys to let in (each one was signed by a validator).
MAX_PROPOSALS_SCANNED = 1_024
GOVERNANCE_PREFIXES = (PROPOSAL, TRANSITION)


class Membership:
    """Keeps the network's links, the peer port's keys and the relay rule in step with the
    validator sets in force."""

    def __init__(
        self,
        store: Store,
        executor: BlockExecutor,
        network: Network,
        peer_auth: PeerAuthenticator,
        configured_keys: frozenset[bytes],
        own_key: bytes | None,
    ) -> None:
        self.store = store
        self.executor = executor
        self.network = network
        self.peer_auth = peer_auth
        self.configured_keys = configured_keys
        self.own_key = own_key
        self.validator_keys: frozenset[bytes] = frozenset()
        self._sets: tuple[ValidatorSet, ...] = ()
        self._closing: set[asyncio.Task[None]] = set()

    def sets_ahead(self) -> tuple[ValidatorSet, ...]:
        """The sets in force at the next height and the one after."""
        height = self.store.height
        found = (self.executor.validators_at(height + 1), self.executor.validators_at(height + 2))
        return tuple(s for s in found if s is not None)

    def refresh(self, writes: Iterable[bytes] = (), *, force: bool = False) -> None:
        """Re-derive links, accepted keys and the relay rule if the sets ahead changed or a
        block wrote governance records (`writes`: its state keys)."""
        sets = self.sets_ahead()
        touched = any(key[:2] in GOVERNANCE_PREFIXES for key in writes)
        if not force and not touched and sets == self._sets:
            return
        self._sets = sets
        members = [v for s in sets for v in s.validators]
        self.validator_keys = frozenset(v.public_key for v in members)
        others = [v for v in members if v.public_key != self.own_key]
        for link in self.network.follow(others):
            self._close_later(link)
        own = {self.own_key} if self.own_key is not None else set()
        self.peer_auth.allow(self.configured_keys | self.validator_keys | self._known_keys() | own)

    def _known_keys(self) -> set[bytes]:
        """Every key a past or scheduled validator set held, and those open proposals add."""
        keys: set[bytes] = set()
        for _, raw in self.store.items(TRANSITION):
            keys.update(member["public_key"] for member in codec.decode_trusted(raw))
        for _, raw in islice(self.store.items(PROPOSAL), MAX_PROPOSALS_SCANNED):
            proposal = codec.decode_trusted(raw)
            change = proposal["change"]
            if proposal["status"] == PROPOSAL_OPEN and change["op"] == governance.ADD_VALIDATOR:
                keys.add(change["public_key"])
        return keys

    def _close_later(self, link: PeerLink) -> None:
        task = asyncio.get_running_loop().create_task(self._close(link))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _close(link: PeerLink) -> None:
        with contextlib.suppress(Exception):
            await link.close()
        log.info("stopped peering with %s (no longer a validator)", link.state.url)


def relay_filter(membership: Membership) -> Callable[[bytes], bool]:
    """Whether events from `peer` should be relayed: not when a validator sent them."""
    return lambda peer: peer not in membership.validator_keys
