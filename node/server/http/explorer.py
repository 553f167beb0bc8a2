"""The browser explorer at /explorer (docs/PROTOCOL.md §16): static files shipped in the
package, served from memory, and the page routes, which all answer the same index.html.

The page does its own verification in the browser against a genesis the user pins; the node
only serves files. Every answer carries a Content-Security-Policy that allows scripts, styles
and requests from this origin alone (no CDN, no inline script).
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import Response

from node.server.errors import NotFound

ASSET_DIR = "explorer_assets"
ASSET_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}\.(js|css|html)$")
MEDIA_TYPES = {
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "html": "text/html; charset=utf-8",
}
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# The page routes the single-page app knows; anything else under /explorer is a 404.
PAGE = re.compile(
    r"^(|chain|datasets/[0-9a-f]{64}|events/[0-9a-f]{64}|blocks/[1-9][0-9]{0,15}"
    r"|participants/[0-9a-f]{66})/?$"
)


def _load_assets() -> dict[str, bytes]:
    """Every asset file of the package, read once (a few dozen kB)."""
    folder = resources.files("node.server.http").joinpath(ASSET_DIR)
    return {
        entry.name: entry.read_bytes()
        for entry in folder.iterdir()
        if entry.is_file() and ASSET_NAME.match(entry.name)
    }


ASSETS = _load_assets()
assert "index.html" in ASSETS and "app.js" in ASSETS, "the explorer's files are not installed"

router = APIRouter(include_in_schema=False)


def _file(name: str) -> Response:
    body = ASSETS.get(name)
    if body is None:
        raise NotFound(f"no explorer file {name}")
    return Response(
        body,
        media_type=MEDIA_TYPES[name.rsplit(".", 1)[1]],
        headers={
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get("/explorer/assets/{name}")
async def explorer_asset(name: Annotated[str, Path(max_length=80)]) -> Response:
    """One static file of the explorer (scripts, style, page)."""
    if not ASSET_NAME.match(name):
        raise NotFound(f"no explorer file {name}")
    return _file(name)


@router.get("/explorer")
async def explorer_home() -> Response:
    return _file("index.html")


@router.get("/explorer/{page:path}")
async def explorer_page(page: str) -> Response:
    """A page of the explorer: the app itself, which reads the path in the browser."""
    if not PAGE.match(page):
        raise NotFound(f"no explorer page /explorer/{page}")
    return _file("index.html")
