"""A private certificate authority and node certificates for TLS clusters (PROTOCOL §18).

`cluster init --tls` / `cluster up --tls` make one CA per cluster directory (`ca.pem`, the
certificate clients are given with `--ca`; `ca_key.pem`, its private key, which stays with
the operator like `registrar.pem`) and, in every node home, `tls_cert.pem`: a certificate
whose public key IS the node's identity key (the validator's `node_key.pem`, the node key
genesis names), so that peers can pin it to genesis, signed by the CA, for the node's host
names (always `localhost`, `127.0.0.1` and `::1`). The home also gets `tls_ca.pem`, a copy of
the CA certificate it verifies its peers against.

Keys are ECDSA P-256, like every key of the ledger; signatures SHA-256.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ledger.crypto import PrivateKey, load_public_key
from ledger.errors import Malformed
from node.config import NodeSettings

CA_FILE = "ca.pem"
CA_KEY_FILE = "ca_key.pem"
HOME_CERT_FILE = "tls_cert.pem"
HOME_CA_FILE = "tls_ca.pem"
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
CA_VALIDITY = timedelta(days=3650)
NODE_VALIDITY = timedelta(days=825)
# Certificates start an hour early, so that a peer whose clock is a little behind accepts them.
BACKDATE = timedelta(hours=1)
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


class TlsSetupError(Exception):
    """A CA or certificate that cannot be made or read."""


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "provledger"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


_DNS_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")


def subject_alt_names(hosts: Iterable[str]) -> list[x509.GeneralName]:
    """IP addresses as IP entries, DNS names (labels of letters, digits, hyphens and
    underscores) as DNS entries; duplicates once. Anything else, a URL or `host:port` say,
    is refused (TlsSetupError) rather than certified as a name nobody connects to."""
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(h.strip("[]").lower() for h in hosts if h not in WILDCARD_HOSTS):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
            continue
        except ValueError:
            pass
        labels = host.rstrip(".").split(".")
        if len(host) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
            raise TlsSetupError(
                f"{host!r} is neither an IP address nor a DNS name (give a host, without "
                "scheme or port)"
            )
        names.append(x509.DNSName(host))
    return names


def certificate_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_usage(*, certifies: bool) -> x509.KeyUsage:
    """A CA's key signs certificates and CRLs; a node's signs TLS handshakes, nothing else."""
    return x509.KeyUsage(
        digital_signature=not certifies,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=certifies,
        crl_sign=certifies,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass(frozen=True)
class CertificateAuthority:
    """A private CA: its key and self-signed certificate."""

    key: PrivateKey
    certificate: x509.Certificate

    @classmethod
    def create(cls, name: str, now: datetime | None = None) -> CertificateAuthority:
        now = now or datetime.now(UTC)
        key = PrivateKey.generate()
        public = key.key.public_key()
        ski = x509.SubjectKeyIdentifier.from_public_key(public)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(certifies=True), critical=True)
            .add_extension(ski, critical=False)
            .sign(key.key, hashes.SHA256())
        )
        return cls(key, certificate)

    @classmethod
    def load(cls, directory: Path) -> CertificateAuthority:
        try:
            key = PrivateKey.load(directory / CA_KEY_FILE)
            certificate = x509.load_pem_x509_certificate((directory / CA_FILE).read_bytes())
        except (Malformed, OSError, ValueError) as exc:
            raise TlsSetupError(f"cannot read the cluster CA in {directory}: {exc}") from exc
        if certificate.public_key() != key.key.public_key():
            raise TlsSetupError(f"{directory / CA_KEY_FILE} is not the key of {CA_FILE}")
        return cls(key, certificate)

    def save(self, directory: Path) -> None:
        """Write `ca.pem` and `ca_key.pem` (0600); refuse to overwrite either."""
        existing = [p for p in (directory / CA_FILE, directory / CA_KEY_FILE) if p.exists()]
        if existing:
            raise TlsSetupError(f"{existing[0]} exists; refusing to overwrite a CA")
        self.key.save(directory / CA_KEY_FILE)
        (directory / CA_FILE).write_bytes(certificate_pem(self.certificate))

    def issue(
        self,
        public_key: bytes,
        hosts: Iterable[str],
        name: str,
        now: datetime | None = None,
        validity: timedelta = NODE_VALIDITY,
    ) -> x509.Certificate:
        """A server (and client) certificate for the compressed P-256 `public_key`, valid for
        `hosts` (IP addresses and DNS names)."""
        now = now or datetime.now(UTC)
        names = subject_alt_names(hosts)
        if not names:
            raise TlsSetupError(f"a certificate for {name} needs at least one host name")
        try:
            subject_key = load_public_key(public_key)
        except Malformed as exc:
            raise TlsSetupError(f"cannot certify {name}: {exc}") from exc
        ca_public = self.key.key.public_key()
        return (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(self.certificate.subject)
            .public_key(subject_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + validity)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(certifies=False), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False
            )
            .sign(self.key.key, hashes.SHA256())
        )


def node_hosts(settings: NodeSettings, extra: Iterable[str] = ()) -> list[str]:
    """The host names a node's certificate names: loopback, its bind addresses (unless a
    wildcard), and `extra` (for example the host of its advertised URL)."""
    hosts = [*LOCAL_HOSTS, settings.host, settings.p2p_address[0], *extra]
    return [h for h in dict.fromkeys(hosts) if h not in WILDCARD_HOSTS]


def certify_home(
    ca: CertificateAuthority,
    ca_file: Path,
    settings: NodeSettings,
    public_key: bytes,
    extra_hosts: Iterable[str] = (),
) -> NodeSettings:
    """Write the home's `tls_cert.pem` (for `public_key`, its identity key) and `tls_ca.pem`
    (a copy of `ca_file`), and return its settings serving TLS with them (not saved)."""
    certificate = ca.issue(public_key, node_hosts(settings, extra_hosts), settings.name)
    (settings.home / HOME_CERT_FILE).write_bytes(certificate_pem(certificate))
    shutil.copyfile(ca_file, settings.home / HOME_CA_FILE)
    return replace(settings, tls_cert=HOME_CERT_FILE, tls_key="", tls_ca=HOME_CA_FILE)


__all__ = [
    "CA_FILE",
    "CA_KEY_FILE",
    "HOME_CA_FILE",
    "HOME_CERT_FILE",
    "CertificateAuthority",
    "TlsSetupError",
    "certificate_pem",
    "certify_home",
    "node_hosts",
    "subject_alt_names",
]
