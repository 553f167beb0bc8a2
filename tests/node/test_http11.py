"""The lean HTTP/1.1 connection (node.client.http11) and the peer channel built on it, against
real servers on loopback sockets: keep-alive, closing, caps, timeouts, a peer that closes a
kept-alive connection, and the peer link's POSTs going through it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from ledger import codec
from ledger.crypto import PrivateKey, sha256
from node.client.http11 import (
    MAX_HEAD_BYTES,
    Connection,
    HttpError,
    ServerClosed,
    parse_head,
    request_bytes,
)
from node.server.p2p import MAX_ANSWER_BYTES, PeerChannel, PeerLink
from node.server.peer_auth import PEER_DIGEST_HEADER, PeerAuthenticator
from tests.node.fake_http import RawServer, serving_raw

NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"


def always(reply: bytes | None) -> Callable[[int, bytes, bytes], Awaitable[bytes | None]]:
    async def answer(number: int, head: bytes, body: bytes) -> bytes | None:
        return reply

    return answer


def get(url: str) -> bytes:
    return request_bytes("GET", "/x", url.removeprefix("http://"), {})


# --- heads and requests ---------------------------------------------------------------------


def test_parse_head_reads_status_length_and_close() -> None:
    head = b"HTTP/1.1 202 Accepted\r\nContent-Length: 17\r\nconnection: close\r\n\r\n"
    assert parse_head(head) == (202, 17, True)
    assert parse_head(NO_CONTENT) == (204, 0, False)
    # HTTP/1.0 closes unless it says keep-alive.
    assert parse_head(b"HTTP/1.0 200 OK\r\n\r\n") == (200, 0, True)
    assert parse_head(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n") == (200, 0, False)
    for bad in (
        b"garbage\r\n\r\n",
        b"HTTP/1.1 20x OK\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
    ):
        with pytest.raises(HttpError):
            parse_head(bad)


def test_a_request_is_its_line_host_headers_length_and_body() -> None:
    request = request_bytes("POST", "/p2p/events", "peer:9000", {"x-a": "1"}, b"body")
    assert request == (
        b"POST /p2p/events HTTP/1.1\r\nhost: peer:9000\r\nx-a: 1\r\ncontent-length: 4\r\n\r\nbody"
    )
    with pytest.raises(AssertionError):
        request_bytes("POST", "/", "h", {"x-a": "1\r\nx-b: 2"}, b"")


# --- one connection against a real server ---------------------------------------------------


def test_a_kept_alive_connection_carries_many_requests() -> None:
    async def go() -> None:
        server = RawServer(always(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"))
        async with serving_raw(server) as url:
            connection = await Connection.open(url)
            for _ in range(3):
                assert await connection.exchange(get(url), timeout_s=5) == (200, b"ok")
            assert not connection.closed and server.connections == 1
            connection.close()

    asyncio.run(go())


def test_a_server_that_says_close_closes_the_connection() -> None:
    async def go() -> None:
        server = RawServer(always(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n"))
        async with serving_raw(server) as url:
            connection = await Connection.open(url)
            assert await connection.exchange(get(url), timeout_s=5) == (204, b"")
            assert connection.closed

    asyncio.run(go())


def test_closing_without_answer_and_cutting_an_answer_short_are_told_apart() -> None:
    async def go() -> None:
        async with serving_raw(RawServer(always(None))) as url:
            connection = await Connection.open(url)
            with pytest.raises(ServerClosed):
                await connection.exchange(get(url), timeout_s=5)
            assert connection.closed

        async def cut_short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort")
            await writer.drain()
            writer.close()

        listener = await asyncio.start_server(cut_short, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
        async with listener:
            connection = await Connection.open(url)
            # The head arrived, the body did not: an answer cut short, not "nothing answered".
            with pytest.raises(HttpError, match="cut short") as caught:
                await connection.exchange(get(url), timeout_s=5)
            assert not isinstance(caught.value, ServerClosed)
            assert connection.closed

    asyncio.run(go())


def test_an_answer_over_the_cap_is_refused_and_the_connection_closed() -> None:
    async def go() -> None:
        body = b"x" * 101
        reply = b"HTTP/1.1 200 OK\r\ncontent-length: 101\r\n\r\n" + body
        async with serving_raw(RawServer(always(reply))) as url:
            connection = await Connection.open(url)
            with pytest.raises(HttpError, match="over 100"):
                await connection.exchange(get(url), max_body=100, timeout_s=5)
            assert connection.closed
            connection = await Connection.open(url)
            assert await connection.exchange(get(url), max_body=101, timeout_s=5) == (200, body)
            connection.close()

    asyncio.run(go())


def test_a_head_past_its_cap_is_refused() -> None:
    async def go() -> None:
        huge = b"HTTP/1.1 200 OK\r\nx-pad: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n"
        async with serving_raw(RawServer(always(huge))) as url:
            connection = await Connection.open(url)
            with pytest.raises(HttpError):
                await connection.exchange(get(url), timeout_s=5)
            assert connection.closed

    asyncio.run(go())


def test_a_server_that_never_answers_times_out() -> None:
    async def silent(number: int, head: bytes, body: bytes) -> bytes | None:
        await asyncio.sleep(2)  # far past the client's timeout
        return NO_CONTENT

    async def go() -> None:
        async with serving_raw(RawServer(silent)) as url:
            connection = await Connection.open(url)
            with pytest.raises(HttpError, match="TimeoutError"):
                await connection.exchange(get(url), timeout_s=0.2)
            assert connection.closed

    asyncio.run(go())


def test_a_refused_connection_is_an_http_error() -> None:
    async def go() -> None:
        async with serving_raw(RawServer(always(NO_CONTENT))) as url:
            pass  # the port is closed again below
        with pytest.raises(HttpError, match="cannot connect"):
            await Connection.open(url, timeout_s=1)

    asyncio.run(go())


# --- the peer channel -------------------------------------------------------------------------


def test_the_channel_sends_msgpack_with_its_headers_and_fails_on_other_than_2xx() -> None:
    async def answer(number: int, head: bytes, body: bytes) -> bytes | None:
        return NO_CONTENT if number == 1 else b"HTTP/1.1 400 Bad\r\ncontent-length: 0\r\n\r\n"

    async def go() -> None:
        server = RawServer(answer)
        async with serving_raw(server) as url:
            channel = PeerChannel(url, None, timeout_s=5)
            await channel.post("/p2p/events", b"\x80", {"x-provledger-test": "1"})
            with pytest.raises(HttpError, match="answered 400"):
                await channel.post("/p2p/events", b"\x80", {})
            await channel.close()
        head, body = server.requests[0]
        lines = head.split(b"\r\n")
        assert lines[0] == b"POST /p2p/events HTTP/1.1"
        assert b"content-type: application/msgpack" in lines
        assert b"x-provledger-test: 1" in lines and body == b"\x80"
        assert MAX_ANSWER_BYTES == 64 * 1024

    asyncio.run(go())


def test_a_peer_url_with_a_path_prefix_keeps_it_before_every_path() -> None:
    async def go() -> None:
        server = RawServer(always(NO_CONTENT))
        async with serving_raw(server) as url:
            channel = PeerChannel(url + "/gateway/node-1/", None, timeout_s=5)
            await channel.post("/p2p/events", b"1", {})
            await channel.get("/p2p/status", {}, max_body=100)
            await channel.close()
        targets = [head.split(b" ")[1] for head, _ in server.requests]
        assert targets == [b"/gateway/node-1/p2p/events", b"/gateway/node-1/p2p/status"]

    asyncio.run(go())


def test_a_peer_closing_a_kept_alive_connection_costs_one_more_try_not_a_failure() -> None:
    async def answer(number: int, head: bytes, body: bytes) -> bytes | None:
        return None if number == 2 else NO_CONTENT  # the second request is dropped unanswered

    async def go() -> None:
        server = RawServer(answer)
        async with serving_raw(server) as url:
            channel = PeerChannel(url, None, timeout_s=5)
            await channel.post("/p2p/consensus", b"1", {})
            await channel.post("/p2p/consensus", b"2", {})  # sent again on a fresh connection
            assert [body for _, body in server.requests] == [b"1", b"2", b"2"]
            assert server.connections == 2
            await channel.close()

    asyncio.run(go())


def test_a_fresh_connection_closed_unanswered_is_a_failure_not_a_loop() -> None:
    async def go() -> None:
        server = RawServer(always(None))
        async with serving_raw(server) as url:
            channel = PeerChannel(url, None, timeout_s=5)
            with pytest.raises(ServerClosed):
                await channel.post("/p2p/events", b"1", {})
            assert len(server.requests) == 1
            await channel.close()

    asyncio.run(go())


def test_the_channel_gets_a_200_body_and_refuses_more_than_the_cap_unread() -> None:
    async def answer(number: int, head: bytes, body: bytes) -> bytes | None:
        if number == 1:
            return b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc"
        if number == 2:
            return b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}"
        return b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n" + b"x" * 1000

    async def go() -> None:
        server = RawServer(answer)
        async with serving_raw(server) as url:
            channel = PeerChannel(url, None, timeout_s=5)
            assert await channel.get("/p2p/status", {"x-a": "1"}, max_body=100) == b"abc"
            assert await channel.get("/p2p/blocks/9", {}, max_body=100) is None
            assert server.connections == 1  # a 404 with its body read keeps the connection
            assert await channel.get("/p2p/blocks/1", {}, max_body=100) is None  # over the cap
            assert await channel.get("/p2p/blocks/1", {}, max_body=1000) == b"x" * 1000
            assert server.connections == 2  # the unread body cost the connection
            await channel.close()
        lines = server.requests[0][0].split(b"\r\n")
        assert lines[0] == b"GET /p2p/status HTTP/1.1" and b"x-a: 1" in lines
        assert b"content-length: 0" in lines

    asyncio.run(go())


def test_the_peer_link_gossips_through_the_channel_signed() -> None:
    """A PeerLink without a test transport: its batches reach a real socket, signed."""
    key = PrivateKey.generate()

    async def go() -> None:
        server = RawServer(always(NO_CONTENT))
        async with serving_raw(server) as url:
            link = PeerLink(url, "me", 100, key=key, chain_id="c", clock=lambda: 1_000)
            link.start()
            link.send_events([b"e1", b"e2"])
            link.send_message(b"m1")
            for _ in range(200):
                if len(server.requests) >= 2:
                    break
                await asyncio.sleep(0.01)
            await link.close()
        by_path = {head.split(b" ")[1]: (head, body) for head, body in server.requests}
        assert set(by_path) == {b"/p2p/events", b"/p2p/consensus"}
        assert codec.decode(by_path[b"/p2p/events"][1]) == {"from": "me", "events": [b"e1", b"e2"]}
        assert codec.decode(by_path[b"/p2p/consensus"][1]) == {"from": "me", "messages": [b"m1"]}
        # Each queue drains over its own connection, and each request carries its signature.
        assert server.connections == 2
        auth = PeerAuthenticator("c", [key.public_key], clock=lambda: 1_000)
        for path, (head, body) in by_path.items():
            headers = {
                name.strip().lower().decode(): value.strip().decode()
                for name, _, value in (line.partition(b":") for line in head.split(b"\r\n")[1:])
                if name
            }
            assert auth.authenticate("POST", path.decode(), headers).peer == key.public_key
            assert headers[PEER_DIGEST_HEADER] == sha256(body).hex()

    asyncio.run(go())
