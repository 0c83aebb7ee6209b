"""ASGI middleware: request metrics, a hard cap on request body size, and refusing predictions at once while the
service holds as many images as it may (before their bodies are read)."""

from __future__ import annotations

import json
import time

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from image_classifier.api.admission import Admission
from image_classifier.api.monitoring import ServiceMetrics

KNOWN_PATHS = frozenset({"/health", "/metadata", "/predict", "/metrics", "/docs", "/openapi.json"})


class BodyTooLarge(HTTPException):
    """The request body passed the limit while it was being received (answered as a JSON 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request body is over the {limit}-byte limit.")


class ServiceMiddleware:
    """Counts and times every request; answers 413 before reading a body larger than ``max_body``, and 503 with
    ``Retry-After`` before reading a prediction's body while ``admission`` is full."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, max_body: int, admission: Admission) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body
        self.admission = admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path = scope["path"] if scope["path"] in KNOWN_PATHS else "other"
        status = 500
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
            await send(message)

        received = 0

        async def receive_wrapper() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge(self.max_body)
            return message

        try:
            length = dict(scope["headers"]).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body:
                await self._too_large(send_wrapper)
            elif path == "/predict" and self.admission.full:
                await self._overloaded(send_wrapper)
            else:
                await self.app(scope, receive_wrapper, send_wrapper)
        except BodyTooLarge:
            if started:
                raise
            await self._too_large(send_wrapper)
        finally:
            self.metrics.observe_request(scope["method"], path, status, time.perf_counter() - start)

    async def _too_large(self, send: Send) -> None:
        await _unread_body_answer(send, 413, BodyTooLarge(self.max_body).detail)

    async def _overloaded(self, send: Send) -> None:
        refusal = self.admission.refusal()
        await _unread_body_answer(send, 503, refusal.detail, ((b"retry-after", str(refusal.retry_after_s).encode()),))


async def _unread_body_answer(
    send: Send, status: int, detail: str, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    """A JSON error sent before the request's body is read; the connection is closed after it."""
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
