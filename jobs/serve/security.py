"""Security defaults of the server, as one ASGI middleware and the error handlers.

Design decisions:

* Host-header check (DNS rebinding): a request whose Host is not this server's own
  name (loopback names, or the ``--host`` given) gets 421 before any route runs; a
  wildcard bind (``0.0.0.0``) accepts any Host, which is why ``serve`` warns there.
* Every response carries ``Content-Security-Policy: default-src 'self'`` (no inline
  script or style anywhere in the templates), ``nosniff``, ``no-referrer`` and
  ``frame-ancestors 'none'``; no CORS header is ever sent.
* A request body over the cap is refused with 413 from its Content-Length, before it
  is read; bad input raises :class:`ClientError` (or a ``VideomemError``) and becomes
  a 4xx with a readable message as HTML or JSON, never a stack trace.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from videomem.jobs.serve.config import LOOPBACK, ServeConfig
from videomem.pipeline.errors import VideomemError

__all__ = ["HEADERS", "ClientError", "Guard", "error_handlers"]

log = logging.getLogger(__name__)

HEADERS = [
    (b"content-security-policy", b"default-src 'self'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
WILDCARD = frozenset({"0.0.0.0", "::", "[::]", ""})


class ClientError(Exception):
    """A bad request: its HTTP status and a message for the user."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def host_name(header: str) -> str:
    """The name part of a Host header (``[::1]:8321`` -> ``::1``)."""
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Guard:
    """ASGI middleware: Host check, body cap, security headers on every response."""

    def __init__(self, app: ASGIApp, config: ServeConfig) -> None:
        self.app = app
        self.config = config
        self.any_host = config.host in WILDCARD
        self.hosts = {h.strip("[]") for h in LOOPBACK | {config.host}}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}

        async def send_secure(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + HEADERS
            await send(message)

        refusal = self._refusal(headers)
        if refusal is not None:
            await refusal(scope, receive, send_secure)
            return
        await self.app(scope, receive, send_secure)

    def _refusal(self, headers: dict[str, str]) -> Response | None:
        host = host_name(headers.get("host", "").lower())
        if not self.any_host and host not in self.hosts:
            return PlainTextResponse(
                f"unknown Host {host!r}: this server answers to {sorted(self.hosts)}", 421
            )
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.config.max_body):
            return PlainTextResponse(
                f"request body too large (at most {self.config.max_body} bytes)", 413
            )
        return None


def _status_of(e: VideomemError) -> int:
    return 404 if str(e).startswith("no video") else 400


def error_handlers() -> dict[Any, Any]:
    """Exception -> response: ClientError and VideomemError as 4xx, anything else a
    plain 500 (logged with its stack, which the client never sees)."""
    from starlette.exceptions import HTTPException
    from videomem.jobs.serve.respond import error_page

    async def client(request: Request, e: Exception) -> Response:
        assert isinstance(e, ClientError)
        return error_page(request, e.status, e.message)

    async def videomem(request: Request, e: Exception) -> Response:
        assert isinstance(e, VideomemError)
        return error_page(request, _status_of(e), str(e))

    async def http(request: Request, e: Exception) -> Response:
        assert isinstance(e, HTTPException)
        return error_page(request, e.status_code, str(e.detail))

    async def internal(request: Request, e: Exception) -> Response:
        log.exception("serve: %s %s failed", request.method, request.url.path)
        return error_page(request, 500, f"internal error ({type(e).__name__}); see the server log")

    return {ClientError: client, VideomemError: videomem, HTTPException: http, Exception: internal}
