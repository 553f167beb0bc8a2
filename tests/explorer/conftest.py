"""Fixtures for the explorer tests: headless Chromium from the OS package driven by
Playwright (`executable_path`: Playwright cannot download its own browser here), and a page
whose requests are answered from the packaged explorer files and from test fixtures."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, Route, sync_playwright

from node.server.http.explorer import ASSETS

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--no-first-run",
    "--mute-audio",
]
# A loopback origin is a secure context, so WebCrypto is available; nothing listens on it:
# every request of the page is answered by a route handler.
ORIGIN = "http://localhost:9"


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium (scripts/test does)"
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    try:
        yield chromium
    finally:
        chromium.close()


def serve_assets(route: Route) -> None:
    path = route.request.url.removeprefix(ORIGIN)
    name = path.removeprefix("/explorer/assets/")
    if name in ASSETS and name != path:
        kind = (
            "text/javascript"
            if name.endswith(".js")
            else "text/css"
            if name.endswith(".css")
            else "text/html"
        )
        route.fulfill(status=200, body=ASSETS[name], content_type=kind)
    elif path == "/blank":
        route.fulfill(
            status=200, body="<!doctype html><title>verifier</title>", content_type="text/html"
        )
    else:
        route.fulfill(status=404, body="{}", content_type="application/json")


Rewrite = Callable[[str, bytes], bytes]
"""`rewrite(path_and_query, body)`: what the page gets instead of a node's answer."""

HOP_HEADERS = {"content-length", "content-encoding", "transfer-encoding", "connection"}


def forward_to(
    client: Any,
    *,
    rewrite: Callable[[str], str] | None = None,
    answers: Mapping[str, Rewrite] | None = None,
    seen: list[str] | None = None,
) -> Callable[[Route], None]:
    """A route handler that answers every request of the page from an in-process app
    (`client`: a `fastapi.testclient.TestClient`), so the real explorer files and API routes
    serve the page without a listening socket.

    `rewrite` changes a request's path and query before it is sent (e.g. a smaller page
    `limit`); `answers` maps a path prefix to a function that rewrites the node's answer body
    (e.g. a forged transition); `seen` collects every path asked for."""

    def handle(route: Route) -> None:
        request = route.request
        path = request.url.removeprefix(ORIGIN)
        if seen is not None:
            seen.append(path)
        sent = rewrite(path) if rewrite is not None else path
        response = client.request(
            request.method, sent, headers={"accept": request.headers.get("accept", "*/*")}
        )
        body = response.content
        for prefix, change in (answers or {}).items():
            if path.startswith(prefix) and response.status_code == 200:
                body = change(path, body)
        headers = {k: v for k, v in response.headers.items() if k.lower() not in HOP_HEADERS}
        route.fulfill(status=response.status_code, body=body, headers=headers)

    return handle


@pytest.fixture(scope="module")
def verifier(browser: Browser) -> Iterator[Callable[[str, Any], Any]]:
    """`run(js_function_source, arg)`: evaluate an async function in a page that has the
    explorer's modules at /explorer/assets/, and return its (JSON) result."""
    context = browser.new_context()
    page: Page = context.new_page()
    page.route(f"{ORIGIN}/**", serve_assets)
    page.goto(f"{ORIGIN}/blank")

    def run(source: str, arg: Any) -> Any:
        return page.evaluate(source, json.loads(json.dumps(arg)))

    try:
        yield run
    finally:
        context.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test of this folder that uses the browser is marked `browser`."""
    for item in items:
        if Path(__file__).parent in Path(item.path).parents and "browser" in getattr(
            item, "fixturenames", ()
        ):
            item.add_marker(pytest.mark.browser)
