"""A small synchronous client for a node's public HTTP API (DESIGN.md §6).

Every non-2xx answer becomes a `ClientError` built from the RFC 9457 problem document; a
404 is the `NotFound` subclass; a node that cannot be reached is `ClientError(0, ...)`.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx

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


class NodeClient:
    """The public API of one node at `base_url` (for example `http://127.0.0.1:8800`)."""

    def __init__(
        self,
        base_url: str,
        timeout: float = DEFAULT_TIMEOUT,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.wait_timeout = wait_timeout
        try:
            self._http = httpx.Client(base_url=self.base_url, timeout=timeout)
        except (httpx.InvalidURL, ValueError) as exc:
            raise ClientError(0, "unreachable", f"bad node URL {base_url!r}: {exc}") from exc

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

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        timeout: float | None = None,
    ) -> Any:
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        try:
            response = self._http.request(method, path, params=params, json=json, **extra)
        except httpx.TimeoutException as exc:
            raise ClientError(
                0, "timed out", f"no answer from the node at {self.base_url} ({exc})"
            ) from exc
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            raise ClientError(
                0, "unreachable", f"cannot reach the node at {self.base_url} ({exc})"
            ) from exc
        if not response.is_success:
            raise _problem(response)
        try:
            return response.json()
        except ValueError as exc:
            raise ClientError(
                response.status_code, "bad response", f"{method} {path} did not return JSON"
            ) from exc

    def _get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        doc = self._request("GET", path, params=params)
        if not isinstance(doc, dict):
            raise ClientError(200, "bad response", f"GET {path} did not return a JSON object")
        return doc

    def submit(self, envelope: bytes, wait: bool = False) -> dict[str, Any]:
        """POST an envelope; with `wait`, block until it is committed (height, leaf_index)."""
        doc = self._request(
            "POST",
            "/v1/events",
            params={"wait": "commit"} if wait else None,
            json={"envelope": envelope.hex()},
            timeout=self.wait_timeout if wait else None,
        )
        if not isinstance(doc, dict) or "event_id" not in doc:
            raise ClientError(200, "bad response", "POST /v1/events did not return an event_id")
        return doc

    def event(self, event_id: bytes | str) -> dict[str, Any]:
        return self._get(f"/v1/events/{_hex(event_id)}")

    def dataset(self, dataset: bytes | str) -> dict[str, Any]:
        return self._get(f"/v1/datasets/{_hex(dataset)}")

    def provenance(self, dataset: bytes | str) -> dict[str, Any]:
        return self._get(f"/v1/datasets/{_hex(dataset)}/provenance")

    def participant(self, public_key: bytes | str) -> dict[str, Any]:
        return self._get(f"/v1/participants/{_hex(public_key)}")

    def participant_events(
        self, public_key: bytes | str, after: int | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if after is not None:
            params["after"] = after
        if limit is not None:
            params["limit"] = limit
        return self._get(f"/v1/participants/{_hex(public_key)}/events", params or None)

    def status(self) -> dict[str, Any]:
        return self._get("/v1/status")

    def genesis(self) -> dict[str, Any]:
        return self._get("/v1/genesis")

    def checkpoint(self) -> dict[str, Any]:
        return self._get("/v1/checkpoint")

    def healthz(self) -> bool:
        """True when the node answers its liveness probe with a 2xx."""
        try:
            return self._http.get("/healthz").is_success
        except httpx.HTTPError:
            return False
