"""Prometheus metrics of one app: requests, latency, batches, queue depth, texts classified.
Each app has its own registry, so several apps in one process keep separate counts."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .batching import BatchStats

# Requests: from a cached /health (~1 ms) to a queue of large texts on a slow CPU (~10 s).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_TEXT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
BATCH_TOKEN_BUCKETS = (16, 64, 256, 512, 1024, 2048, 4096, 8192, 16384)
UNMATCHED = "other"  # one label for every unknown path, so scanners cannot blow up the series


class ServerMetrics:
    def __init__(self, queue_depth: Callable[[], float]) -> None:
        self.registry = CollectorRegistry()
        kw: Any = {"namespace": "gpt_classifier", "registry": self.registry}
        self.requests = Counter(
            "http_requests",
            "HTTP requests answered, by endpoint, method and status code.",
            ["endpoint", "method", "status"],
            **kw,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Seconds from a request's arrival to the end of its answer, by endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            **kw,
        )
        one_pass = "in one forward pass of the model"
        self.batch_texts = Histogram(
            "batch_texts", f"Texts {one_pass}.", buckets=BATCH_TEXT_BUCKETS, **kw
        )
        self.batch_tokens = Histogram(
            "batch_tokens",
            f"Tokens {one_pass}, padding included.",
            buckets=BATCH_TOKEN_BUCKETS,
            **kw,
        )
        self.batch_seconds = Histogram(
            "batch_duration_seconds", "Seconds of one forward pass.", buckets=LATENCY_BUCKETS, **kw
        )
        self.queue_depth = Gauge(
            "queue_depth",
            "Texts admitted and not yet classified (tokenising, waiting or in a batch).",
            **kw,
        )
        self.queue_depth.set_function(queue_depth)
        self.texts = Counter("texts_classified", "Texts classified.", **kw)
        self.truncated = Counter(
            "texts_truncated", "Texts cut to the length the model was trained with.", **kw
        )

    def observe_batch(self, stats: BatchStats) -> None:
        self.batch_texts.observe(stats.texts)
        self.batch_tokens.observe(stats.tokens)
        self.batch_seconds.observe(stats.seconds)
        self.texts.inc(stats.texts)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Counts and times every answer by endpoint and status, the body limit's 413s included."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics, routes: Callable[[], list]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = self._endpoint(scope)
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            self.metrics.requests.labels(endpoint, scope["method"], str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)

    def _endpoint(self, scope: Scope) -> str:
        # The route's path template (or a mount's prefix), never the raw path.
        for route in self.routes():
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                return getattr(route, "path", UNMATCHED) or UNMATCHED
        return UNMATCHED
