"""A 429 at the door when the queue is full, before the body is read: under a burst, refusals
skip body parsing, routing and validation and leave the CPU to admitted requests. A request
that finds room goes on to its route, which admits its exact number of texts (or 429s)."""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from .batching import Batcher


class OverloadMiddleware:
    def __init__(
        self, app: ASGIApp, batcher: Batcher, paths: frozenset[str], retry_after: int
    ) -> None:
        self.app = app
        self.batcher = batcher
        self.paths = paths
        self.retry_after = retry_after

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
            # The body is not read: close the connection rather than parse it as a request.
            headers = {"Retry-After": str(self.retry_after), "Connection": "close"}
            await JSONResponse({"detail": detail}, 429, headers)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The path without the prefix a reverse proxy mounts the app under."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path
