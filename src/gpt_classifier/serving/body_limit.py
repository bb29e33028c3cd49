"""A request body limit: 413 from the declared Content-Length, or once the streamed bytes pass it
(pure ASGI, so an oversized body is refused before FastAPI buffers it; a chunked body's 413 is
raised from ``receive``, which FastAPI lets through to the usual JSON answer)."""

from __future__ import annotations

from fastapi import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_REQUEST_BYTES = 1024 * 1024


def too_large(limit: int) -> str:
    return f"request body over {limit} bytes (start the server with a larger --max-request-bytes)"


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        # The HTTP server has already refused a malformed Content-Length.
        if declared.isdigit() and int(declared) > self.max_bytes:
            # Connection: close, or the unread body would be taken for the next request
            headers = {"Connection": "close"}
            detail = {"detail": too_large(self.max_bytes)}
            await JSONResponse(detail, 413, headers)(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, too_large(self.max_bytes))
            return message

        await self.app(scope, counting_receive, send)
