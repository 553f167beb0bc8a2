"""P-256 keys and signatures (PROTOCOL §1), cross-checked against python-ecdsa."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import ecdsa
import ecdsa.util
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ledger import crypto
from ledger.crypto import CURVE_ORDER, HALF_ORDER, PrivateKey
from ledger.errors import BadSignature, LedgerError, Malformed

N = ecdsa.NIST256p.order
P = ecdsa.NIST256p.curve.p()
B = ecdsa.NIST256p.curve.b()


@pytest.fixture(scope="module")
def key() -> PrivateKey:
    return PrivateKey.generate()


def split(signature: bytes) -> tuple[int, int]:
    return int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")


def join(r: int, s: int) -> bytes:
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def x_not_on_curve() -> int:
    """The smallest x for which x^3 - 3x + b is not a square mod p (no point has that x)."""
    x = 0
    while True:
        rhs = (x**3 - 3 * x + B) % P
        if rhs and pow(rhs, (P - 1) // 2, P) == P - 1:
            return x
        x += 1


def test_constants_match_p256() -> None:
    assert CURVE_ORDER == N
    assert HALF_ORDER == N // 2
    assert crypto.sha256(b"abc") == hashlib.sha256(b"abc").digest()


def test_generate_sign_verify(key: PrivateKey) -> None:
    pub = key.public_key
    assert isinstance(pub, bytes)
    assert len(pub) == 33
    assert pub[0] in (2, 3)
    assert crypto.check_public_key(pub) == pub
    signature = key.sign(b"hello")
    assert isinstance(signature, bytes)
    assert len(signature) == 64
    crypto.verify(pub, b"hello", signature)
    crypto.verify(pub, b"", key.sign(b""))
    assert PrivateKey.generate().public_key != pub


def test_public_key_matches_cryptography_compressed_point(key: PrivateKey) -> None:
    expected = key.key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    assert key.public_key == expected


def test_signatures_are_always_low_s(key: PrivateKey) -> None:
    for i in range(300):
        message = i.to_bytes(4, "big")
        signature = key.sign(message)
        assert len(signature) == 64
        r, s = split(signature)
        assert 0 < r < N
        assert 0 < s <= HALF_ORDER
        crypto.verify(key.public_key, message, signature)


def test_high_s_twin_of_a_valid_signature_is_rejected(key: PrivateKey) -> None:
    for i in range(20):
        message = b"msg %d" % i
        r, s = split(key.sign(message))
        high = join(r, N - s)
        # OpenSSL itself accepts the high-S twin: the rejection is the low-S policy
        key.key.public_key().verify(
            encode_dss_signature(r, N - s), message, ec.ECDSA(hashes.SHA256())
        )
        with pytest.raises(BadSignature):
            crypto.verify(key.public_key, message, high)


def test_wrong_message_and_wrong_key_are_rejected(key: PrivateKey) -> None:
    signature = key.sign(b"message")
    with pytest.raises(BadSignature):
        crypto.verify(key.public_key, b"messagf", signature)
    with pytest.raises(BadSignature):
        crypto.verify(key.public_key, b"message\x00", signature)
    with pytest.raises(BadSignature):
        crypto.verify(PrivateKey.generate().public_key, b"message", signature)


def test_bit_flips_are_rejected(key: PrivateKey) -> None:
    signature = key.sign(b"message")
    for index in range(0, 64, 3):
        tampered = bytearray(signature)
        tampered[index] ^= 0x01
        with pytest.raises(BadSignature):
            crypto.verify(key.public_key, b"message", bytes(tampered))


def _bad_signatures(signature: bytes) -> dict[str, object]:
    r, s = split(signature)
    return {
        "empty": b"",
        "truncated 63": signature[:63],
        "truncated 32": signature[:32],
        "65 bytes": signature + b"\x00",
        "65 bytes leading zero": b"\x00" + signature,
        "r=0": join(0, s),
        "s=0": join(r, 0),
        "both zero": bytes(64),
        "r=n": join(N, s),
        "r=n+r": (N + r).to_bytes(32, "big") + s.to_bytes(32, "big")
        if N + r < 2**256
        else join(N, s),
        "r all ones": b"\xff" * 32 + s.to_bytes(32, "big"),
        "s=n": join(r, N),
        "s all ones": r.to_bytes(32, "big") + b"\xff" * 32,
        "s=half+1": join(r, HALF_ORDER + 1),
        "DER encoded": encode_dss_signature(r, s),
        "str": signature.hex(),
        "bytearray": bytearray(signature),
        "None": None,
    }


BAD_SIGNATURE_NAMES = list(_bad_signatures(bytes(64)).keys())


@pytest.mark.parametrize("name", BAD_SIGNATURE_NAMES)
def test_malformed_signatures_are_rejected(key: PrivateKey, name: str) -> None:
    bad = _bad_signatures(key.sign(b"m"))[name]
    with pytest.raises(BadSignature):
        crypto.verify(key.public_key, b"m", bad)  # type: ignore[arg-type]


def _bad_public_keys(pub: bytes) -> dict[str, object]:
    x = x_not_on_curve()
    uncompressed = (
        PrivateKey.generate()
        .key.public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    return {
        "empty": b"",
        "32 bytes": pub[1:],
        "34 bytes": pub + b"\x00",
        "uncompressed 65 bytes": uncompressed,
        "prefix 0x04, 33 bytes": b"\x04" + pub[1:],
        "prefix 0x00": b"\x00" + pub[1:],
        "prefix 0x05": b"\x05" + pub[1:],
        "point at infinity": b"\x00",
        "x not on curve (02)": b"\x02" + x.to_bytes(32, "big"),
        "x not on curve (03)": b"\x03" + x.to_bytes(32, "big"),
        "x = p": b"\x02" + P.to_bytes(32, "big"),
        "x all ones": b"\x02" + b"\xff" * 32,
        "hex str": pub.hex(),
        "None": None,
        "int": 2,
    }


BAD_KEY_NAMES = list(_bad_public_keys(b"\x02" + bytes(32)).keys())


@pytest.mark.parametrize("name", BAD_KEY_NAMES)
def test_check_public_key_rejects_malformed(key: PrivateKey, name: str) -> None:
    bad = _bad_public_keys(key.public_key)[name]
    with pytest.raises(Malformed):
        crypto.check_public_key(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", BAD_KEY_NAMES)
def test_verify_with_bad_public_key_raises_bad_signature(key: PrivateKey, name: str) -> None:
    bad = _bad_public_keys(key.public_key)[name]
    with pytest.raises(BadSignature):
        crypto.verify(bad, b"m", key.sign(b"m"))  # type: ignore[arg-type]


def test_x_not_on_curve_sample_is_really_off_curve() -> None:
    x = x_not_on_curve()
    with pytest.raises(ecdsa.errors.MalformedPointError):
        ecdsa.VerifyingKey.from_string(b"\x02" + x.to_bytes(32, "big"), curve=ecdsa.NIST256p)


def test_both_parities_of_valid_points_are_accepted() -> None:
    seen = set()
    for _ in range(40):
        pub = PrivateKey.generate().public_key
        assert crypto.check_public_key(pub) == pub
        seen.add(pub[0])
        if seen == {2, 3}:
            break
    assert seen == {2, 3}


# --- PEM files -------------------------------------------------------------------------------


def test_save_creates_file_with_mode_0600(tmp_path: Path, key: PrivateKey) -> None:
    for umask in (0o000, 0o022, 0o077):
        path = tmp_path / f"key-{umask:o}.pem"
        old = os.umask(umask)
        try:
            key.save(path)
        finally:
            os.umask(old)
        assert os.stat(path).st_mode & 0o777 == 0o600
        assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_save_accepts_str_path(tmp_path: Path, key: PrivateKey) -> None:
    path = str(tmp_path / "key.pem")
    key.save(path)
    assert PrivateKey.load(path).public_key == key.public_key


def test_save_refuses_to_overwrite(tmp_path: Path, key: PrivateKey) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(b"keep me")
    with pytest.raises((FileExistsError, LedgerError)):
        key.save(path)
    assert path.read_bytes() == b"keep me"
    key2 = tmp_path / "key2.pem"
    key.save(key2)
    with pytest.raises((FileExistsError, LedgerError)):
        PrivateKey.generate().save(key2)
    assert PrivateKey.load(key2).public_key == key.public_key


def test_save_does_not_follow_a_dangling_symlink(tmp_path: Path, key: PrivateKey) -> None:
    target = tmp_path / "elsewhere.pem"
    link = tmp_path / "key.pem"
    link.symlink_to(target)
    with pytest.raises((FileExistsError, LedgerError)):
        key.save(link)
    assert not target.exists()


def test_load_round_trips(tmp_path: Path, key: PrivateKey) -> None:
    path = tmp_path / "key.pem"
    key.save(path)
    loaded = PrivateKey.load(path)
    assert loaded.public_key == key.public_key
    crypto.verify(key.public_key, b"x", loaded.sign(b"x"))
    assert PrivateKey.from_pem(key.to_pem()).public_key == key.public_key


def _pkcs8(private_key: object) -> bytes:
    return private_key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


FOREIGN_PEMS = {
    "garbage": lambda: b"not a key at all",
    "empty": lambda: b"",
    "truncated pem": lambda: PrivateKey.generate().to_pem()[:60],
    "public key pem": lambda: (
        PrivateKey.generate()
        .key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    ),
    "ed25519": lambda: _pkcs8(ed25519.Ed25519PrivateKey.generate()),
    "p-384": lambda: _pkcs8(ec.generate_private_key(ec.SECP384R1())),
    "secp256k1": lambda: _pkcs8(ec.generate_private_key(ec.SECP256K1())),
    "encrypted p-256": lambda: PrivateKey.generate().key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"password"),
    ),
}


@pytest.mark.parametrize("name", FOREIGN_PEMS.keys())
def test_load_rejects_garbage_and_non_p256_keys(tmp_path: Path, name: str) -> None:
    pem = FOREIGN_PEMS[name]()
    path = tmp_path / "key.pem"
    path.write_bytes(pem)
    with pytest.raises(Malformed):
        PrivateKey.load(path)
    with pytest.raises(Malformed):
        PrivateKey.from_pem(pem)


def test_load_missing_file_is_malformed(tmp_path: Path) -> None:
    with pytest.raises(Malformed):
        PrivateKey.load(tmp_path / "missing.pem")
    with pytest.raises(Malformed):
        PrivateKey.load(tmp_path)


# --- independent verification with python-ecdsa ----------------------------------------------


def test_python_ecdsa_verifies_our_signatures() -> None:
    for _ in range(4):
        key = PrivateKey.generate()
        vk = ecdsa.VerifyingKey.from_string(
            key.public_key, curve=ecdsa.NIST256p, hashfunc=hashlib.sha256
        )
        assert vk.to_string("compressed") == key.public_key
        for i in range(25):
            message = os.urandom(i * 7)
            signature = key.sign(message)
            assert vk.verify(signature, message, sigdecode=ecdsa.util.sigdecode_string)


def test_python_ecdsa_rejects_tampered_messages() -> None:
    key = PrivateKey.generate()
    vk = ecdsa.VerifyingKey.from_string(
        key.public_key, curve=ecdsa.NIST256p, hashfunc=hashlib.sha256
    )
    signature = key.sign(b"message")
    with pytest.raises(ecdsa.BadSignatureError):
        vk.verify(signature, b"messagf", sigdecode=ecdsa.util.sigdecode_string)


def test_python_ecdsa_reads_our_pkcs8_pem() -> None:
    key = PrivateKey.generate()
    sk = ecdsa.SigningKey.from_pem(key.to_pem(), hashfunc=hashlib.sha256)
    assert sk.curve == ecdsa.NIST256p
    assert sk.verifying_key.to_string("compressed") == key.public_key


def test_we_verify_python_ecdsa_signatures() -> None:
    high_s_seen = 0
    for k in range(4):
        sk = ecdsa.SigningKey.generate(curve=ecdsa.NIST256p, hashfunc=hashlib.sha256)
        pub = sk.verifying_key.to_string("compressed")
        assert crypto.check_public_key(pub) == pub
        for i in range(25):
            message = b"ecdsa message %d/%d" % (k, i)
            r, s = sk.sign_deterministic(
                message, hashfunc=hashlib.sha256, sigencode=ecdsa.util.sigencode_strings
            )
            r, s = int.from_bytes(r, "big"), int.from_bytes(s, "big")
            if s > N // 2:
                high_s_seen += 1
                with pytest.raises(BadSignature):
                    crypto.verify(pub, message, join(r, s))
                s = N - s
            crypto.verify(pub, message, join(r, s))
            # python-ecdsa's own canonical form agrees with our normalisation
            canonical = sk.sign_deterministic(
                message, hashfunc=hashlib.sha256, sigencode=ecdsa.util.sigencode_string_canonize
            )
            assert canonical == join(r, s)
    assert high_s_seen > 0


def test_rfc6979_p256_sha256_test_vector() -> None:
    """RFC 6979 A.2.5, P-256 / SHA-256 / "sample": our verify accepts the low-S form."""
    x = 0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721
    sk = ecdsa.SigningKey.from_secret_exponent(x, curve=ecdsa.NIST256p, hashfunc=hashlib.sha256)
    pub = sk.verifying_key.to_string("compressed")
    r = 0xEFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716
    s = 0xF7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8
    assert sk.sign_deterministic(
        b"sample", hashfunc=hashlib.sha256, sigencode=ecdsa.util.sigencode_strings
    ) == (r.to_bytes(32, "big"), s.to_bytes(32, "big"))
    assert s > HALF_ORDER
    with pytest.raises(BadSignature):
        crypto.verify(pub, b"sample", join(r, s))
    crypto.verify(pub, b"sample", join(r, N - s))
    # and the same private key loaded through our PEM path signs verifiably
    ours = PrivateKey(ec.derive_private_key(x, ec.SECP256R1()))
    assert ours.public_key == pub
    crypto.verify(pub, b"sample", ours.sign(b"sample"))
