"""Requests refused at the door, pure ASGI, before FastAPI reads (and buffers) their body: a body
over the limit (413, from Content-Length or once the streamed bytes pass it), one not all there
``BODY_TIMEOUT_SECONDS`` after its headers (408: a stalled client holds no connection) and,
under a burst, any model request while the queue is full (429, no parsing, routing or
validation). All close the connection: the unread body would otherwise be taken for the next
request."""

from __future__ import annotations

import asyncio

from fastapi import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .batching import Batcher

DEFAULT_MAX_REQUEST_BYTES = 1024 * 1024
BODY_TIMEOUT_SECONDS = 30.0  # 1 MiB in 30 s: 35 KB/s


def too_large(limit: int) -> str:
    return f"request body over {limit} bytes (start the server with a larger --max-request-bytes)"


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        # The HTTP server has already refused a malformed Content-Length.
        if declared.isdigit() and int(declared) > self.max_bytes:
            detail = {"detail": too_large(self.max_bytes)}
            await JSONResponse(detail, 413, {"Connection": "close"})(scope, receive, send)
            return
        received, complete = 0, False
        deadline = asyncio.get_running_loop().time() + BODY_TIMEOUT_SECONDS

        async def counting_receive() -> Message:
            nonlocal received, complete
            if complete:  # only a disconnect is left to wait for, as long as it takes
                return await receive()
            left = max(0.0, deadline - asyncio.get_running_loop().time())
            try:
                message = await asyncio.wait_for(receive(), left)
            except asyncio.TimeoutError:  # FastAPI passes these on as the JSON answer
                late = f"the request body did not arrive within {BODY_TIMEOUT_SECONDS:g} s"
                raise HTTPException(408, late, {"Connection": "close"}) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if received > self.max_bytes:
                    raise HTTPException(413, too_large(self.max_bytes))
            return message

        await self.app(scope, counting_receive, send)


class OverloadMiddleware:
    def __init__(
        self, app: ASGIApp, batcher: Batcher, paths: frozenset[str], retry_after: int
    ) -> None:
        self.app, self.batcher, self.paths, self.retry_after = app, batcher, paths, retry_after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and self.batcher.depth >= self.batcher.max_queue
            and _route_path(scope) in self.paths
        ):
            detail = (
                f"server busy: {self.batcher.depth} texts are queued and the queue holds "
                f"{self.batcher.max_queue}; retry later"
            )
            headers = {"Retry-After": str(self.retry_after), "Connection": "close"}
            await JSONResponse({"detail": detail}, 429, headers)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The path without the prefix a reverse proxy mounts the app under."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path
