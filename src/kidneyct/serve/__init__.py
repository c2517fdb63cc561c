"""Web app and REST API: `kidneyct serve` (FastAPI + uvicorn), a page at `/`, OpenAPI docs at `/docs`."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import uvicorn

from kidneyct.errors import KidneyCTError, UploadError
from kidneyct.serve.app import create_app
from kidneyct.serve.connections import guarded_protocol
from kidneyct.serve.network import is_loopback
from kidneyct.serve.service import LOOPBACK_HOSTS, ServeSettings

log = logging.getLogger(__name__)


class TokenRequired(KidneyCTError, ValueError):
    """Serving beyond this machine without a token (anyone who can reach the port could use the API)."""


def bind_settings(settings: ServeSettings, host: str) -> ServeSettings:
    """The settings for serving on `host`: a token is required beyond loopback, and the Host allow-list
    left at its loopback default becomes any host there (the token, not the name, then guards the API).

    Args:
        settings: as given.
        host: the bind address.
    """
    if is_loopback(host):
        return settings
    if not settings.token:
        raise TokenRequired(f"binding to {host} makes the API reachable from other machines: give a token "
                            "with --token or the KIDNEYCT_TOKEN environment variable")
    if settings.allowed_hosts == LOOPBACK_HOSTS:
        return dataclasses.replace(settings, allowed_hosts=("*",))
    return settings


def serve(checkpoint: str | Path | None, settings: ServeSettings | None = None, host: str = "127.0.0.1",
          port: int = 8000, log_level: str = "info") -> None:
    """Load the checkpoint (refusing unsafe ones) and serve it until interrupted.

    Args:
        checkpoint: a kidneyct checkpoint (.pt); None: the model shipped with kidneyct.
        settings: limits and access rules (default ServeSettings()).
        host, port: where to listen; beyond loopback a token is required.
        log_level: uvicorn's.
    """
    settings = bind_settings(settings or ServeSettings(), host)
    app = create_app(checkpoint, settings)  # before binding: a refused checkpoint never opens a port
    if not is_loopback(host):
        log.warning("serving on %s: reachable from other machines; the API requires the bearer token", host)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5,
                http=guarded_protocol(settings.max_connections, settings.header_timeout_s,
                                      settings.max_connections_per_client, settings.busy_header_timeout_s))


__all__ = ["ServeSettings", "TokenRequired", "UploadError", "bind_settings", "create_app", "is_loopback", "serve"]
