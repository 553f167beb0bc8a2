"""Clients of a node's public HTTP API (docs/PROTOCOL.md §10): `NodeClient` (blocking) and
`AsyncNodeClient` (asyncio), with one definition of every call.

Every non-2xx answer becomes a `ClientError` built from the RFC 9457 problem document; a
404 is the `NotFound` subclass; a node that cannot be reached is `ClientError(0, ...)`, and
one whose certificate is not trusted `ClientError(0, "untrusted certificate", ...)`.

An `https://` node is verified against the CA bundle `ca`, else `$SSL_CERT_FILE`, else the
system's trust store (`node.client.tls`, docs/PROTOCOL.md §18).
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, TypeVar

import httpx

from node.client.tls import CaBundleError, client_context

DEFAULT_TIMEOUT = 10.0
DEFAULT_WAIT_TIMEOUT = 90.0


class ClientError(Exception):
    """A refused or failed request: HTTP status (0 when unreachable), problem title, detail."""

    def __init__(self, status: int, title: str, detail: str = "") -> None:
        super().__init__(f"{title}: {detail}" if detail else title)
        self.status = status
        self.title = title
        self.detail = detail

    def describe(self) -> str:
        """One line for a person: the status, the node's title and its detail."""
        prefix = f"HTTP {self.status} " if self.status else ""
        return f"{prefix}{self.title}" + (f": {self.detail}" if self.detail else "")


class NotFound(ClientError):
    """The node does not know the requested thing (HTTP 404)."""


def _hex(value: bytes | str) -> str:
    return value.hex() if isinstance(value, bytes) else value


def _problem(response: httpx.Response) -> ClientError:
    title = response.reason_phrase or "error"
    detail = ""
    try:
        doc = response.json()
    except ValueError:
        detail = response.text.strip()[:500]
    else:
        if isinstance(doc, dict):
            title = str(doc.get("title") or title)
            raw = doc.get("detail")
            detail = "" if raw is None else raw if isinstance(raw, str) else str(raw)
        else:
            detail = str(doc)[:500]
    cls = NotFound if response.status_code == 404 else ClientError
    return cls(response.status_code, title, detail)


def _json_object(call: Call, doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise ClientError(200, "bad response", f"{call.method} {call.path} did not return a map")
    return doc


def _with_event_id(call: Call, doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict) or "event_id" not in doc:
        raise ClientError(200, "bad response", f"POST {call.path} did not return an event_id")
    return doc


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _tls_error(base_url: str, exc: Exception) -> ClientError | None:
    """A clear error for the TLS failures a person can fix: an untrusted certificate, or a
    scheme that does not match what the node serves."""
    text = " ".join(str(e) for e in _causes(exc))
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in _causes(exc)) or (
        "CERTIFICATE_VERIFY_FAILED" in text
    ):
        return ClientError(
            0,
            "untrusted certificate",
            f"the TLS certificate of {base_url} is not trusted ({exc}); give the CA bundle "
            "that signed it (--ca FILE, or SSL_CERT_FILE)",
        )
    if base_url.startswith("https://") and any(
        sign in text for sign in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "record layer")
    ):
        return ClientError(
            0, "unreachable", f"{base_url} does not speak TLS ({exc}); is it an http:// node?"
        )
    if base_url.startswith("http://") and isinstance(exc, httpx.RemoteProtocolError):
        return ClientError(
            0, "unreachable", f"{base_url} hung up ({exc}); if it serves HTTPS, use https://"
        )
    return None


@dataclass(frozen=True)
class Call:
    """One request of the API and how its JSON answer is checked."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    timeout: float | None = None
    check: Callable[[Call, Any], dict[str, Any]] = field(default=_json_object)

    def options(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"params": self.params, "json": self.json}
        if self.timeout is not None:
            extra["timeout"] = self.timeout
        return extra

    def transport_error(self, base_url: str, exc: Exception) -> ClientError:
        if isinstance(exc, httpx.TimeoutException):
            return ClientError(0, "timed out", f"no answer from the node at {base_url} ({exc})")
        return _tls_error(base_url, exc) or ClientError(
            0, "unreachable", f"cannot reach the node at {base_url} ({exc})"
        )

    def result(self, response: httpx.Response) -> dict[str, Any]:
        if not response.is_success:
            raise _problem(response)
        try:
            doc = response.json()
        except ValueError as exc:
            raise ClientError(
                response.status_code, "bad response", f"{self.method} {self.path} is not JSON"
            ) from exc
        return self.check(self, doc)


TRANSPORT_ERRORS = (httpx.TransportError, httpx.InvalidURL)
Result = TypeVar("Result", dict[str, Any], Awaitable[dict[str, Any]])


class _Api(Generic[Result]):
    """Every call of the public API, defined once; `_run` performs it."""

    base_url: str
    wait_timeout: float

    def _run(self, call: Call) -> Result:
        raise NotImplementedError

    def submit(self, envelope: bytes, wait: bool = False) -> Result:
        """POST an envelope; with `wait`, until it is committed (height, leaf_index)."""
        return self._run(
            Call(
                "POST",
                "/v1/events",
                params={"wait": "commit"} if wait else None,
                json={"envelope": envelope.hex()},
                timeout=self.wait_timeout if wait else None,
                check=_with_event_id,
            )
        )

    def submit_batch(self, envelopes: list[bytes], wait: bool = False) -> Result:
        """POST up to 1,000 envelopes; `results` holds one outcome per envelope, in order."""
        return self._run(
            Call(
                "POST",
                "/v1/events/batch",
                params={"wait": "commit"} if wait else None,
                json={"envelopes": [e.hex() for e in envelopes]},
                timeout=self.wait_timeout if wait else None,
            )
        )

    def event(self, event_id: bytes | str) -> Result:
        return self._run(Call("GET", f"/v1/events/{_hex(event_id)}"))

    def dataset(self, dataset: bytes | str) -> Result:
        return self._run(Call("GET", f"/v1/datasets/{_hex(dataset)}"))

    def provenance(
        self, dataset: bytes | str, after: int | None = None, height: int | None = None
    ) -> Result:
        """One page of the dataset's proof bundle; the first one without `after`."""
        params = {k: v for k, v in (("after", after), ("height", height)) if v is not None}
        path = f"/v1/datasets/{_hex(dataset)}/provenance"
        return self._run(Call("GET", path, params=params or None))

    def state(self, kind: str, key: bytes | str) -> Result:
        """A state record (participant, dataset, grant, commitment) or its absence, proven."""
        return self._run(Call("GET", f"/v1/state/{kind}/{_hex(key)}"))

    def participant(self, public_key: bytes | str) -> Result:
        return self._run(Call("GET", f"/v1/participants/{_hex(public_key)}"))

    def participant_events(
        self, public_key: bytes | str, after: int | None = None, limit: int | None = None
    ) -> Result:
        params = {k: v for k, v in (("after", after), ("limit", limit)) if v is not None}
        path = f"/v1/participants/{_hex(public_key)}/events"
        return self._run(Call("GET", path, params=params or None))

    def block(self, height: int) -> Result:
        return self._run(Call("GET", f"/v1/blocks/{height}"))

    def status(self) -> Result:
        return self._run(Call("GET", "/v1/status"))

    def genesis(self) -> Result:
        return self._run(Call("GET", "/v1/genesis"))

    def checkpoint(self) -> Result:
        return self._run(Call("GET", "/v1/checkpoint"))

    def governance_proposals(self, status: str = "open") -> Result:
        """Governance proposals ("open", "decided" or "all") with their approved power
        (docs/PROTOCOL.md §19.2)."""
        return self._run(Call("GET", "/v1/governance/proposals", params={"status": status}))


def _base(base_url: str) -> str:
    return base_url.rstrip("/")


def _bad_url(base_url: str, exc: Exception) -> ClientError:
    return ClientError(0, "unreachable", f"bad node URL {base_url!r}: {exc}")


def _verify(base_url: str, ca: str | Path | None) -> ssl.SSLContext:
    """What an `https://` node's certificate is verified against. A plain `http://` client
    gets a context that trusts nothing (it never follows a redirect, so it never uses it):
    httpx would otherwise load a CA store for nothing, about 60 ms per client."""
    if not base_url.lower().startswith("https://"):
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        return client_context(ca)
    except CaBundleError as exc:
        raise ClientError(0, "bad CA bundle", str(exc)) from exc


class NodeClient(_Api[dict[str, Any]]):
    """The public API of one node at `base_url` (for example `http://127.0.0.1:8800`);
    an `https://` node's certificate is verified against `ca` (see the module doc)."""

    def __init__(
        self,
        base_url: str,
        timeout: float = DEFAULT_TIMEOUT,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        ca: str | Path | None = None,
    ) -> None:
        self.base_url = _base(base_url)
        self.wait_timeout = wait_timeout
        verify = _verify(self.base_url, ca)
        try:
            self._http = httpx.Client(base_url=self.base_url, timeout=timeout, verify=verify)
        except (httpx.InvalidURL, ValueError) as exc:
            raise _bad_url(base_url, exc) from exc

    def _run(self, call: Call) -> dict[str, Any]:
        try:
            response = self._http.request(call.method, call.path, **call.options())
        except TRANSPORT_ERRORS as exc:
            raise call.transport_error(self.base_url, exc) from exc
        return call.result(response)

    def healthz(self) -> bool:
        """True when the node answers its liveness probe with a 2xx."""
        try:
            return self._http.get("/healthz").is_success
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncNodeClient(_Api[Awaitable[dict[str, Any]]]):
    """The same API for asyncio, with a connection pool of `connections`."""

    def __init__(
        self,
        base_url: str,
        timeout: float = DEFAULT_TIMEOUT,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        connections: int = 10,
        ca: str | Path | None = None,
    ) -> None:
        self.base_url = _base(base_url)
        self.wait_timeout = wait_timeout
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        verify = _verify(self.base_url, ca)
        try:
            self._http = httpx.AsyncClient(
                base_url=self.base_url, timeout=timeout, limits=limits, verify=verify
            )
        except (httpx.InvalidURL, ValueError) as exc:
            raise _bad_url(base_url, exc) from exc

    async def _perform(self, call: Call) -> dict[str, Any]:
        try:
            response = await self._http.request(call.method, call.path, **call.options())
        except TRANSPORT_ERRORS as exc:
            raise call.transport_error(self.base_url, exc) from exc
        return call.result(response)

    def _run(self, call: Call) -> Awaitable[dict[str, Any]]:
        return self._perform(call)

    async def healthz(self) -> bool:
        try:
            return (await self._http.get("/healthz")).is_success
        except httpx.HTTPError:
            return False

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncNodeClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
