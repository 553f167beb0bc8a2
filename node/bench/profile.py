"""Summaries of py-spy's raw (collapsed stack) profiles, as `scripts/bench cluster --single
--profile DIR` records them on every node: where the samples went.

A raw profile is one line per distinct stack, `frame;frame;...;frame COUNT`, outermost
first, each frame `function (file:line)`. Each sample is put in a *phase*, the outermost
function of this project on its stack (below the entry point and the body guard, which
wrap everything): `submit_event` for a client's submission, `p2p_events` for gossip
received, `PeerLink._send_while_queued` for what the node sends its peers, the consensus
task, and so on; and in a *layer*, where its innermost frame is: `ECDSA verify`, our own
packages, or the library (uvicorn, starlette, fastapi, httpx, h11, asyncio, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
_WRAPPERS = ("node/server/__main__.py", "node/server/run.py", "node/server/http/guard.py")
_OURS = ("node/", "ledger/", "consensus/")
_FAST_ROUTES = ("node/server/http/fast_events.py", "node/server/http/fast_peer.py")
_ROUTES = ("node/server/http/public.py", "node/server/http/peer.py")
TOP_PHASES = 10
TOP_LAYERS = 5


@dataclass
class Summary:
    samples: int = 0
    phases: dict[str, int] = field(default_factory=dict)
    layers: dict[str, dict[str, int]] = field(default_factory=dict)


def split_frame(frame: str) -> tuple[str, str]:
    """`function (path:line)` -> (function, path relative to the project or site-packages)."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip(), ""
    path = match.group("file")
    for marker in ("/site-packages/", "/lib/python3.11/", "/lib/python3.12/"):
        if marker in path:
            return match.group("name"), path.split(marker, 1)[1]
    for root in _OURS:
        index = path.find("/" + root)
        if index >= 0:
            return match.group("name"), path[index + 1 :]
        if path.startswith(root):
            return match.group("name"), path
    return match.group("name"), path


def phase_of(frames: list[tuple[str, str]]) -> str:
    ours = [(n, p) for n, p in frames if p.startswith(_OURS) and p not in _WRAPPERS]
    for index, (name, path) in enumerate(ours):
        # The hot routes' middleware wraps every request it passes on to FastAPI.
        if path in _FAST_ROUTES and any(
            p.startswith(_ROUTES) or p in _FAST_ROUTES for _, p in ours[index + 1 :]
        ):
            continue
        return f"{name} ({path})"
    if any(path.startswith("uvicorn/") for _, path in frames):
        return "HTTP server outside any route"
    return "event loop (waiting, callbacks)"


def layer_of(name: str, path: str) -> str:
    if path == "ledger/crypto.py" and name == "verify":
        return "ECDSA verify"
    if path.startswith(_OURS):
        return path.split("/", 1)[0] + "/ (ours)"
    top = path.split("/", 1)[0]
    return top.removesuffix(".py") or "?"


def summarize(raw: str) -> Summary:
    summary = Summary()
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [split_frame(f) for f in stack.split(";") if f]
        if not frames:
            continue
        count = int(count_text)
        summary.samples += count
        phase = phase_of(frames)
        summary.phases[phase] = summary.phases.get(phase, 0) + count
        layers = summary.layers.setdefault(phase, {})
        layer = layer_of(*frames[-1])
        layers[layer] = layers.get(layer, 0) + count
    return summary


def merge(summaries: list[Summary]) -> Summary:
    total = Summary()
    for summary in summaries:
        total.samples += summary.samples
        for phase, count in summary.phases.items():
            total.phases[phase] = total.phases.get(phase, 0) + count
        for phase, layers in summary.layers.items():
            into = total.layers.setdefault(phase, {})
            for layer, count in layers.items():
                into[layer] = into.get(layer, 0) + count
    return total


def format_summary(summary: Summary) -> str:
    """Phases by share of the samples, each with its heaviest layers."""
    if not summary.samples:
        return "  (no samples)"
    lines = [f"  {summary.samples:,} samples (py-spy, active threads only)"]
    ranked = sorted(summary.phases.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_PHASES]
    for phase, count in ranked:
        layers = sorted(summary.layers[phase].items(), key=lambda kv: (-kv[1], kv[0]))
        detail = ", ".join(
            f"{layer} {100 * n / summary.samples:.1f}%" for layer, n in layers[:TOP_LAYERS]
        )
        lines.append(f"  {100 * count / summary.samples:5.1f}%  {phase}")
        lines.append(f"           {detail}")
    return "\n".join(lines)
