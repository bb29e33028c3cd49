"""The HTTP API: ``POST /classify``, ``GET /info``, ``GET /health``, ``GET /metrics``, ``/docs``.

One worker thread owns the model (``batching.Batcher``) and merges concurrent requests into
forward batches. The event loop only parses requests and admits them; tokenising runs in the
thread pool, so a huge request neither blocks the loop nor holds up the model for others.
Every refusal (too large 413, bad request 422, queue full 429, shutting down 503) is a JSON
``{"detail": "<one line>"}`` and costs no model time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import GPTClassifierError
from ..inference.predict import TextClassifier
from .batching import (
    DEFAULT_BATCH_WAIT_MS,
    DEFAULT_MAX_BATCH_TOKENS,
    DEFAULT_MAX_QUEUE,
    Batcher,
    QueueFull,
    ShuttingDown,
)
from .body_limit import DEFAULT_MAX_REQUEST_BYTES, BodyLimitMiddleware
from .docs import add_offline_docs
from .metrics import MetricsMiddleware, ServerMetrics

DEFAULT_MAX_TEXTS = 256
RETRY_AFTER_SECONDS = 1  # a full queue drains in about a second of forward passes on a CPU
DRAIN_TIMEOUT_SECONDS = 60.0


class ClassifyRequest(BaseModel):
    # A misspelt key ("truncte") is refused, not silently ignored.
    model_config = ConfigDict(extra="forbid")

    texts: list[str] = Field(min_length=1, description="The texts to classify.")
    truncate: bool = Field(
        default=True,
        description="Cut texts longer than the model's max_length (counted in `truncated`); "
        "false refuses them with a 422 instead.",
    )


class PredictionOut(BaseModel):
    label: str
    probability: float = Field(description="Probability of `label`.")
    probabilities: dict[str, float]


class ClassifyResponse(BaseModel):
    predictions: list[PredictionOut] = Field(description="One per text, in request order.")
    truncated: int = Field(description="Texts cut to the length the model was trained with.")
    seconds: float = Field(description="Time in the server: queue, tokenising and model.")


class ErrorOut(BaseModel):
    detail: str = Field(description="What is wrong, in one line.")


class HealthOut(BaseModel):
    status: str


class InfoOut(BaseModel):
    run_dir: str | None
    classes: list[str]
    base_model: str | None
    pooling: str
    max_length: int
    pad_length: int | None
    device: str
    precision: str
    max_texts: int
    max_batch_tokens: int
    batch_wait_ms: float
    max_queue: int
    max_request_bytes: int
    package_version: str


def _error(description: str, **extra: Any) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description, **extra}


def _one_line(errors: Sequence[Any]) -> str:
    """Pydantic's validation errors as ``where: what; ...`` (the first three)."""
    parts = []
    for error in errors[:3]:
        location = list(error.get("loc", ()))
        if error.get("type") == "json_invalid":
            reason = (error.get("ctx") or {}).get("error", "JSON decode error")
            parts.append(f"body is not valid JSON: {reason} (character {location[-1]})")
            continue
        where = ".".join(str(part) for part in location if part != "body")
        message = " ".join(str(error.get("msg", "invalid")).split())
        parts.append(f"{where or 'body'}: {message}")
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more


def check_limits(*, max_texts: int, max_queue: int) -> None:
    if max_queue < max_texts:
        raise GPTClassifierError(
            f"--max-queue {max_queue} is below --max-texts {max_texts}: "
            "a full-size request could never be admitted"
        )


@dataclass(frozen=True)
class ServerLimits:
    """What one server accepts (see ``create_app``)."""

    max_texts: int
    batch_size: int
    max_batch_tokens: int
    batch_wait_ms: float
    max_queue: int
    max_request_bytes: int


def create_app(
    classifier: TextClassifier,
    *,
    max_texts: int = DEFAULT_MAX_TEXTS,
    batch_size: int = 64,
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS,
    max_queue: int = DEFAULT_MAX_QUEUE,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    run_dir: str | None = None,
) -> FastAPI:
    """A FastAPI app serving ``classifier``.

    ``max_texts`` caps the texts of one request, ``batch_size`` the texts of one forward pass
    and ``max_batch_tokens`` its padded tokens; ``batch_wait_ms`` is how long the first waiting
    text waits for others; ``max_queue`` bounds the texts admitted and not yet classified (then
    429); ``max_request_bytes`` bounds a request body (then 413).
    """
    limits = ServerLimits(
        max_texts, batch_size, max_batch_tokens, batch_wait_ms, max_queue, max_request_bytes
    )
    check_limits(max_texts=max_texts, max_queue=max_queue)
    batcher = Batcher(
        classifier,
        max_batch_tokens=max_batch_tokens,
        batch_wait_ms=batch_wait_ms,
        max_queue=max_queue,
        max_batch_texts=batch_size,
    )
    metrics = ServerMetrics(queue_depth=lambda: batcher.depth)
    batcher.on_batch = metrics.observe_batch

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        # uvicorn has answered every open request by now; finish anything still queued (and
        # let the worker go) before the process exits.
        await run_in_threadpool(batcher.close, DRAIN_TIMEOUT_SECONDS)

    app = FastAPI(
        title="gpt-classifier",
        version=__version__,
        description="GPT-2 fine-tuned as a text classifier. Concurrent requests are batched "
        "together; every error is a JSON object with a one-line `detail`.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.batcher = batcher
    app.state.metrics = metrics
    add_offline_docs(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_request_bytes)
    # Added last, so outermost: it sees every answer, the body limit's 413 included.
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=lambda: app.routes)
    _add_error_handlers(app)
    _add_status_routes(app, classifier, limits, metrics, run_dir)
    _add_classify_route(app, classifier, batcher, metrics, limits.max_texts)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GPTClassifierError)
    async def _bad_input(request: Request, exc: GPTClassifierError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # FastAPI answers 400 to a body its JSON parser gives up on (nested thousands deep);
        # for the client that is one more malformed body, documented as 422.
        if exc.status_code == 400:
            return JSONResponse(status_code=422, content={"detail": "body is not valid JSON"})
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": _one_line(exc.errors())})


def _add_status_routes(
    app: FastAPI,
    classifier: TextClassifier,
    limits: ServerLimits,
    metrics: ServerMetrics,
    run_dir: str | None,
) -> None:
    info = classifier.info

    @app.get("/health", response_model=HealthOut, summary="Answers once the model is loaded")
    async def health() -> HealthOut:
        return HealthOut(status="ok")

    @app.get("/info", response_model=InfoOut, summary="The model and the server's limits")
    async def model_info() -> InfoOut:
        return InfoOut(
            run_dir=run_dir,
            classes=list(classifier.classes),
            base_model=info.base_model,
            pooling=info.pooling,
            max_length=info.max_length,
            pad_length=info.pad_length,
            device=str(classifier.device),
            precision=classifier.precision,
            max_texts=limits.max_texts,
            max_batch_tokens=limits.max_batch_tokens,
            batch_wait_ms=limits.batch_wait_ms,
            max_queue=limits.max_queue,
            max_request_bytes=limits.max_request_bytes,
            package_version=__version__,
        )

    @app.get(
        "/metrics",
        response_class=Response,
        summary="Prometheus metrics",
        responses={
            200: {
                "description": "Prometheus text format: requests by endpoint and status, "
                "latency, batch sizes in texts and tokens, queue depth, texts classified.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    )
    async def prometheus_metrics() -> Response:
        body, content_type = metrics.render()
        return Response(content=body, media_type=content_type)


_CLASSIFY_ERRORS = {
    413: _error("The body is over --max-request-bytes."),
    422: _error(
        "Malformed body, an empty text, more texts than --max-texts, or a text "
        'longer than the model reads with "truncate": false.'
    ),
    429: _error(
        "The queue holds --max-queue texts already; retry after `Retry-After` seconds.",
        headers={
            "Retry-After": {
                "description": "Seconds to wait before retrying.",
                "schema": {"type": "integer"},
            }
        },
    ),
    503: _error("The server is shutting down."),
}


def _add_classify_route(
    app: FastAPI,
    classifier: TextClassifier,
    batcher: Batcher,
    metrics: ServerMetrics,
    max_texts: int,
) -> None:
    @app.post(
        "/classify",
        response_model=ClassifyResponse,
        summary="Classify texts",
        responses=_CLASSIFY_ERRORS,
    )
    async def classify(request: ClassifyRequest) -> ClassifyResponse:
        started = time.perf_counter()
        count = len(request.texts)
        if count > max_texts:
            raise GPTClassifierError(
                f"{count} texts in one request; the limit is {max_texts} "
                "(split the request or start the server with a larger --max-texts)"
            )
        try:
            batcher.reserve(count)  # before tokenising: a refusal must cost nothing
        except QueueFull as exc:
            raise HTTPException(
                429,
                f"server busy: {exc}; retry later",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            ) from None
        except ShuttingDown as exc:
            raise HTTPException(503, str(exc)) from None
        try:
            encoded, truncated = await run_in_threadpool(
                classifier.encode_texts, request.texts, truncate=request.truncate
            )
        except BaseException:
            batcher.release(count)
            raise
        try:
            future = batcher.submit(encoded)
        except ShuttingDown as exc:
            raise HTTPException(503, str(exc)) from None
        probabilities = await asyncio.wrap_future(future)
        metrics.truncated.inc(truncated)
        return ClassifyResponse(
            predictions=[
                PredictionOut(
                    label=p.label, probability=p.probability, probabilities=p.probabilities
                )
                for p in classifier.predictions(probabilities)
            ],
            truncated=truncated,
            seconds=round(time.perf_counter() - started, 4),
        )
