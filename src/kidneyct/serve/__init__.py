"""Web app and REST API: `kidneyct serve` (FastAPI + uvicorn), a page at `/`, OpenAPI docs at `/docs`."""

from __future__ import annotations

import logging
from pathlib import Path

import uvicorn

from kidneyct.errors import UploadError
from kidneyct.serve.app import create_app
from kidneyct.serve.network import is_loopback
from kidneyct.serve.service import ServeSettings

log = logging.getLogger(__name__)


def serve(checkpoint: str | Path, settings: ServeSettings | None = None, host: str = "127.0.0.1",
          port: int = 8000, log_level: str = "info") -> None:
    """Load the checkpoint (refusing unsafe ones) and serve it until interrupted."""
    app = create_app(checkpoint, settings)  # before binding: a refused checkpoint never opens a port
    if not is_loopback(host):
        log.warning("serving on %s: reachable from other machines; kidneyct has no authentication", host)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)


__all__ = ["ServeSettings", "UploadError", "create_app", "serve"]
