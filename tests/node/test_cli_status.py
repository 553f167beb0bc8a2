"""`provledger status` prints a node's own words, so it escapes them: a hostile node's name or
peer URL with terminal escapes must not reach the terminal raw (docs/PROTOCOL.md §12)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from tests.node.fake_http import send, serving_http
from tests.node.test_cli import invoke

HOSTILE = "evil\x1b[2J\x1b[31mnode\rforged line"


def status_doc() -> dict[str, Any]:
    return {
        "name": HOSTILE,
        "chain_id": "chain\x07",
        "height": 3,
        "round": 0,
        "peers": [{"url": "http://peer\x1b]0;title\x07", "reachable": True, "height": 3}],
    }


class StatusHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        send(self, 200, json.dumps(status_doc()).encode(), "application/json")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def hostile_node() -> Iterator[str]:
    with serving_http(StatusHandler) as url:
        yield url


def test_status_escapes_control_characters_from_the_node(hostile_node: str) -> None:
    result = invoke("status", "--node", hostile_node)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "\r" not in result.output
    assert "\\x1b[2J" in result.output  # shown, escaped
    assert "forged line" in result.output
