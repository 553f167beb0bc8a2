"""The HTTP bound of `scripts/bench cluster`, measured by `wrk` (a compiled load generator),
so that the bound is the server's and not its client's.

Two figures:

- a trivial ASGI endpoint served by the nodes' own server stack (the daemon's
  `server_config`: httptools with the header timeout, the same keep-alive and concurrency
  limit, on the event loop uvicorn picks for it), in its own process: requests/s one node
  process could answer if it did nothing else;
- `GET /healthz` of every running node at once (one `wrk` per node): requests/s the
  cluster's full stack (body guard, routing, JSON reply) answers on this machine, the
  ceiling of a one-event-per-request path.

`wrk` comes from the OS packages: if it is missing and we are root, it is installed with
apt-get; otherwise the bound is skipped with a message saying how to get it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import httpx

WRK_CONNECTIONS = 32
WRK_SECONDS = 4

# Run in a child process: the bench itself never imports the daemon (import-linter), the
# child builds the listener exactly as node.server.run does for the public API.
_TRIVIAL_SERVER = """
import asyncio, sys
from pathlib import Path

import uvicorn

from node.config import NodeSettings
from node.server.run import server_config


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].rsplit(".", 1)[1]
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"{}"})


settings = NodeSettings(home=Path(sys.argv[1]), port=int(sys.argv[2]))
server = uvicorn.Server(server_config(settings, app, peer=False))
with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
    runner.run(server.serve())
"""

_REQUESTS_PER_S = re.compile(rb"^Requests/sec:\s+([0-9.]+)", re.MULTILINE)


def find_wrk(install: bool = True) -> str | None:
    """The path of `wrk`; installed from the OS packages first if missing and we are root."""
    found = shutil.which("wrk")
    if found or not install or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return found
    if shutil.which("apt-get") is None:
        return None
    print("[bench] wrk is missing: apt-get install -y wrk", file=sys.stderr, flush=True)
    install_wrk = ["apt-get", "install", "-y", "-qq", "wrk"]
    for commands in ([install_wrk], [["apt-get", "update", "-qq"], install_wrk]):
        for command in commands:
            subprocess.run(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
            )
        found = shutil.which("wrk")
        if found:
            return found
    return None


WRK_MISSING = (
    "wrk not found (and not root, or apt-get failed): the HTTP bound is skipped; "
    "install it with `apt-get install wrk` (or your OS's package) and run again"
)


def parse_wrk(output: bytes) -> float:
    """Requests/s from wrk's report."""
    match = _REQUESTS_PER_S.search(output)
    if match is None:
        raise ValueError(f"no Requests/sec in wrk's output: {output[-300:]!r}")
    return float(match.group(1))


def wrk_requests_per_s(
    wrk: str, urls: list[str], connections: int = WRK_CONNECTIONS, seconds: int = WRK_SECONDS
) -> float:
    """Requests/s summed over one `wrk` per url, run at the same time, `connections`
    spread over them (one wrk thread each: wrk's own CPU stays small)."""
    per_url = max(1, connections // len(urls))
    runs = [
        subprocess.Popen(
            [wrk, "-t1", f"-c{per_url}", f"-d{seconds}s", url],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for url in urls
    ]
    total = 0.0
    for run in runs:
        output, _ = run.communicate(timeout=seconds + 30)
        total += parse_wrk(output)
    return total


def trivial_server_requests_per_s(wrk: str, port: int) -> float:
    """wrk against a do-nothing endpoint in its own process, served as a node serves."""
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen([sys.executable, "-c", _TRIVIAL_SERVER, tmp, str(port)])
        try:
            url = f"http://127.0.0.1:{port}/"
            deadline = time.monotonic() + 20
            while True:
                try:
                    httpx.get(url, timeout=1)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError("the trivial server did not start") from None
                    time.sleep(0.1)
            return wrk_requests_per_s(wrk, [url])
        finally:
            server.terminate()
            server.wait()
