"""The ASGI app: the page at ``/``, ``GET /api/info`` and ``POST /api/highlight``, around one highlighter.

Every error is a JSON ``ErrorBody`` with a 4xx status when the request is at fault. Model work runs in
the thread pool behind one lock, so the page and the info stay responsive while a prompt is computed.
"""

import ipaddress
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sae_hacking.highlight.page import CONTENT_SECURITY_POLICY, PAGE_HTML
from sae_hacking.highlight.protocol import Highlighter, HighlightError
from sae_hacking.highlight.schemas import ErrorBody, HighlightRequest, HighlightResult, ServerInfo

MAX_BODY_BYTES = 64 * 1024
MAX_WAITING = 16
COMMON_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


class BodyTooLarge(HTTPException):
    """A body over the limit; an HTTPException so the framework's body parsing passes it through."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over {limit} bytes")


def is_loopback_host(host_header: str) -> bool:
    """Whether a Host header names this machine (a guard against DNS rebinding from web pages)."""
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else ""
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def error_response(status: int, error: str, problems: list[str] | None = None) -> JSONResponse:
    """The one shape of every error answer."""
    body = ErrorBody(error=error, problems=problems or [])
    return JSONResponse(body.model_dump(), status_code=status)


class RequestGuard:
    """Refuses foreign Host headers and bodies over the limit before any parsing, and adds safe headers."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *COMMON_HEADERS]
            await send(message)

        refusal = self._refusal(headers)
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        await self.app(scope, counted_receive, send_with_headers)

    def _refusal(self, headers: Headers) -> JSONResponse | None:
        host = headers.get("host", "")
        if not is_loopback_host(host):
            return error_response(
                400, f"host {json.dumps(host)} refused: this server answers only on loopback names"
            )
        length = headers.get("content-length")
        if length is not None and not length.isdigit():
            return error_response(400, "the Content-Length header is not a number")
        if length is not None and int(length) > self.max_body_bytes:
            return error_response(413, f"the request body is over {self.max_body_bytes} bytes")
        return None


class ModelGate:
    """One request at a time on the model; past ``max_waiting`` queued requests, refuse rather than pile up."""

    def __init__(self, max_waiting: int) -> None:
        self.max_waiting = max_waiting
        self._model_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._admitted = 0

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Wait for the model; raise a 503 HighlightError when the queue is full."""
        with self._count_lock:
            if self._admitted > self.max_waiting:
                raise HighlightError(
                    503, f"busy: {self._admitted} requests are queued; try again shortly"
                )
            self._admitted += 1
        try:
            with self._model_lock:
                yield
        finally:
            with self._count_lock:
                self._admitted -= 1


def _problem(error: Any) -> str:
    location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
    return f"{location or 'body'}: {error.get('msg', 'invalid')}"


def create_app(
    highlighter: Highlighter, max_body_bytes: int = MAX_BODY_BYTES, max_waiting: int = MAX_WAITING
) -> FastAPI:
    """The app serving ``highlighter``; it keeps no state on disk and writes no files."""
    # No /docs: its page loads scripts from a CDN, and this server stays self-contained.
    app = FastAPI(title="Prompt highlighter", docs_url=None, redoc_url=None, openapi_url=None)
    gate = ModelGate(max_waiting)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [_problem(e) for e in error.errors()][:20]
        return error_response(422, "the request is malformed", problems)

    @app.exception_handler(HTTPException)
    async def on_http(request: Request, error: HTTPException) -> JSONResponse:
        messages = {
            404: f"no such page: {request.url.path}",
            405: f"{request.method} is not allowed here",
        }
        return error_response(error.status_code, messages.get(error.status_code, str(error.detail)))

    @app.exception_handler(HighlightError)
    async def on_highlight(request: Request, error: HighlightError) -> JSONResponse:
        return error_response(error.status, error.message)

    @app.exception_handler(Exception)
    async def on_bug(request: Request, error: Exception) -> JSONResponse:
        return error_response(
            500, f"internal error ({type(error).__name__}); the server keeps running"
        )

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE_HTML, headers={"content-security-policy": CONTENT_SECURITY_POLICY})

    # Browsers ask for an icon on their own; an empty answer keeps their consoles free of 404s.
    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/api/info")
    async def info() -> ServerInfo:
        return highlighter.info()

    # A plain def: FastAPI runs it in its thread pool, so waiting on the gate never blocks the event loop.
    @app.post("/api/highlight")
    def highlight(request: HighlightRequest) -> HighlightResult:
        with gate.hold():
            return highlighter.highlight(request)

    app.add_middleware(RequestGuard, max_body_bytes=max_body_bytes)  # pyright: ignore[reportArgumentType]
    return app
