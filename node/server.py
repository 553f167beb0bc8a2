"""Runs one node in the foreground: the FastAPI app under uvicorn, with a pid file."""

from __future__ import annotations

import logging
import os

import uvicorn

from node.api import create_app
from node.config import NodeSettings


def run(settings: NodeSettings) -> None:
    """Serve the node until SIGINT/SIGTERM; the pid file lives as long as the process."""
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s {settings.name} %(name)s %(levelname)s %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings.pid_path.write_text(f"{os.getpid()}\n")
    try:
        uvicorn.run(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
        )
    finally:
        try:
            if settings.pid_path.read_text().strip() == str(os.getpid()):
                settings.pid_path.unlink()
        except OSError:
            pass
