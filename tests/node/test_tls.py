"""TLS set-up (docs/PROTOCOL.md §18): the cluster CA and node certificates, TLS settings, the
plain-HTTP warning and what clients trust. Real certificates, real files; no sockets here
(tests/node/test_tls_peers.py serves them)."""

from __future__ import annotations

import json
import ssl
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from ledger.blocks import Validator
from ledger.crypto import PrivateKey
from ledger.errors import Malformed
from ledger.genesis import Genesis
from node.client import ClientError, NodeClient
from node.client.tls import (
    CERT_ENV,
    CaBundleError,
    PeerTrust,
    certificate_key,
    client_context,
    trusting,
)
from node.config import NodeSettings, is_loopback, plain_http_warnings
from node.ops.homes import ClusterError, ClusterExists, init_cluster, local_url, node_home
from node.ops.tls import (
    CA_FILE,
    CA_KEY_FILE,
    HOME_CA_FILE,
    HOME_CERT_FILE,
    CertificateAuthority,
    TlsSetupError,
    certificate_pem,
    subject_alt_names,
)


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def san_of(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return set(san.get_values_for_type(x509.DNSName)), ips


# --- the CA and its certificates ---------------------------------------------------------


def test_a_node_certificate_carries_the_node_key_and_chains_to_the_ca() -> None:
    ca = CertificateAuthority.create("test CA")
    node_key = PrivateKey.generate()
    cert = ca.issue(node_key.public_key, ["localhost", "127.0.0.1", "::1", "node-1.example"], "n")
    assert certificate_key(cert.public_bytes(Encoding.DER)) == (node_key.public_key)
    cert.verify_directly_issued_by(ca.certificate)
    other = CertificateAuthority.create("another CA")
    with pytest.raises((ValueError, InvalidSignature)):
        cert.verify_directly_issued_by(other.certificate)
    dns, ips = san_of(cert)
    assert dns == {"localhost", "node-1.example"}
    assert ips == {"127.0.0.1", "::1"}
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usage
    assert ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    now = datetime.now(UTC)
    assert cert.not_valid_before_utc < now < cert.not_valid_after_utc
    assert ca.certificate.not_valid_after_utc - now > timedelta(days=3000)


def test_a_certificate_needs_a_host_and_a_p256_key() -> None:
    ca = CertificateAuthority.create("test CA")
    with pytest.raises(TlsSetupError, match="host"):
        ca.issue(PrivateKey.generate().public_key, ["0.0.0.0"], "n")
    with pytest.raises(TlsSetupError, match="cannot certify"):
        ca.issue(b"\x02" + b"\xff" * 32, ["localhost"], "n")


@pytest.mark.parametrize("host", ["https://org-4:8900", "org-4:8900", "a/b", "-x", "a..b"])
def test_a_certificate_names_hosts_only(host: str) -> None:
    """A URL or host:port would be certified as a name nobody connects to."""
    ca = CertificateAuthority.create("test CA")
    key = PrivateKey.generate().public_key
    with pytest.raises(TlsSetupError, match="neither an IP address nor a DNS name"):
        ca.issue(key, ["localhost", host], "n")
    names = subject_alt_names(["org_4.example", "::1", "[::1]", "LOCALHOST", "localhost"])
    assert [str(n.value) for n in names] == ["org_4.example", "::1", "localhost"]


def test_the_ca_is_saved_once_and_loaded_back(tmp_path: Path) -> None:
    ca = CertificateAuthority.create("test CA")
    ca.save(tmp_path)
    assert stat.S_IMODE((tmp_path / CA_KEY_FILE).stat().st_mode) == 0o600
    loaded = CertificateAuthority.load(tmp_path)
    assert loaded.certificate == ca.certificate
    assert loaded.key.public_key == ca.key.public_key
    with pytest.raises(TlsSetupError, match="refusing to overwrite"):
        CertificateAuthority.create("again").save(tmp_path)
    # A key that is not the certificate's is refused.
    (tmp_path / CA_KEY_FILE).unlink()
    PrivateKey.generate().save(tmp_path / CA_KEY_FILE)
    with pytest.raises(TlsSetupError, match="not the key"):
        CertificateAuthority.load(tmp_path)
    with pytest.raises(TlsSetupError, match="cannot read"):
        CertificateAuthority.load(tmp_path / "nowhere")


# --- cluster init --tls ---------------------------------------------------------------------


def test_a_tls_cluster_has_a_ca_and_a_certificate_for_every_node_key(tmp_path: Path) -> None:
    genesis = init_cluster(tmp_path, 4, base_port=9300, tls=True)
    ca_cert = load_cert(tmp_path / CA_FILE)
    assert stat.S_IMODE((tmp_path / CA_KEY_FILE).stat().st_mode) == 0o600
    for i, validator in enumerate(genesis.validators.validators):
        assert validator.url == f"https://127.0.0.1:{9304 + i}"
        home = node_home(tmp_path, i)
        settings = NodeSettings.load(home)
        assert settings.tls and settings.tls_cert == HOME_CERT_FILE
        assert settings.tls_ca == HOME_CA_FILE and settings.tls_key == ""
        assert settings.tls_key_path == home / "node_key.pem"
        assert settings.url == f"https://127.0.0.1:{9300 + i}"
        assert local_url(settings) == f"https://127.0.0.1:{9300 + i}"
        assert all(peer.startswith("https://") for peer in settings.peers)
        assert (home / HOME_CA_FILE).read_bytes() == (tmp_path / CA_FILE).read_bytes()
        cert = load_cert(home / HOME_CERT_FILE)
        cert.verify_directly_issued_by(ca_cert)
        der = cert.public_bytes(Encoding.DER)
        assert certificate_key(der) == validator.public_key
        assert certificate_key(der) == PrivateKey.load(home / "node_key.pem").public_key
        dns, ips = san_of(cert)
        assert "localhost" in dns and {"127.0.0.1", "::1"} <= ips
        # The pair loads as a server certificate (what uvicorn does).
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            home / HOME_CERT_FILE, settings.tls_key_path
        )
    assert Genesis.load(tmp_path / "genesis.json") == genesis
    with pytest.raises(ClusterExists):
        init_cluster(tmp_path, 4, base_port=9300, tls=True)


def test_a_tls_cluster_for_containers_names_the_advertised_hosts(tmp_path: Path) -> None:
    genesis = init_cluster(tmp_path, 2, advertise="https://org-{i}-node:8800", tls=True)
    assert [v.url for v in genesis.validators.validators] == [
        "https://org-0-node:8900",
        "https://org-1-node:8900",
    ]
    dns, ips = san_of(load_cert(node_home(tmp_path, 1) / HOME_CERT_FILE))
    assert dns == {"localhost", "org-1-node"}
    assert ips == {"127.0.0.1", "::1"}  # the wildcard bind is no name
    with pytest.raises(ClusterError, match="https"):
        init_cluster(tmp_path / "plain", 2, advertise="http://org-{i}-node:8800", tls=True)


def test_a_plain_cluster_has_no_ca(tmp_path: Path) -> None:
    genesis = init_cluster(tmp_path, 2, base_port=9400)
    assert not (tmp_path / CA_FILE).exists()
    assert all(v.url.startswith("http://") for v in genesis.validators.validators)
    assert not NodeSettings.load(node_home(tmp_path, 0)).tls


# --- settings and warnings ------------------------------------------------------------------


def write_config(home: Path, **settings: object) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.json").write_text(json.dumps(settings))


def test_tls_settings_that_cannot_work_are_refused(tmp_path: Path) -> None:
    write_config(tmp_path, tls_key="key.pem")
    (tmp_path / "key.pem").write_text("x")
    with pytest.raises(Malformed, match="tls_cert is not"):
        NodeSettings.load(tmp_path)
    write_config(tmp_path, tls_cert="missing.pem")
    with pytest.raises(Malformed, match=r"tls_cert .* is not a file"):
        NodeSettings.load(tmp_path)
    (tmp_path / "cert.pem").write_text("x")
    write_config(tmp_path, tls_cert="cert.pem", tls_ca="ca.pem")
    with pytest.raises(Malformed, match=r"tls_ca .* is not a file"):
        NodeSettings.load(tmp_path)
    write_config(tmp_path, tls_cert="cert.pem", tls_key="gone.pem")
    with pytest.raises(Malformed, match=r"tls_key .* is not a file"):
        NodeSettings.load(tmp_path)
    write_config(tmp_path, tls_cert="cert.pem", tls_key="key.pem")
    settings = NodeSettings.load(tmp_path)
    assert settings.tls_key_path == tmp_path / "key.pem" and settings.scheme == "https"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.0.0.5", False),
        ("node-1.example", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_plain_http_off_loopback_is_warned_about(tmp_path: Path) -> None:
    local = NodeSettings(home=tmp_path, host="127.0.0.1")
    assert plain_http_warnings(local) == []
    exposed = NodeSettings(home=tmp_path, host="0.0.0.0", port=8800, p2p_listen="0.0.0.0:8900")
    warnings = plain_http_warnings(exposed)
    assert len(warnings) == 2
    assert "public API" in warnings[0] and "0.0.0.0:8800" in warnings[0]
    assert "peer" in warnings[1] and "0.0.0.0:8900" in warnings[1]
    peers_only = NodeSettings(home=tmp_path, host="127.0.0.1", p2p_listen="10.1.2.3:8900")
    assert [w.split(" listener")[0] for w in plain_http_warnings(peers_only)] == ["the peer"]
    (tmp_path / "cert.pem").write_text("x")
    served = NodeSettings(home=tmp_path, host="0.0.0.0", tls_cert="cert.pem")
    assert plain_http_warnings(served) == []


# --- what clients trust ---------------------------------------------------------------------


def subjects(context: ssl.SSLContext) -> list[str]:
    return [str(cert.get("subject")) for cert in context.get_ca_certs()]


def test_clients_trust_ca_then_the_cli_ca_then_ssl_cert_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = CertificateAuthority.create("first CA"), CertificateAuthority.create("second")
    (tmp_path / "first.pem").write_bytes(certificate_pem(first.certificate))
    (tmp_path / "second.pem").write_bytes(certificate_pem(second.certificate))
    monkeypatch.setenv(CERT_ENV, str(tmp_path / "second.pem"))
    from_env = client_context()
    assert len(from_env.get_ca_certs()) == 1 and "second" in subjects(from_env)[0]
    assert from_env.check_hostname and from_env.verify_mode == ssl.CERT_REQUIRED
    given = client_context(tmp_path / "first.pem")
    assert "first CA" in subjects(given)[0] and len(given.get_ca_certs()) == 1
    with trusting(tmp_path / "first.pem"):
        assert "first CA" in subjects(client_context())[0]
    assert "second" in subjects(client_context())[0]
    monkeypatch.setenv(CERT_ENV, str(tmp_path / "nothing.pem"))
    with pytest.raises(CaBundleError, match="SSL_CERT_FILE"):
        client_context()


def test_a_bad_ca_bundle_is_a_clear_client_error(tmp_path: Path) -> None:
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(CaBundleError, match=r"junk\.pem"):
        client_context(tmp_path / "junk.pem")
    with pytest.raises(ClientError) as caught:
        NodeClient("https://127.0.0.1:1", ca=tmp_path / "junk.pem")
    assert caught.value.status == 0 and caught.value.title == "bad CA bundle"
    # A plain http:// node needs no CA: a bad one does not matter there.
    NodeClient("http://127.0.0.1:1", ca=tmp_path / "junk.pem").close()


def test_peers_are_pinned_to_the_genesis_keys(tmp_path: Path) -> None:
    genesis = init_cluster(tmp_path, 3, base_port=9500, tls=True)
    trust = PeerTrust.from_genesis(None, genesis.validators.validators)
    for validator in genesis.validators.validators:
        assert trust.pins[validator.url] == validator.public_key
        security = trust.security(validator.url + "/")
        assert security is not None and security[1] == validator.public_key
        assert security[0].minimum_version == ssl.TLSVersion.TLSv1_3
    assert trust.security("http://127.0.0.1:9504") is None
    newcomer = Validator("node-9", PrivateKey.generate().public_key, 1, "https://n9:8900/")
    grown = trust.with_validators([newcomer])
    assert grown.pins["https://n9:8900"] == newcomer.public_key
    assert len(grown.pins) == 4 and "https://n9:8900" not in trust.pins
    unpinned = trust.security("https://elsewhere.example:8900")
    assert unpinned is not None and unpinned[1] is None and unpinned[0].check_hostname


def test_certificate_key_reads_only_p256_keys() -> None:
    assert certificate_key(b"not DER") is None
    ca = CertificateAuthority.create("test CA")
    der = ca.certificate.public_bytes(Encoding.DER)
    assert certificate_key(der) == ca.key.public_key
