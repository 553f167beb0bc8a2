"""TLS on the wire (docs/PROTOCOL.md §18): a real uvicorn server on loopback serving a node
certificate the way a node does (`node.server.tls`), reached by a node's peer link and by the
public API client. A peer whose certificate does not carry the key genesis names is refused
before any request is written; a client that does not trust the CA is refused."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn
from typer.testing import CliRunner

from ledger import codec
from ledger.crypto import PrivateKey
from node.cli import app as cli_app
from node.client import ClientError, NodeClient
from node.client.tls import CERT_ENV, PeerTrust
from node.config import NodeSettings
from node.ops.tls import CertificateAuthority, certificate_pem
from node.server.p2p import PeerLink
from node.server.tls import TlsConfig, check_server_tls, ssl_options, warn_plain_http
from tests.node.conftest import free_port

STATUS = {"height": 5, "chain_id": "tls-test"}
T = TypeVar("T")


@dataclass
class Recorder:
    """An ASGI app answering /p2p/status (msgpack) and /v1/status (JSON); it records paths."""

    paths: list[str] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.paths.append(scope["path"])
        if scope["path"].startswith("/p2p/"):
            body, kind = codec.encode(STATUS), b"application/msgpack"
        else:
            body, kind = b'{"height": 5, "chain_id": "tls-test"}', b"application/json"
        headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@dataclass
class Pki:
    root: Path
    ca: CertificateAuthority
    ca_file: Path

    def home(self, name: str, key: PrivateKey, cert_key: bytes | None = None) -> NodeSettings:
        """A node home serving a certificate for `cert_key` (default: its own key)."""
        home = self.root / name
        home.mkdir()
        key.save(home / "node_key.pem")
        cert = self.ca.issue(cert_key or key.public_key, ["localhost", "127.0.0.1"], name)
        (home / "cert.pem").write_bytes(certificate_pem(cert))
        return NodeSettings(home=home, name=name, tls_cert="cert.pem")


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = CertificateAuthority.create("test CA")
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(certificate_pem(ca.certificate))
    return Pki(tmp_path, ca, ca_file)


@contextlib.contextmanager
def serving(settings: NodeSettings, app: Recorder) -> Iterator[str]:
    """Serve `app` with the TLS settings of `settings` on a free loopback port."""
    port = free_port()
    config = TlsConfig(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_level="warning",
        **ssl_options(settings),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the TLS server did not start"
        time.sleep(0.02)
    try:
        yield f"{settings.scheme}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def through_link(url: str, trust: PeerTrust, act: Callable[[PeerLink], Awaitable[T]]) -> T:
    """`act` on a node's peer link to `url`, verified by `trust`."""

    async def go() -> T:
        link = PeerLink(url, "tester", 10, trust=trust)
        try:
            return await act(link)
        finally:
            await link.close()

    return asyncio.run(go())


def fetch_height(url: str, trust: PeerTrust) -> int | None:
    """A GET, as block sync's go."""
    return through_link(url, trust, lambda link: link.fetch_height())


def post_vote_batch(url: str, trust: PeerTrust) -> bool:
    """A POST, as votes go."""
    return through_link(
        url, trust, lambda link: link._send("consensus", {"from": "tester", "messages": []})
    )


# --- peers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("with_ca", [True, False], ids=["ca-and-pin", "pin-only"])
def test_a_peer_showing_the_genesis_key_is_reached(pki: Pki, with_ca: bool) -> None:
    key = PrivateKey.generate()
    app = Recorder()
    with serving(pki.home("node-1", key), app) as url:
        trust = PeerTrust(pki.ca_file if with_ca else None, {url: key.public_key})
        assert fetch_height(url, trust) == 5
        assert post_vote_batch(url, trust)
    assert app.paths == ["/p2p/status", "/p2p/consensus"]


@pytest.mark.parametrize("with_ca", [True, False], ids=["ca-and-pin", "pin-only"])
def test_a_peer_with_a_certificate_for_the_wrong_key_is_refused(
    pki: Pki, with_ca: bool, caplog: pytest.LogCaptureFixture
) -> None:
    genesis_key, impostor = PrivateKey.generate(), PrivateKey.generate()
    app = Recorder()
    # The impostor holds a certificate from the same CA, for the right host names, but for
    # its own key: the chain and the host name verify; the pin does not.
    with serving(pki.home("node-1", impostor), app) as url:
        trust = PeerTrust(pki.ca_file if with_ca else None, {url: genesis_key.public_key})
        for refused in (
            lambda: fetch_height(url, trust) is None,
            lambda: not post_vote_batch(url, trust),
        ):
            caplog.clear()
            with caplog.at_level(logging.INFO, logger="provledger.p2p"):
                assert refused()
            refusal = " ".join(r.getMessage() for r in caplog.records)
            assert f"not the node key {genesis_key.public_key.hex()}" in refusal
            assert impostor.public_key.hex() in refusal
    assert app.paths == []  # refused after the handshake, before any request was written


def test_a_peer_certificate_from_another_ca_is_refused(pki: Pki) -> None:
    key = PrivateKey.generate()
    other = CertificateAuthority.create("another CA")
    other_file = pki.root / "other.pem"
    other_file.write_bytes(certificate_pem(other.certificate))
    app = Recorder()
    with serving(pki.home("node-1", key), app) as url:
        assert fetch_height(url, PeerTrust(other_file, {url: key.public_key})) is None
        assert not post_vote_batch(url, PeerTrust(other_file, {url: key.public_key}))
        # Unpinned (a peer genesis does not name) it still needs the CA.
        assert fetch_height(url, PeerTrust(other_file, {})) is None
        assert not post_vote_batch(url, PeerTrust(other_file, {}))
        assert fetch_height(url, PeerTrust(pki.ca_file, {})) == 5
        assert post_vote_batch(url, PeerTrust(pki.ca_file, {}))
    assert app.paths == ["/p2p/status", "/p2p/consensus"]


# --- public API clients ---------------------------------------------------------------------


def test_a_client_that_does_not_trust_the_ca_is_refused(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CERT_ENV, raising=False)
    app = Recorder()
    with serving(pki.home("node-1", PrivateKey.generate()), app) as url:
        with NodeClient(url) as client, pytest.raises(ClientError) as refused:
            client.status()
        assert refused.value.status == 0
        assert refused.value.title == "untrusted certificate"
        assert "--ca" in refused.value.detail and "SSL_CERT_FILE" in refused.value.detail
        assert app.paths == []
        with NodeClient(url, ca=pki.ca_file) as client:
            assert client.status()["height"] == 5
        monkeypatch.setenv(CERT_ENV, str(pki.ca_file))
        with NodeClient(url) as client:
            assert client.status()["chain_id"] == "tls-test"
        # By name too: the certificate names localhost.
        with NodeClient(url.replace("127.0.0.1", "localhost")) as client:
            assert client.status()["height"] == 5
    assert app.paths == ["/v1/status"] * 3


def test_an_https_client_of_a_plain_node_is_told_so(pki: Pki) -> None:
    plain = NodeSettings(home=pki.root, name="plain")
    app = Recorder()
    with serving(plain, app) as url:
        assert url.startswith("http://")
        client = NodeClient(url.replace("http://", "https://"), ca=pki.ca_file)
        with client, pytest.raises(ClientError, match="does not speak TLS"):
            client.status()


def handshake(url: str, ca: Path, version: ssl.TLSVersion) -> str:
    host, port = url.removeprefix("https://").split(":")
    context = ssl.create_default_context(cafile=str(ca))
    context.minimum_version = context.maximum_version = version
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        return str(tls.version())


def test_a_node_speaks_tls_1_3_only(pki: Pki) -> None:
    with serving(pki.home("node-1", PrivateKey.generate()), Recorder()) as url:
        assert handshake(url, pki.ca_file, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
        with pytest.raises(ssl.SSLError):
            handshake(url, pki.ca_file, ssl.TLSVersion.TLSv1_2)


def test_a_certificate_for_another_key_stops_the_node_at_start(pki: Pki) -> None:
    settings = pki.home("node-1", PrivateKey.generate(), PrivateKey.generate().public_key)
    with pytest.raises(SystemExit, match="cannot serve TLS"):
        check_server_tls(settings)
    check_server_tls(pki.home("node-2", PrivateKey.generate()))


def test_a_plain_client_of_a_tls_node_is_told_to_use_https(pki: Pki) -> None:
    app = Recorder()
    with serving(pki.home("node-1", PrivateKey.generate()), app) as url:
        client = NodeClient(url.replace("https://", "http://"))
        with client, pytest.raises(ClientError, match="use https://"):
            client.status()
    assert app.paths == []


def test_plain_http_off_loopback_is_logged_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="provledger.node"):
        warn_plain_http(NodeSettings(home=tmp_path, host="127.0.0.1"))
        assert caplog.records == []
        warn_plain_http(NodeSettings(home=tmp_path, host="0.0.0.0", p2p_listen="127.0.0.1:9"))
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "public API listener serves plain HTTP on 0.0.0.0" in caplog.records[0].getMessage()


# --- the command line's --ca ----------------------------------------------------------------

runner = CliRunner()
NODE_COMMANDS = [
    ["status"],
    ["verify"],
    ["admit"],
    ["submit", "register"],
    ["submit", "grant"],
    ["submit", "revoke"],
    ["export", "prov"],
    ["openlineage", "serve"],
]


@pytest.mark.parametrize("command", NODE_COMMANDS, ids=" ".join)
def test_every_command_that_talks_to_a_node_takes_ca(command: list[str]) -> None:
    result = runner.invoke(cli_app, [*command, "--help"])
    assert result.exit_code == 0
    assert "--node" in result.output and "--ca FILE" in result.output


@pytest.mark.parametrize(
    "command", [["keygen"], ["cluster", "init"], ["node", "init"], ["node", "certify"]]
)
def test_commands_without_a_node_take_no_ca(command: list[str]) -> None:
    result = runner.invoke(cli_app, [*command, "--help"])
    assert result.exit_code == 0 and "--ca FILE" not in result.output


def test_the_cli_trusts_the_ca_it_is_given(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CERT_ENV, raising=False)
    other = tmp_path / "other.pem"
    other.write_bytes(certificate_pem(CertificateAuthority.create("other").certificate))
    app = Recorder()
    with serving(pki.home("node-1", PrivateKey.generate()), app) as url:
        trusted = runner.invoke(cli_app, ["status", "--node", url, "--ca", str(pki.ca_file)])
        assert trusted.exit_code == 0, trusted.output
        assert "tls-test" in trusted.output
        for extra in ([], ["--ca", str(other)]):
            refused = runner.invoke(cli_app, ["status", "--node", url, *extra])
            assert refused.exit_code == 1
            assert "is not trusted" in refused.output and refused.exception is not None
            assert isinstance(refused.exception, SystemExit)
    assert app.paths == ["/v1/status"]
