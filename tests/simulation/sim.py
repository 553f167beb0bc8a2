"""A seeded, deterministic simulator of real replicas over a hostile network.

The simulator and the service (`node/server/service.py`) are two shells around the same
machinery, `Replica` and its `ConsensusDriver`: every simulated node is a real replica — a
LevelDB store in a temporary directory, the mempool, admission, the block executor, the
signer and the consensus core — and `Node` here is its shell, implementing the driver's
`Effects` with a priority queue of typed events instead of asyncio timers and HTTP peers.
Like TigerBeetle's simulator, it runs the real replica code and fakes only time and the
network.

One logical clock drives N validators; each replica reads the simulated wall clock (a fixed
epoch plus the simulated ms) plus its own skew, drawn from the seed within ±`clock_skew_ms`
(at most half the genesis time precision, so two clocks disagree by at most the precision and
the proposer-based time check of docs/PROTOCOL.md §14 is exercised without stalling anyone).
Transactions are signed `register` events from a few client keys, admitted through each
replica's admission. The network (`network.py`) delays, loses, duplicates and reorders messages
and partitions validators until a heal time. Honest nodes crash — between two steps, or in the
middle of one, at the next effect of the driver, losing what follows — and the replica is
closed and dropped; they restart as a new Replica over the same data directory and signer
persistence. Up to f validators are Byzantine (`byzantine.py`): silent, equivocating,
split-brained, or flooding (future-round votes, equivocation in every round, maximum-size future
proposals) while the memory checker watches what each honest core holds. Block sync hands a
node `CommitReceived` with the next block and commit read from a reachable honest node's store.

The checkers (`checkers.py`) judge the real stores and raise SimulationFailure, whose message
starts with the seed: `python -m tests.simulation.run --seed N` replays it.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import random
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from consensus import Evidence, MemorySignerPersistence, Message, Proposal, Step
from consensus import core as cc
from consensus.messages import VOTE_STEP, decode_message, encode_message
from ledger.blocks import Block, Vote
from ledger.events import NONCE_SIZE, Approve, Propose, Register, SignedEvent, sign_event
from ledger.rules import proposal_key
from ledger.store import Execution, Store
from node.server.replica import Replica, chain_consensus_config
from tests.simulation.byzantine import (
    BIG,
    EQUIVOCATE,
    EQUIVOCATE_ALL,
    FLOOD,
    FLOODS,
    HONEST,
    SILENT,
    SPLIT,
    Equivocator,
    Flooder,
)
from tests.simulation.checkers import (
    AgreementChecker,
    DoubleSignChecker,
    EvidenceChecker,
    MemoryChecker,
    RefusedBlockChecker,
    SimulationFailure,
    ValidityChecker,
    check_liveness,
    check_store_agreement,
)
from tests.simulation.network import Address, Network
from tests.simulation.scenario import ADD, POWER, REMOVE, CrashPlan, GovernanceStep, Scenario
from tests.simulation.world import (
    CHAIN_ID,
    CLIENTS,
    EPOCH_MS,
    LIMITS,
    cached_verify,
    client_key,
    sim_genesis,
    sim_key,
)

TICK_MS = 500
FLOOD_MS = 250
"""How often a flooding validator (FLOOD, EQUIVOCATE_ALL, BIG) sends its flood."""
SYNC_MS = 1000
SYNC_GAP_MS = 200
TX_ARRIVAL_MS = 50
REENCODE = 0.03
"""The share of deliveries that go through the wire encoding (decode(encode(message)))."""
RETRY = 0.05
"""The share of transactions that resend one of the RECENT last envelopes."""
CONFLICT = 0.1
"""The share of transactions that register one of the RECENT last datasets again."""
RECENT = 16
FOLLOW_UP_MS = 500
"""How often the open governance proposal is looked up (and approvals resent)."""
GOVERNANCE_SETTLE = 3
"""Heights past the last change's effective height every honest node must commit."""
MID_STEP_CRASH = 0.5
"""The share of crashes that happen in the middle of a step: at the node's next effect,
which is lost with every output after it (a signed message never sent, a timer never armed,
a stored block the core never moved past)."""

SIM_PROPOSAL_BYTES = 256 << 10
"""The simulated cores' max_proposal_bytes_per_validator: 4 x the simulated block_max_bytes
(64 KiB, world.LIMITS), so every honest block fits, and BIG floods stay fast to build."""
SIM_BUFFERED_MESSAGES = 256
SIM_BUFFERED_BYTES = 4 << 20
"""The next height's buffer: per sender max(8, 256 // n) messages and
max(MIN_SENDER_BUFFER, 4 MiB // n) = 2 MiB, so a BIG flooder can fill it in a few ticks."""


def sim_config(scenario: Scenario) -> cc.ConsensusConfig:
    """The service's config (`chain_consensus_config`: the chain's timeouts and time bounds
    from the genesis params), the scenario's idle and minimum block intervals, and the
    smaller simulated byte budgets."""
    chain = chain_consensus_config(
        sim_genesis(scenario.validators),
        scenario.idle_block_interval_ms,
        scenario.min_block_interval_ms,
    )
    return replace(
        chain,
        max_proposal_bytes_per_validator=SIM_PROPOSAL_BYTES,
        max_buffered_messages=SIM_BUFFERED_MESSAGES,
        max_buffered_bytes=SIM_BUFFERED_BYTES,
    )


def scratch_dir() -> str | None:
    """Where the stores go unless a directory is given: $SIM_TMPDIR, else /dev/shm (tmpfs)
    when writable — a synced LevelDB write costs ~1.5 ms on a disk and ~4 µs there — else
    the default temporary directory."""
    override = os.environ.get("SIM_TMPDIR")
    if override:
        return override
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


# -- the events of the queue --------------------------------------------------------------------


@dataclass(frozen=True)
class Deliver:
    """A consensus message reaches `target` (if it is up)."""

    target: Node
    message: Message


@dataclass(frozen=True)
class TimerFired:
    """A timeout the core scheduled in incarnation `incarnation` of `node` expires."""

    node: Node
    incarnation: int
    timeout: cc.ScheduleTimeout


@dataclass(frozen=True)
class Tick:
    """The periodic retransmission tick of one incarnation of a node."""

    node: Node
    incarnation: int


@dataclass(frozen=True)
class Flood:
    """A flooding validator's next burst of signed messages."""

    node: Node


@dataclass(frozen=True)
class SyncTick:
    """The periodic block sync of one incarnation of a node."""

    node: Node
    incarnation: int


@dataclass(frozen=True)
class CatchUp:
    """Right after a commit: wake consensus if events are pending, fetch the next block."""

    node: Node
    incarnation: int


@dataclass(frozen=True)
class NewTransaction:
    """A client signs a new transaction and sends it to every node."""


@dataclass(frozen=True)
class TransactionArrives:
    """A transaction's envelope reaches one incarnation of a node, which admits it."""

    node: Node
    incarnation: int
    envelope: bytes


@dataclass(frozen=True)
class Crash:
    node: Node


@dataclass(frozen=True)
class Restart:
    node: Node


@dataclass(frozen=True)
class Heal:
    """The partition heals (faults stop at the heal time whether or not there is one)."""


@dataclass(frozen=True)
class GovernanceDue:
    """The scenario's next governance change is proposed."""


@dataclass(frozen=True)
class GovernanceFollowUp:
    """The open proposal is looked up: approvals are sent, or the next change is due."""


@dataclass
class PendingProposal:
    """The change in flight: its propose envelope and the approvals signed so far."""

    step: GovernanceStep
    proposal_id: bytes
    envelope: bytes
    approvals: dict[bytes, bytes]


Event = (
    Deliver
    | TimerFired
    | Tick
    | Flood
    | SyncTick
    | CatchUp
    | NewTransaction
    | TransactionArrives
    | Crash
    | Restart
    | Heal
    | GovernanceDue
    | GovernanceFollowUp
)


# -- nodes ----------------------------------------------------------------------------------------


class Died(Exception):
    """Raised by an effect of a node whose crash is due: the process dies mid-step."""


class Node:
    """One replica on the network and its shell: the `Effects` of the replica's driver.

    An honest validator, an equivocator, or one side of a split-brain. The replica exists
    while the node is up; a crash closes and drops it, a restart builds a new one over the
    same data directory and the same signer persistence.
    """

    def __init__(self, sim: Simulation, address: Address, role: str) -> None:
        self.sim = sim
        self.address = address
        self.name = address.name
        self.index = address.index
        self.role = role
        self.key = sim_key(address.index)
        self.persistence = MemorySignerPersistence()
        self.replica: Replica | None = None
        self.incarnation = 0
        self.height = 0
        self.last_sync = -(10**9)
        self.dropped_before = 0
        self.dying = False
        self.skew = 0
        """Its clock's offset from the simulated wall clock (ms)."""
        self.equivocator = (
            Equivocator(self.key, CHAIN_ID, sim.rng)
            if role in (EQUIVOCATE, EQUIVOCATE_ALL)
            else None
        )
        self.flooder = (
            Flooder(self.key, CHAIN_ID, sim.genesis.validators, sim.rng, SIM_PROPOSAL_BYTES)
            if role in (FLOOD, BIG)
            else None
        )
        self.equivocated: set[tuple[int, int]] = set()
        """EQUIVOCATE_ALL: the (height, round)s of its height it sent conflicting pairs for."""

    @property
    def honest(self) -> bool:
        return self.role == HONEST

    @property
    def events_dropped(self) -> int:
        """Pending events its mempools dropped once a block made them invalid."""
        current = self.replica.events_dropped if self.replica is not None else 0
        return self.dropped_before + current

    @property
    def data_path(self) -> Path:
        return self.sim.root / self.name.replace("/", "-")

    @property
    def store(self) -> Store:
        assert self.replica is not None, f"{self.name} is down"
        return self.replica.store

    def current(self, incarnation: int) -> Replica | None:
        """The replica if it is still the incarnation an event was meant for."""
        return self.replica if incarnation == self.incarnation else None

    def boot(self) -> None:
        """Start a replica over the data directory, as the service does."""
        self.incarnation += 1
        self.replica = Replica(
            self.sim.genesis,
            self.data_path,
            LIMITS,
            self.sim.config,
            self.key,
            self.persistence,
            self.now,
            self,
            verify=cached_verify,
        )
        self.height = self.replica.store.height
        self.feed(cc.Start(now=self.now()))
        if self.height == 0:
            self.feed(cc.EventsAvailable(now=self.now()))
        self.sim.push(self.sim.rng.randint(1, TICK_MS), Tick(self, self.incarnation))
        self.sim.push(self.sim.rng.randint(1, SYNC_MS), SyncTick(self, self.incarnation))

    def crash(self) -> None:
        """Close the store and drop the replica: its mempool, core and timers are lost."""
        assert self.replica is not None
        self.dropped_before += self.replica.events_dropped
        self.replica.close()
        self.replica = None
        self.dying = False
        self.incarnation += 1

    def feed(self, item: cc.Input) -> None:
        """Feed the replica; if its crash is due, it dies at its next effect, mid-step."""
        replica = self.replica
        assert replica is not None
        core = replica.core
        before = (core.height, core.round)
        try:
            replica.feed(item)
        except Died as died:
            self.sim.trace(
                f"{self.name} crashes at height {self.height} in the middle of "
                f"{type(item).__name__}, {died}"
            )
            self.crash()
            return
        if (core.height, core.round) != before and core.round > 0:
            self.sim.trace(f"{self.name} at height {core.height} round {core.round}")
        self.sim.max_round = max(self.sim.max_round, core.round)

    def die_if_due(self, where: str) -> None:
        if self.dying:
            raise Died(where)

    # -- Effects ------------------------------------------------------------------------------

    def now(self) -> int:
        """Its own clock: the simulated wall clock plus its skew."""
        return self.sim.wall() + self.skew

    def broadcast(self, message: Message) -> None:
        self.die_if_due(f"after signing a {type(message).__name__} it never sent")
        self.sim.broadcast(self, message)

    def schedule(self, timeout: cc.ScheduleTimeout) -> None:
        self.die_if_due("before arming a timer")
        self.sim.push(timeout.delay_ms, TimerFired(self, self.incarnation, timeout))

    def evidence(self, evidence: Evidence) -> None:
        self.die_if_due("before keeping evidence")
        self.sim.on_evidence(self, evidence)

    def committed(self, block: Block, execution: Execution) -> None:
        self.sim.on_committed(self, block, execution)
        self.die_if_due("after storing a block, before the core moved to the next height")


@dataclass(frozen=True)
class Restarted:
    """`name` restarted at `at` ms over a store at `height`."""

    name: str
    at: int
    height: int


@dataclass(frozen=True)
class Result:
    scenario: Scenario
    heights: dict[str, int]
    end_time: int
    deliveries: int
    evidence: int
    rounds: int
    target: int
    block_hashes: int
    events_committed: int
    refused_admissions: int
    events_dropped: int
    restarts: tuple[Restarted, ...]
    memory_peak: dict[str, int]
    """The most any honest core held, per footprint key (and `bytes`, the charged total)."""
    memory_bound: dict[str, int]
    """The bound at the highest round a checked core reached."""
    governance_decided: tuple[tuple[int, str], ...] = ()
    """(height, op) of each governance change decided, in order."""


# -- the simulation -------------------------------------------------------------------------------


class Simulation:
    """One run of one scenario; `run()` raises SimulationFailure on any violation.

    The stores go to a fresh temporary directory (removed afterwards) unless `data_dir` is
    given, which is kept: a test can reopen the stores after the run.
    """

    def __init__(
        self,
        scenario: Scenario,
        log: Callable[[str], None] | None = None,
        data_dir: Path | None = None,
    ) -> None:
        self.scenario = scenario
        self.seed = scenario.seed
        self.rng = random.Random(scenario.seed)
        self.log = log
        self.data_dir = data_dir
        self.root = Path()
        n = scenario.validators
        self.n = n + scenario.joiners
        self.genesis = sim_genesis(n)
        self.queue: list[tuple[int, int, Event]] = []
        self.seq = 0
        self.now = 0
        self.deliveries = 0
        self.evidence = 0
        self.max_round = 0
        self.target: int | None = None
        self.tx_counter = 0
        self.recent_envelopes: deque[bytes] = deque(maxlen=RECENT)
        self.recent_datasets: deque[bytes] = deque(maxlen=RECENT)
        self.refused_admissions = 0
        self.restarts: list[Restarted] = []
        roles = [HONEST] * scenario.honest_count + list(scenario.byzantine)
        roles += [HONEST] * scenario.joiners
        self.roles = roles
        self.groups: list[list[Node]] = []
        for i, role in enumerate(roles):
            if role == SILENT:
                self.groups.append([])
            elif role == SPLIT:
                self.groups.append(
                    [Node(self, Address(f"n{i}/s{s}", i, s, split=True), role) for s in (0, 1)]
                )
            else:
                side = i % 2 if scenario.honest_cut else self.rng.randint(0, 1)
                self.groups.append([Node(self, Address(f"n{i}", i, side), role)])
        self.nodes = [node for group in self.groups for node in group]
        self.honest = [node for node in self.nodes if node.honest]
        self.network = Network(scenario, self.rng)
        self.agreement = AgreementChecker(self.seed)
        self.double_sign = DoubleSignChecker(self.seed)
        self.validity = ValidityChecker(self.seed, self.genesis)
        self.refused = RefusedBlockChecker(self.seed)
        self.config = sim_config(scenario)
        self.memory = MemoryChecker(self.seed, self.config, self.n)
        self.byzantine_keys = {sim_key(i).public_key for i, r in enumerate(roles) if r != HONEST}
        if scenario.clock_skew_ms:
            for node in self.nodes:
                node.skew = self.rng.randint(-scenario.clock_skew_ms, scenario.clock_skew_ms)
        self.plan = list(scenario.governance)
        self.pending: PendingProposal | None = None
        self.governance_until = 0
        """Every honest node must reach this height: a few blocks past the last change's
        effective height, so that the new set is seen deciding."""
        self.key_index = {sim_key(i).public_key: i for i in range(self.n)}
        self.evidence_checker = EvidenceChecker(
            self.seed,
            self.genesis,
            {sim_key(i).public_key: role for i, role in enumerate(roles) if role != HONEST},
        )

    # -- plumbing -----------------------------------------------------------------------------

    def wall(self) -> int:
        """The simulated wall clock (ms since the Unix epoch): every replica's clock."""
        return EPOCH_MS + self.now

    def trace(self, text: str) -> None:
        if self.log is not None:
            self.log(f"{self.now:>8} ms  {text}")

    def push(self, delay: int, event: Event) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (self.now + delay, self.seq, event))

    # -- a run --------------------------------------------------------------------------------

    def run(self) -> Result:
        with contextlib.ExitStack() as stack:
            if self.data_dir is not None:
                self.root = self.data_dir
            else:
                self.root = Path(
                    stack.enter_context(
                        tempfile.TemporaryDirectory(prefix="provledger-sim-", dir=scratch_dir())
                    )
                )
            stack.callback(self.close)
            return self._run()
        raise AssertionError("unreachable: the ExitStack swallows no exception")

    def close(self) -> None:
        """Close every store (also after a failure)."""
        for node in self.nodes:
            if node.replica is not None:
                node.replica.close()
                node.replica = None

    def _run(self) -> Result:
        scenario = self.scenario
        self.trace(f"scenario {scenario}")
        for node in self.nodes:
            self.guarded(node.boot, partial(str, f"{node.name} booting"))
        self.schedule_faults()
        for node in self.nodes:
            if node.role in FLOODS:
                self.push(self.rng.randint(0, FLOOD_MS), Flood(node))
        self.push(self.rng.randint(0, scenario.tx_gap_ms), NewTransaction())
        if self.plan:
            self.push(self.plan[0].after_ms, GovernanceDue())
        end = scenario.end_at or scenario.heal_at + scenario.liveness_budget_ms
        while self.queue:
            time, _, event = heapq.heappop(self.queue)
            if time > end:
                break
            self.now = time
            if self.target is None and time >= scenario.heal_at:
                self.on_heal()
            self.guarded(partial(self.step, event), partial(describe, event))
            if self.done():
                break
        self.check_stores()
        if scenario.check_liveness:
            if self.target is None:
                self.on_heal()
            assert self.target is not None
            check_liveness(self.seed, self.heights(), max(self.target, self.governance_until), end)
            if self.plan:
                raise SimulationFailure(
                    f"seed {self.seed}: liveness violated: governance change {self.plan[0]} "
                    f"was not decided by t={end} ms"
                )
        return Result(
            scenario,
            self.heights(),
            self.now,
            self.deliveries,
            self.evidence,
            self.max_round,
            self.target or 0,
            len(self.agreement.decided),
            self.validity.events,
            self.refused_admissions,
            sum(node.events_dropped for node in self.nodes),
            tuple(self.restarts),
            dict(self.memory.peak),
            self.memory.bound(),
            tuple((height, change["op"]) for height, change in self.validity.sets.decided),
        )

    def guarded(self, action: Callable[[], None], what: Callable[[], str]) -> None:
        """Run one step; an exception from the real machinery fails the seed (`what` says
        what the step was)."""
        try:
            action()
        except SimulationFailure:
            raise
        except Exception as exc:
            raise SimulationFailure(
                f"seed {self.seed}: {what()} at t={self.now} ms raised {exc!r}"
            ) from exc

    def step(self, event: Event) -> None:
        match event:
            case Deliver(target=target, message=message):
                self.deliver(target, message)
            case TimerFired(node=node, incarnation=incarnation, timeout=timeout):
                if node.current(incarnation) is not None:
                    node.feed(
                        cc.TimeoutFired(timeout.kind, timeout.height, timeout.round, node.now())
                    )
            case Tick(node=node, incarnation=incarnation):
                if node.current(incarnation) is not None:
                    node.feed(cc.Tick(node.now()))
                    if node.honest:
                        self.check_memory(node)
                    self.push(TICK_MS, event)
            case Flood(node=node):
                self.flood(node)
                self.push(FLOOD_MS, event)
            case SyncTick(node=node, incarnation=incarnation):
                if node.current(incarnation) is not None:
                    self.sync(node)
                    self.push(SYNC_MS, event)
            case CatchUp(node=node, incarnation=incarnation):
                replica = node.current(incarnation)
                if replica is not None:
                    if len(replica.mempool):
                        node.feed(cc.EventsAvailable(node.now()))
                    self.sync(node)
            case NewTransaction():
                self.new_transaction()
            case TransactionArrives(node=node, incarnation=incarnation, envelope=envelope):
                self.transaction_arrives(node, incarnation, envelope)
            case Crash(node=node):
                if node.replica is not None and self.rng.random() < MID_STEP_CRASH:
                    node.dying = True
                elif node.replica is not None:
                    self.trace(f"{node.name} crashes at height {node.height}")
                    node.crash()
            case Restart(node=node):
                if node.dying:
                    self.trace(f"{node.name} crashes at height {node.height} before any effect")
                    node.crash()
                if node.replica is None:
                    node.boot()
                    self.trace(f"{node.name} restarts over its store at height {node.height}")
                    self.restarts.append(Restarted(node.name, self.now, node.height))
            case Heal():
                self.trace("the partition heals")
            case GovernanceDue():
                self.propose_next()
            case GovernanceFollowUp():
                self.follow_up()

    def schedule_faults(self) -> None:
        scenario = self.scenario
        if scenario.partition or scenario.honest_cut:
            self.push(scenario.heal_at, Heal())
        for crash in scenario.crash_plan or self.random_crashes():
            assert self.roles[crash.node] == HONEST, "only honest validators crash"
            victim = self.groups[crash.node][0]
            self.push(crash.at, Crash(victim))
            self.push(crash.back, Restart(victim))

    def random_crashes(self) -> tuple[CrashPlan, ...]:
        scenario = self.scenario
        if not self.honest or scenario.heal_at <= 100:
            return ()
        plan = []
        for _ in range(scenario.crashes):
            victim = self.rng.choice(self.honest)
            at = self.rng.randint(0, scenario.heal_at - 100)
            back = min(scenario.heal_at, at + self.rng.randint(100, 3000))
            plan.append(CrashPlan(victim.index, at, back))
        return tuple(plan)

    def heights(self) -> dict[str, int]:
        """Each honest node's store height (the last one it had, for a node that is down)."""
        return {
            node.name: node.store.height if node.replica is not None else node.height
            for node in self.honest
        }

    def done(self) -> bool:
        return (
            self.target is not None
            and not self.plan
            and all(n.height >= max(self.target, self.governance_until) for n in self.honest)
        )

    def on_heal(self) -> None:
        self.target = max(n.height for n in self.honest) + self.scenario.heights_after_heal
        self.trace(f"faults stop; every honest node must commit {self.target} blocks")

    def check_stores(self) -> None:
        """Store agreement over every honest store (a crashed node's is opened for this)."""
        with contextlib.ExitStack() as stack:
            stores: dict[str, Store] = {}
            for node in self.honest:
                if node.replica is not None:
                    stores[node.name] = node.replica.store
                else:
                    stores[node.name] = stack.enter_context(Store(node.data_path, self.genesis))
            check_store_agreement(self.seed, stores)

    # -- the network --------------------------------------------------------------------------

    def broadcast(self, sender: Node, message: Message) -> None:
        own = signer(message) == sender.key.public_key
        if sender.honest and own:
            self.record_signature(sender, message)
        peers = [i for i in range(self.n) if i != sender.index]
        if sender.equivocator is not None and own:
            self.rng.shuffle(peers)
            half = set(peers[: len(peers) // 2])
            conflict = sender.equivocator.conflicting(message)
            if conflict.forgery is not None and conflict.forgery.refused:
                assert isinstance(conflict.message, Proposal)
                self.refused.forged(conflict.message.block_hash, conflict.forgery.value)
            for i in peers:
                if sender.role == EQUIVOCATE_ALL:
                    self.send(sender, i, conflict.message)
                    self.send(sender, i, message)
                else:
                    self.send(sender, i, conflict.message if i in half else message)
            self.equivocate_round(sender, message.height, message.round)
            return
        for i in peers:
            self.send(sender, i, message)

    def record_signature(self, sender: Node, message: Message) -> None:
        if isinstance(message, Vote):
            step = int(VOTE_STEP[message.type])
            self.refused.record(sender.name, message)
            self.double_sign.record(
                message.validator, message.height, message.round, step, message.sign_bytes(CHAIN_ID)
            )
        else:
            self.double_sign.record(
                message.proposer,
                message.height,
                message.round,
                int(Step.PROPOSE),
                message.sign_bytes(CHAIN_ID),
            )

    def flood(self, node: Node) -> None:
        """A flooding validator's burst of signed messages to every peer."""
        replica = node.replica
        if replica is None:
            return
        height, round = replica.core.height, replica.core.round
        messages: list[Message] = []
        if node.role == FLOOD:
            assert node.flooder is not None
            messages += node.flooder.future_votes(height, round)
        elif node.role == BIG:
            assert node.flooder is not None
            messages += node.flooder.big_proposals(height, round, node.now())
        else:
            self.equivocate_round(node, height, round)
        for message in messages:
            for i in range(self.n):
                if i != node.index:
                    self.send(node, i, message)

    def equivocate_round(self, node: Node, height: int, round: int) -> None:
        """EQUIVOCATE_ALL: conflicting prevotes and precommits of (height, round) to every peer,
        once per round of its current height."""
        replica = node.replica
        if (
            node.role != EQUIVOCATE_ALL
            or replica is None
            or height != replica.core.height
            or (height, round) in node.equivocated
        ):
            return
        assert node.equivocator is not None
        if any(h != height for h, _ in node.equivocated):
            node.equivocated = {k for k in node.equivocated if k[0] == height}
            node.equivocator.forget_below(height)
        node.equivocated.add((height, round))
        for vote in node.equivocator.every_round(height, round):
            for i in range(self.n):
                if i != node.index:
                    self.send(node, i, vote)

    def send(self, sender: Node, index: int, message: Message) -> None:
        target = self.network.route(sender.address, self.groups[index])
        if target is None:
            return
        for delay in self.network.transit(sender.address, target.address, self.now):
            self.push(delay, Deliver(target, message))

    def deliver(self, target: Node, message: Message) -> None:
        replica = target.replica
        if replica is None:
            return
        self.deliveries += 1
        if self.rng.random() < REENCODE:
            message = decode_message(encode_message(message))
        if isinstance(message, Proposal):
            if target.equivocator is not None:
                target.equivocator.saw(message)
            target.feed(cc.ProposalReceived(message, target.now()))
        else:
            target.feed(cc.VoteReceived(message, target.now()))
        if target.replica is None:
            return
        if not target.honest:
            self.equivocate_round(target, message.height, message.round)
        elif signer(message) in self.byzantine_keys:
            self.check_memory(target)
        if message.height > replica.store.height + 1 and self.now - target.last_sync >= SYNC_GAP_MS:
            self.sync(target)

    def check_memory(self, node: Node) -> None:
        """The memory checker on an honest node's core. It runs after every delivery of a
        Byzantine validator's message (what floods), on every tick and when a block is stored,
        before the core leaves the height (the most an honest height's rounds ever hold)."""
        replica = node.replica
        if replica is not None:
            core = replica.core
            self.memory.record(node.name, core.height, core.round, core.footprint())

    def sync(self, node: Node) -> None:
        """Block sync: CommitReceived for the next height from a reachable honest store."""
        replica = node.replica
        if replica is None or replica.core.decision is not None:
            return
        node.last_sync = self.now
        height = replica.store.height + 1
        sources = [
            (source, source.store)
            for source in self.honest
            if source is not node
            and source.replica is not None
            and source.height >= height
            and (not node.address.split or source.address.side == node.address.side)
            and not self.network.cut(node.address, source.address, self.now)
        ]
        if not sources:
            return
        source, store = self.rng.choice(sources)
        block, commit = store.block(height), store.commit(height)
        assert block is not None and commit is not None, f"{source.name} lacks height {height}"
        self.trace(f"{node.name} syncs height {height} from {source.name}")
        node.feed(cc.CommitReceived(block, commit, node.now()))

    # -- what the replicas report -------------------------------------------------------------

    def on_evidence(self, node: Node, evidence: Evidence) -> None:
        culprit = self.evidence_checker.record(node.name, evidence)
        self.evidence += 1
        self.trace(f"{node.name} found evidence against {culprit}")

    def on_committed(self, node: Node, block: Block, execution: Execution) -> None:
        """The driver stored a decided block: judge what the store now holds."""
        height = block.header.height
        node.height = height
        store = node.store
        if node.honest:
            previous = store.header(height - 1) if height > 1 else None
            prev = previous.block_hash if previous is not None else self.genesis.hash()
            stored = store.block(height)
            self.validity.record(node.name, height, prev, stored, store.commit(height))
            assert stored is not None
            if stored.block_hash != block.block_hash:
                raise SimulationFailure(
                    f"seed {self.seed}: {node.name} decided {block.block_hash.hex()[:12]} at "
                    f"height {height} but its store holds {stored.block_hash.hex()[:12]}"
                )
            self.agreement.record(node.name, height, block.block_hash)
            self.check_memory(node)
        self.trace(
            f"{node.name} commits height {height} {block.block_hash.hex()[:12]} "
            f"({len(execution.accepted)} events)"
        )
        self.push(0, CatchUp(node, node.incarnation))

    # -- transactions -------------------------------------------------------------------------

    def new_transaction(self) -> None:
        """A client sends a transaction to every node: mostly a new `register` event, a real
        signed event timed by the wall clock; sometimes one that claims a dataset a recent
        one registered (only the first to commit is valid: the mempools and the executors
        must drop the other), sometimes a retry of a recent envelope (a duplicate)."""
        self.tx_counter += 1
        roll = self.rng.random()
        if roll < RETRY and self.recent_envelopes:
            envelope = self.rng.choice(self.recent_envelopes)
        else:
            client = client_key(self.rng.randrange(CLIENTS))
            conflicting = roll < RETRY + CONFLICT and bool(self.recent_datasets)
            body = Register(
                chain=CHAIN_ID,
                actor=client.public_key,
                time=self.wall(),
                nonce=self.rng.randbytes(NONCE_SIZE),
                dataset=(
                    self.rng.choice(self.recent_datasets) if conflicting else self.rng.randbytes(32)
                ),
                meta={"n": self.tx_counter},
                open=self.rng.random() < 0.5,
            )
            envelope = sign_event(client, body).envelope
            self.recent_envelopes.append(envelope)
            self.recent_datasets.append(body.dataset)
        self.send_to_all(envelope)
        gap = max(1, int(self.rng.expovariate(1 / self.scenario.tx_gap_ms)))
        self.push(gap, NewTransaction())

    def send_to_all(self, envelope: bytes) -> None:
        for node in self.nodes:
            arrival = TransactionArrives(node, node.incarnation, envelope)
            self.push(self.rng.randint(1, TX_ARRIVAL_MS), arrival)

    # -- governance ---------------------------------------------------------------------------

    def reference(self) -> Node | None:
        """The honest node that is up with the highest store (what the operators look at)."""
        up = [node for node in self.honest if node.replica is not None]
        return max(up, key=lambda node: node.store.height) if up else None

    def propose_next(self) -> None:
        """An honest validator of the sets in force and next proposes the plan's next change,
        signed with its node key and sent to every node as a transaction."""
        ref = self.reference()
        if ref is None:
            self.push(FOLLOW_UP_MS, GovernanceDue())
            return
        step = self.plan[0]
        store = ref.store
        state = store.rules
        now_set = state.validators_at(store.state(), store.height + 1)
        next_set = state.validators_at(store.state(), store.height + 2)
        proposer = next(
            i
            for i in range(self.n)
            if self.roles[i] == HONEST
            and now_set.get(sim_key(i).public_key) is not None
            and next_set.get(sim_key(i).public_key) is not None
        )
        body = Propose(
            chain=CHAIN_ID,
            actor=sim_key(proposer).public_key,
            time=self.wall(),
            nonce=self.rng.randbytes(NONCE_SIZE),
            change=governance_change(step),
        )
        event = sign_event(sim_key(proposer), body)
        self.pending = PendingProposal(step, event.event_id, event.envelope, {})
        self.trace(f"n{proposer} proposes {step.op} n{step.node} ({event.event_id.hex()[:12]})")
        self.send_to_all(event.envelope)
        self.push(FOLLOW_UP_MS, GovernanceFollowUp())

    def follow_up(self) -> None:
        """Resend the proposal until it is on the chain, then every missing honest approval
        (the operators of the set in force approve) until it is decided."""
        pending = self.pending
        ref = self.reference()
        if pending is None:
            return
        self.push(FOLLOW_UP_MS, GovernanceFollowUp())
        if ref is None:
            return
        store = ref.store
        doc = store.state().get_doc(proposal_key(pending.proposal_id))
        if doc is None:
            self.send_to_all(pending.envelope)
            return
        if doc["status"] != "open":
            self.trace(f"{pending.step.op} n{pending.step.node} decided at height {doc['decided']}")
            self.plan.pop(0)
            self.pending = None
            self.governance_until = doc["effective"] + GOVERNANCE_SETTLE
            if self.plan:
                self.push(self.plan[0].after_ms, GovernanceDue())
            return
        members = store.rules.validators_at(store.state(), store.height + 1)
        for member in members.validators:
            index = self.key_index[member.public_key]
            if self.roles[index] != HONEST or member.public_key in doc["approvals"]:
                continue
            envelope = pending.approvals.get(member.public_key)
            if envelope is None:
                body = Approve(
                    chain=CHAIN_ID,
                    actor=member.public_key,
                    time=self.wall(),
                    nonce=self.rng.randbytes(NONCE_SIZE),
                    proposal=pending.proposal_id,
                )
                envelope = pending.approvals[member.public_key] = sign_event(
                    sim_key(index), body
                ).envelope
            self.send_to_all(envelope)

    def transaction_arrives(self, node: Node, incarnation: int, envelope: bytes) -> None:
        replica = node.current(incarnation)
        if replica is None:
            return
        was_empty = len(replica.mempool) == 0
        (outcome,) = replica.admission.admit([envelope])
        if not isinstance(outcome, SignedEvent):
            self.refused_admissions += 1
        elif was_empty:
            node.feed(cc.EventsAvailable(node.now()))


def governance_change(step: GovernanceStep) -> dict[str, object]:
    """The `change` map of a scenario's governance step."""
    key = sim_key(step.node).public_key
    if step.op == ADD:
        return {
            "name": f"n{step.node}",
            "op": "add-validator",
            "power": step.power,
            "public_key": key,
            "url": "",
        }
    if step.op == REMOVE:
        return {"op": "remove-validator", "public_key": key}
    assert step.op == POWER
    return {"op": "set-power", "power": step.power, "public_key": key}


def signer(message: Message) -> bytes:
    return message.proposer if isinstance(message, Proposal) else message.validator


def describe(event: Event) -> str:
    """What a queue event is about, for a failure message."""
    match event:
        case Deliver(target=target, message=message):
            return f"delivering {type(message).__name__} to {target.name}"
        case (
            TimerFired(node=node)
            | Tick(node=node)
            | Flood(node=node)
            | SyncTick(node=node)
            | CatchUp(node=node)
            | TransactionArrives(node=node)
            | Crash(node=node)
            | Restart(node=node)
        ):
            return f"{type(event).__name__} of {node.name}"
    return type(event).__name__


def run_seed(
    seed: int, log: Callable[[str], None] | None = None, validators: int | None = None
) -> Result:
    """Run the random scenario of `seed` (with `validators` validators if given)."""
    return Simulation(Scenario.random(seed, validators), log).run()


__all__ = [
    "CatchUp",
    "Crash",
    "Deliver",
    "Event",
    "Flood",
    "Heal",
    "NewTransaction",
    "Node",
    "Restart",
    "Restarted",
    "Result",
    "Simulation",
    "SimulationFailure",
    "SyncTick",
    "Tick",
    "TimerFired",
    "TransactionArrives",
    "run_seed",
]
