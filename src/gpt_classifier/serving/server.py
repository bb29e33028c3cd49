"""The app under uvicorn on a socket bound beforehand (a stop signal drains the batcher), what
refuses requests at the door before FastAPI buffers a body (slow headers, a full queue, a large or
late body: each closes the connection), and the Prometheus metrics, one registry per app."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.responses import JSONResponse
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

try:  # the protocol uvicorn's http="auto" picks: its C parser when installed
    import httptools  # noqa: F401
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Protocol
except ImportError:
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Protocol  # type: ignore[assignment]

from .batching import BatchStats, QueueFull

GRACEFUL_SHUTDOWN_SECONDS = 30
HEADER_TIMEOUT_SECONDS = 10.0
BODY_TIMEOUT_SECONDS = 30.0  # 1 MiB in 30 s: 35 KB/s
DEFAULT_MAX_REQUEST_BYTES = 1024 * 1024
RETRY_AFTER_SECONDS = 1  # a full queue drains in about a second of forward passes on a CPU
MODEL_PATHS = frozenset({"/classify", "/classify/file", "/explain"})  # refused when it is full
# Requests: from a cached /health (~1 ms) to a queue of large texts on a slow CPU (~10 s).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_TEXT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
BATCH_TOKEN_BUCKETS = (16, 64, 256, 512, 1024, 2048, 4096, 8192, 16384)
UNMATCHED = "other"  # one label for every unknown path, so scanners cannot blow up the series


class HeaderTimeoutProtocol(_Protocol):
    # uvicorn times only idle keep-alive: a client trickling a header would hold it for ever
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer = self.loop.call_later(HEADER_TIMEOUT_SECONDS, self._headers_late)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._header_timer.cancel()
        self._header_timer = self.loop.call_later(HEADER_TIMEOUT_SECONDS, self._headers_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._header_timer.cancel()
        super().connection_lost(exc)

    def _headers_late(self) -> None:
        if self.cycle is None or self.cycle.response_complete:  # no request under way
            self.transport.close()


def server_config(app: FastAPI) -> uvicorn.Config:
    graceful = {"timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS}
    return uvicorn.Config(app, http=HeaderTimeoutProtocol, log_level="warning", **graceful)


class BatchingServer(uvicorn.Server):
    def handle_exit(self, sig: int, frame: Any) -> None:
        self.config.app.state.batcher.hurry()  # takes no lock: safe in a signal handler
        super().handle_exit(sig, frame)


def run(app: FastAPI, sock: socket.socket) -> bool:
    """Serve ``app`` on the listening ``sock`` until a stop signal; True if it started."""
    server = BatchingServer(server_config(app))
    # uvicorn re-raises the stop signal after a graceful shutdown, which by default would kill
    # the process (143) or raise KeyboardInterrupt: no-op handlers let the caller exit 0
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return server.started


class GuardMiddleware:
    """Counts and times every answer by endpoint and status; refuses 429, 413, 408 at the door."""

    def __init__(self, app: ASGIApp, served: FastAPI, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes
        self.routes, self.state = served.routes, served.state  # the batcher, the metrics
        self.too_large = f"request body over {max_bytes} bytes (start the server with a larger "
        self.too_large += "--max-request-bytes)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        matched = (route for route in self.routes if route.matches(scope)[0] is not Match.NONE)
        endpoint = getattr(next(matched, None), "path", UNMATCHED) or UNMATCHED  # a template
        started = time.perf_counter()
        depth, limit = self.state.batcher.depth, self.state.batcher.max_queue
        path = scope["path"].removeprefix(scope.get("root_path", ""))  # less a proxy's prefix
        declared = dict(scope["headers"]).get(b"content-length", b"")  # uvicorn checked its form
        app, close = self.app, {"Connection": "close"}
        if scope["method"] == "POST" and depth >= limit and path in MODEL_PATHS:
            retry = {"Retry-After": str(RETRY_AFTER_SECONDS), **close}
            app = JSONResponse({"detail": str(QueueFull(depth, limit))}, 429, retry)
        elif declared.isdigit() and int(declared) > self.max_bytes:
            app = JSONResponse({"detail": self.too_large}, 413, close)
        status, received, complete = 500, 0, False  # 500: if the app raises before answering
        deadline = asyncio.get_running_loop().time() + BODY_TIMEOUT_SECONDS

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        async def counting_receive() -> Message:
            nonlocal received, complete
            if complete:  # only a disconnect is left to wait for, as long as it takes
                return await receive()
            left = max(0.0, deadline - asyncio.get_running_loop().time())
            try:
                message = await asyncio.wait_for(receive(), left)
            except TimeoutError:  # FastAPI passes these on as the JSON answer
                late = f"the request body did not arrive within {BODY_TIMEOUT_SECONDS:g} s"
                raise HTTPException(408, late, close) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if received > self.max_bytes:
                    raise HTTPException(413, self.too_large)
            return message

        try:
            await app(scope, counting_receive, send_and_record)
        finally:
            self.state.metrics.requests.labels(endpoint, scope["method"], str(status)).inc()
            self.state.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)


class ServerMetrics:
    """Requests, latency, batches, queue depth, texts classified."""

    def __init__(self, queue_depth: Callable[[], float]) -> None:
        self.registry = CollectorRegistry()
        kw: Any = {"namespace": "gpt_classifier", "registry": self.registry}
        counter = partial(Counter, **kw)
        histogram = partial(Histogram, buckets=LATENCY_BUCKETS, **kw)
        described = "HTTP requests answered, by endpoint, method and status code."
        self.requests = counter("http_requests", described, ["endpoint", "method", "status"])
        described = "Seconds from a request's arrival to the end of its answer, by endpoint."
        self.latency = histogram("http_request_duration_seconds", described, ["endpoint"])
        described = "Texts in one forward pass of the model."
        self.batch_texts = histogram("batch_texts", described, buckets=BATCH_TEXT_BUCKETS)
        described = "Tokens in one forward pass of the model, padding included."
        self.batch_tokens = histogram("batch_tokens", described, buckets=BATCH_TOKEN_BUCKETS)
        self.batch_seconds = histogram("batch_duration_seconds", "Seconds of one forward pass.")
        described = "Texts admitted and not yet classified (tokenising, waiting or in a batch)."
        Gauge("queue_depth", described, **kw).set_function(queue_depth)
        self.texts = counter("texts_classified", "Texts classified.")
        described = "Texts cut to the length the model was trained with."
        self.truncated = counter("texts_truncated", described)

    def observe_batch(self, stats: BatchStats) -> None:
        self.batch_texts.observe(stats.texts)
        self.batch_tokens.observe(stats.tokens)
        self.batch_seconds.observe(stats.seconds)
        self.texts.inc(stats.texts)
