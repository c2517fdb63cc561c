"""What stands between the network and the app: a page on another site cannot make the user's browser use
the server, a client without the token cannot use the API, a slow client cannot hold a request open, and
every answer carries security headers.

- Host: only the names in `allowed_hosts` (Starlette's TrustedHostMiddleware, added in `create_app`): a
  DNS-rebinding page reaches the server under its own name and is refused.
- Origin: a POST, PUT, PATCH or DELETE whose Origin is neither the server's own nor in `allowed_origins`
  is refused (403) before its body is read. Browsers send Origin on every cross-origin POST, so a
  cross-site form or fetch never reaches the model; clients that are no browser send none.
- Token: with `token` set, the API (everything but the page, its static files, /health and the docs)
  needs `Authorization: Bearer <token>` (401 otherwise).
- Body deadline: the body must arrive within `body_timeout_s` of the request's start (408 otherwise).
"""

from __future__ import annotations

import asyncio
import hmac
import json

from fastapi import HTTPException
from starlette.datastructures import Headers

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
PUBLIC_PATHS = {"/", "/health", "/docs", "/redoc", "/openapi.json", "/favicon.ico", "/docs/oauth2-redirect"}
PUBLIC_PREFIXES = ("/static/", "/static-docs/")
DOCS_PATHS = {"/docs", "/redoc", "/docs/oauth2-redirect"}
# The page loads nothing from elsewhere and may be framed by no one; Swagger UI and ReDoc start from an
# inline script (served by fastapi-offline), so the docs pages alone allow one.
PAGE_POLICY = ("default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "
               "form-action 'self'; frame-ancestors 'none'")
DOCS_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
               "img-src 'self' data: blob:; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; "
               "frame-ancestors 'none'")


def _security_headers(path: str) -> list[tuple[bytes, bytes]]:
    policy = DOCS_POLICY if path in DOCS_PATHS else PAGE_POLICY
    return [(b"content-security-policy", policy.encode()), (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer"),
            (b"cross-origin-resource-policy", b"same-origin"), (b"cache-control", b"no-store")]


class RequestGuard:
    """ASGI middleware applying the origin, token and body-deadline rules above, and the security headers."""

    def __init__(self, app, token: str | None, allowed_origins: tuple[str, ...], body_timeout_s: float):
        self.app, self.token, self.body_timeout_s = app, token, body_timeout_s
        self.allowed_origins = {origin.lower().rstrip("/") for origin in allowed_origins}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        extra = _security_headers(scope["path"])

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message = {**message, "headers": [*message.get("headers", []),
                                                  *[(k, v) for k, v in extra if k not in present]]}
            await send(message)

        headers = Headers(scope=scope)
        refusal = self._cross_origin(scope, headers) or self._unauthorised(scope, headers)
        if refusal is not None:
            return await _answer(send_with_headers, *refusal)
        await self.app(scope, self._within_deadline(receive), send_with_headers)

    def _cross_origin(self, scope, headers: Headers) -> tuple[int, str, list] | None:
        if scope["method"] in SAFE_METHODS:
            return None
        origin = headers.get("origin")
        if origin is None:  # no browser (curl, scripts), or an old one: then Sec-Fetch-Site may still tell
            if headers.get("sec-fetch-site") == "cross-site":
                return 403, "cross-site request refused", []
            return None
        origin = origin.lower().rstrip("/")
        if origin in self.allowed_origins or origin == f"{scope['scheme']}://{headers.get('host', '')}".lower():
            return None
        return 403, (f"cross-origin request from {origin} refused: the server answers its own pages only "
                     f"(`kidneyct serve --allow-origin {origin}` allows that one)"), []

    def _unauthorised(self, scope, headers: Headers) -> tuple[int, str, list] | None:
        path = scope["path"]
        if self.token is None or scope["method"] == "OPTIONS" or path in PUBLIC_PATHS \
                or path.startswith(PUBLIC_PREFIXES):
            return None
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token.encode()):
            return None
        return 401, "missing or wrong bearer token (Authorization: Bearer <token>)", \
            [(b"www-authenticate", b"Bearer")]

    def _within_deadline(self, receive):
        """`receive` that raises a 408 HTTPException (a JSON answer, like BodyLimit's 413) once the body
        has not fully arrived within the deadline."""
        loop = asyncio.get_running_loop()
        deadline, done = loop.time() + self.body_timeout_s, False

        async def receive_in_time():
            nonlocal done
            if done:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.001))
            except (asyncio.TimeoutError, TimeoutError):
                # Connection: close: the rest of the body may still come, and the connection cannot carry another
                # request; without it uvicorn holds the connection until its keep-alive timeout (5 s).
                raise HTTPException(408, f"request body not received within {self.body_timeout_s:g} s",
                                    headers={"Connection": "close"}) from None
            done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        return receive_in_time


async def _answer(send, status: int, detail: str, headers: list) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})
