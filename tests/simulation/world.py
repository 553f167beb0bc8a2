"""The fixed world every simulation runs in: one chain id, the simulated wall clock's epoch,
deterministic validator and client keys, the OPEN genesis naming them, the replicas' limits,
and a process-wide cache for the consensus signature checks.

Nothing here depends on the seed: every run of every seed shares these keys and this genesis,
so a failing seed replays against the same validators.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec

from ledger import crypto
from ledger.blocks import Validator, ValidatorSet
from ledger.errors import BadSignature
from ledger.genesis import OPEN, Genesis
from node.server.replica import ReplicaLimits

CHAIN_ID = "sim-chain"
EPOCH_MS = 1_700_000_000_000
"""The simulated wall clock reads EPOCH_MS + simulated ms; the genesis time is EPOCH_MS."""

CLIENTS = 4
"""How many client keys sign the simulated transactions (`register` events)."""

LIMITS = ReplicaLimits(
    mempool_max_events=2_000,
    mempool_max_bytes=4 << 20,
    block_max_events=8,
    block_max_bytes=64 << 10,
    max_waiters=1_000,
)
"""Small blocks, so that a burst of transactions spreads over several heights."""

_VALIDATOR_SECRET = 0xB10C0000
_CLIENT_SECRET = 0xC11E0000
_REGISTRAR_SECRET = 0x5E6A0000

_KEYS: dict[int, crypto.PrivateKey] = {}
_GENESES: dict[int, Genesis] = {}


def _derived(secret: int) -> crypto.PrivateKey:
    key = _KEYS.get(secret)
    if key is None:
        key = _KEYS[secret] = crypto.PrivateKey(ec.derive_private_key(secret, ec.SECP256R1()))
    return key


def sim_key(index: int) -> crypto.PrivateKey:
    """The key of validator `index` (derived from the index, shared by every seed)."""
    return _derived(_VALIDATOR_SECRET + index)


def client_key(index: int) -> crypto.PrivateKey:
    """The key of client `index`, the actor of the transactions it signs."""
    return _derived(_CLIENT_SECRET + index)


def sim_validators(n: int) -> ValidatorSet:
    return ValidatorSet(tuple(Validator(f"n{i}", sim_key(i).public_key, 1) for i in range(n)))


def sim_genesis(n: int) -> Genesis:
    """The OPEN genesis of `n` validators: any client key may register datasets."""
    genesis = _GENESES.get(n)
    if genesis is None:
        genesis = _GENESES[n] = Genesis(
            chain_id=CHAIN_ID,
            genesis_time=EPOCH_MS,
            validators=sim_validators(n),
            registrars=(_derived(_REGISTRAR_SECRET).public_key,),
            admission=OPEN,
        )
    return genesis


_VERIFIED: dict[tuple[bytes, bytes, bytes], bool] = {}
_VERIFIED_MAX = 200_000


def cached_verify(public_key: bytes, message: bytes, signature: bytes) -> None:
    """crypto.verify with a process-wide cache (simulator only: signatures repeat a lot).

    Given to every replica as the consensus core's `verify=` hook; the block executor and
    admission check event signatures themselves, uncached across nodes, as in production.
    """
    cache_key = (public_key, message, signature)
    ok = _VERIFIED.get(cache_key)
    if ok is None:
        if len(_VERIFIED) > _VERIFIED_MAX:
            _VERIFIED.clear()
        try:
            crypto.verify(public_key, message, signature)
            ok = True
        except BadSignature:
            ok = False
        _VERIFIED[cache_key] = ok
    if not ok:
        raise BadSignature("signature does not verify")


__all__ = [
    "CHAIN_ID",
    "CLIENTS",
    "EPOCH_MS",
    "LIMITS",
    "cached_verify",
    "client_key",
    "sim_genesis",
    "sim_key",
    "sim_validators",
]
