"""A lean keep-alive HTTP/1.1 connection: one request at a time, written as bytes, and the
status line, headers and a `content-length` body read back within caps.

For the requests a node makes many of, where a general client costs more than the work:
a node's requests to its peers (`node.server.p2p`: ~45 µs of CPU per POST against ~540 µs
through httpx, measured on this machine) and the load client of `scripts/bench cluster
--single`.
It speaks only what those need: no redirects, no chunked answers, no compression, no
pipelining. Any failure (refused connection, TLS handshake, pin, timeout, a head it cannot
read, an answer over the cap, the server closing early) is an `HttpError` (an `OSError`),
after which the connection is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from urllib.parse import urlsplit

MAX_HEAD_BYTES = 64 * 1024
"""A response head (status line and headers) longer than this is refused."""
CLOSE_TIMEOUT_S = 1.0


class HttpError(OSError):
    """The connection failed, or the server answered something this client cannot read."""


class AnswerTooLarge(HttpError):
    """The answer declares a body over the caller's cap; it is not read."""


class ServerClosed(HttpError):
    """The server closed the connection before any byte of an answer (say, a kept-alive
    connection it timed out just as the request went): nothing was answered."""


def parse_head(head: bytes) -> tuple[int, int, bool]:
    """Status, content length and whether the server will close, from a response head."""
    lines = head.split(b"\r\n")
    status_line = lines[0].split(b" ", 2)
    if (
        len(status_line) < 2
        or not status_line[0].startswith(b"HTTP/1.")
        or not status_line[1].isdigit()
        or len(status_line[1]) != 3
    ):
        raise HttpError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    length = 0
    close = status_line[0] == b"HTTP/1.0"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip().lower()
        if name == b"content-length":
            if not value.isdigit():
                raise HttpError(f"bad content-length {value[:20]!r}")
            length = int(value)
        elif name == b"connection":
            close = value == b"close" or (close and value != b"keep-alive")
        elif name == b"transfer-encoding":
            raise HttpError("chunked answers are not expected here")
    return int(status_line[1]), length, close


def request_bytes(
    method: str, target: str, host: str, headers: dict[str, str], body: bytes = b""
) -> bytes:
    """The whole HTTP/1.1 request, as bytes (header values must hold no line breaks)."""
    assert "\n" not in "".join(headers.values()), "header values are single lines"
    lines = [f"{method} {target} HTTP/1.1", f"host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Connection:
    """One keep-alive HTTP/1.1 connection: one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.closed = False

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        context: ssl.SSLContext | None = None,
        check: Callable[[ssl.SSLObject | None], None] | None = None,
        timeout_s: float | None = None,
    ) -> Connection:
        """Connect to `url`'s host and port; over TLS with `context` (SNI: the URL's host).
        `check` sees the TLS session before anything is written and raises to refuse it."""
        parts = urlsplit(url)
        default_port = 443 if parts.scheme == "https" else 80
        try:
            async with asyncio.timeout(timeout_s):
                reader, writer = await asyncio.open_connection(
                    parts.hostname,
                    parts.port or default_port,
                    ssl=context,
                    server_hostname=parts.hostname if context is not None else None,
                    limit=MAX_HEAD_BYTES,
                )
        except OSError as exc:  # TimeoutError and ssl.SSLError among them
            raise HttpError(f"cannot connect to {url}: {exc!r}") from exc
        connection = cls(reader, writer)
        if check is not None:
            try:
                check(writer.get_extra_info("ssl_object"))
            except BaseException:
                await connection.aclose()
                raise
        return connection

    async def exchange(
        self, request: bytes, max_body: int = 1 << 20, timeout_s: float | None = None
    ) -> tuple[int, bytes]:
        """Send one request; its status and body (refused past `max_body` bytes)."""
        head = b""
        try:
            async with asyncio.timeout(timeout_s):
                self.writer.write(request)
                head = await self.reader.readuntil(b"\r\n\r\n")
                status, length, close = parse_head(head)
                if length > max_body:
                    raise AnswerTooLarge(f"an answer of {length} bytes is over {max_body}")
                body = await self.reader.readexactly(length) if length else b""
        except HttpError:
            self.close()
            raise
        except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError) as exc:
            self.close()
            unanswered = not head and not getattr(exc, "partial", b"")
            if unanswered:
                raise ServerClosed(f"the server closed the connection: {exc!r}") from exc
            raise HttpError(f"the answer was cut short: {exc!r}") from exc
        except (asyncio.LimitOverrunError, OSError) as exc:  # TimeoutError is an OSError
            self.close()
            raise HttpError(f"exchange failed: {exc!r}") from exc
        except BaseException:  # cancelled mid-exchange: the connection's state is unknown
            self.close()
            raise
        if close:
            self.close()
        return status, body

    def server_closed(self) -> bool:
        """True once the server has closed its end (an idle keep-alive timeout)."""
        return self.reader.at_eof()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.writer.close()

    async def aclose(self) -> None:
        """Close, and wait (briefly) until the transport is gone: a TLS one needs the loop."""
        self.close()
        with contextlib.suppress(OSError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self.writer.wait_closed()
