"""The HTTP API and its page: ``POST /classify``, ``POST /classify/file``, ``POST /explain``,
``GET /info``, ``GET /health``, ``GET /metrics``, ``/docs``, and the web page at ``/``.

One worker thread owns the model (``batching.Batcher``) and merges concurrent requests into
forward batches. The event loop only parses requests and admits them; tokenising runs in the
thread pool, so a huge request neither blocks the loop nor holds up the model for others.
Every refusal (too large 413, bad request 422, queue full 429, shutting down 503) is a JSON
``{"detail": "<one line>"}`` and costs no model time.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import GPTClassifierError
from ..inference.explain import explanation_from_probabilities, occlusion_inputs
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
from .model_thread import ModelThread
from .overload import OverloadMiddleware
from .page import add_page
from .run_card import read_run_card
from .schemas import (
    ClassifyRequest,
    ClassifyResponse,
    ErrorOut,
    ExplainRequest,
    ExplainResponse,
    FileClassifyResponse,
    HealthOut,
    InfoOut,
    PredictionOut,
    TestMetricsOut,
    TokenScoreOut,
)
from .uploads import read_upload

DEFAULT_MAX_TEXTS = 256
RETRY_AFTER_SECONDS = 1  # a full queue drains in about a second of forward passes on a CPU
INLINE_TOKENIZE_CHARS = 4096  # requests up to this many characters are tokenised on the loop
DRAIN_TIMEOUT_SECONDS = 60.0


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
        # a key may hold a line break (an unknown field "\n"): quote what is not printable
        where = ".".join(
            str(part) if str(part).isprintable() else json.dumps(str(part))
            for part in location
            if part != "body"
        )
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
    model_thread: ModelThread | None = None,
) -> FastAPI:
    """A FastAPI app serving ``classifier``.

    ``max_texts`` caps the texts of one request, ``batch_size`` the texts of one forward pass
    and ``max_batch_tokens`` its padded tokens; ``batch_wait_ms`` is how long the first waiting
    text waits for others; ``max_queue`` bounds the texts admitted and not yet classified (then
    429); ``max_request_bytes`` bounds a request body (then 413). Forward passes run in
    ``model_thread``: pass the one that loaded ``classifier`` (see ``model_thread``).
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
        model_thread=model_thread,
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
    add_page(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_request_bytes)
    app.add_middleware(
        OverloadMiddleware,
        batcher=batcher,
        paths=frozenset({"/classify", "/classify/file", "/explain"}),
        retry_after=RETRY_AFTER_SECONDS,
    )
    # Added last, so outermost: it sees every answer, the body limit's 413 included.
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=lambda: app.routes)
    _add_error_handlers(app)
    _add_status_routes(app, classifier, limits, metrics, run_dir)
    admission = _Admission(classifier, batcher, metrics)
    _add_classify_routes(app, classifier, admission, limits.max_texts)
    _add_explain_route(app, classifier, admission, limits.max_queue)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GPTClassifierError)
    async def _bad_input(request: Request, exc: GPTClassifierError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # FastAPI answers 400 to a body its parsers give up on (JSON nested thousands deep, a
        # broken multipart form); for the client that is one more malformed body, a 422.
        if exc.status_code == 400:
            if request.headers.get("content-type", "").startswith("multipart/"):
                detail = f"malformed multipart form: {exc.detail}"
            else:
                detail = "body is not valid JSON"
            return JSONResponse(status_code=422, content={"detail": detail})
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
    card = read_run_card(run_dir)
    extra = info.extra or {}
    trainable = extra.get("trainable")

    @app.get("/health", response_model=HealthOut, summary="Answers once the model is loaded")
    async def health() -> HealthOut:
        return HealthOut(status="ok")

    @app.get("/info", response_model=InfoOut, summary="The model, its run and the server's limits")
    async def model_info() -> InfoOut:
        return InfoOut(
            run_dir=run_dir,
            classes=list(classifier.classes),
            base_model=info.base_model,
            init=info.init,
            trainable=trainable if isinstance(trainable, str) else None,
            pooling=info.pooling,
            padding=info.padding,
            max_length=info.max_length,
            pad_length=info.pad_length,
            test=TestMetricsOut(**vars(card.test)) if card.test else None,
            trained_at=card.trained_at,
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


_BUSY = _error(
    "The queue holds --max-queue texts already; retry after `Retry-After` seconds.",
    headers={
        "Retry-After": {
            "description": "Seconds to wait before retrying.",
            "schema": {"type": "integer"},
        }
    },
)
_CLASSIFY_ERRORS = {
    413: _error("The body is over --max-request-bytes."),
    422: _error(
        "Malformed body, an empty text, more texts than --max-texts, or a text "
        'longer than the model reads with "truncate": false.'
    ),
    429: _BUSY,
    503: _error("The server is shutting down."),
}
_FILE_ERRORS = {
    **_CLASSIFY_ERRORS,
    422: _error(
        "A file the readers of `classify --file` cannot read (format, missing column, empty "
        "text, broken quoting, undecodable bytes...), more rows than --max-texts, or a text "
        "longer than the model reads with truncate false."
    ),
}
_EXPLAIN_ERRORS = {
    **_CLASSIFY_ERRORS,
    422: _error(
        "Malformed body, an empty text, a text longer than the model reads with "
        '"truncate": false, or one with more tokens than --max-queue can hold (each token is '
        "one more input)."
    ),
    429: _BUSY,
}


class _Admission:
    """Texts into the batcher: admitted against the queue bound first (a refusal costs nothing),
    tokenised in the thread pool (a huge request does not stall the event loop or the model),
    then handed to the worker; the answer is awaited without holding a thread."""

    def __init__(self, classifier: TextClassifier, batcher: Batcher, metrics: ServerMetrics):
        self.classifier = classifier
        self.batcher = batcher
        self.metrics = metrics

    def reserve(self, count: int) -> None:
        try:
            self.batcher.reserve(count)
        except QueueFull as exc:
            raise HTTPException(
                429,
                f"server busy: {exc}; retry later",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            ) from None
        except ShuttingDown as exc:
            raise HTTPException(503, str(exc)) from None

    async def encode(self, texts: list[str], truncate: bool) -> tuple[list[list[int]], int]:
        """Token ids: short requests on the event loop (tokenising a few hundred characters
        takes microseconds, less than handing them to a thread and back, and every extra
        thread wake-up on a busy CPU preempts the model's threads), longer ones in the
        thread pool, so that a huge request never stalls the loop."""
        if sum(len(text) for text in texts) <= INLINE_TOKENIZE_CHARS:
            return self.classifier.encode_texts(texts, truncate=truncate)
        return await run_in_threadpool(self.classifier.encode_texts, texts, truncate=truncate)

    async def run(self, encoded: list[list[int]]) -> Any:
        """Probabilities of reserved inputs, once the worker has run them."""
        try:
            future = self.batcher.submit(encoded)
        except ShuttingDown as exc:
            raise HTTPException(503, str(exc)) from None
        return await asyncio.wrap_future(future)

    async def classify(self, texts: list[str], truncate: bool) -> tuple[list[PredictionOut], int]:
        count = len(texts)
        self.reserve(count)
        try:
            encoded, truncated = await self.encode(texts, truncate)
        except BaseException:
            self.batcher.release(count)
            raise
        probabilities = await self.run(encoded)
        self.metrics.truncated.inc(truncated)
        predictions = [
            PredictionOut(label=p.label, probability=p.probability, probabilities=p.probabilities)
            for p in self.classifier.predictions(probabilities)
        ]
        return predictions, truncated


def _too_many(count: int, what: str, max_texts: int) -> GPTClassifierError:
    return GPTClassifierError(
        f"{count} texts in {what}; the limit is {max_texts} "
        "(split it or start the server with a larger --max-texts)"
    )


def _add_classify_routes(
    app: FastAPI, classifier: TextClassifier, admission: _Admission, max_texts: int
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
            raise _too_many(count, "one request", max_texts)
        predictions, truncated = await admission.classify(request.texts, request.truncate)
        return ClassifyResponse(
            predictions=predictions,
            truncated=truncated,
            seconds=round(time.perf_counter() - started, 4),
        )

    @app.post(
        "/classify/file",
        response_model=FileClassifyResponse,
        summary="Classify every row of an uploaded file",
        description="A CSV / TSV / JSONL / Parquet file with a text column, or a .txt with one "
        "text per line, read exactly as `gpt-classifier classify --file` reads it (format from "
        "the file name's suffix unless `format` says).",
        responses=_FILE_ERRORS,
    )
    async def classify_file(
        file: Annotated[UploadFile, File(description="The file of texts.")],
        text_column: Annotated[str | None, Form(description="Column holding the text.")] = None,
        format: Annotated[
            str | None, Form(description="csv, tsv, jsonl, parquet, lines or sms.")
        ] = None,
        truncate: Annotated[bool, Form(description="Cut texts longer than it reads.")] = True,
    ) -> FileClassifyResponse:
        started = time.perf_counter()
        data = await file.read()
        name, rows, texts = await run_in_threadpool(
            read_upload, file.filename, data, text_column, format
        )
        if len(texts) > max_texts:
            raise _too_many(len(texts), name, max_texts)
        predictions, truncated = await admission.classify(texts, truncate)
        return FileClassifyResponse(
            predictions=predictions,
            truncated=truncated,
            seconds=round(time.perf_counter() - started, 4),
            filename=name,
            texts=texts,
            rows=rows,
        )


def _add_explain_route(
    app: FastAPI, classifier: TextClassifier, admission: _Admission, max_queue: int
) -> None:
    @app.post(
        "/explain",
        response_model=ExplainResponse,
        summary="Why this label: each token's push towards the predicted class",
        description="Occlusion: the text is also run with each token deleted in turn (in the "
        "same batches as other requests); a token's score is the log-odds of the predicted "
        "class lost without it. See `gpt_classifier.inference.explain`.",
        responses=_EXPLAIN_ERRORS,
    )
    async def explain(request: ExplainRequest) -> ExplainResponse:
        started = time.perf_counter()
        encoded, truncated = await admission.encode([request.text], request.truncate)
        inputs = occlusion_inputs(encoded[0], classifier.info.pad_token_id)
        if len(inputs) > max_queue:
            raise GPTClassifierError(
                f"the text has {len(encoded[0])} tokens: explaining it takes {len(inputs)} "
                f"inputs and the queue holds {max_queue} (start the server with a larger "
                "--max-queue)"
            )
        admission.reserve(len(inputs))
        probabilities = await admission.run(inputs)
        admission.metrics.truncated.inc(truncated)
        result = explanation_from_probabilities(
            classifier, encoded[0], probabilities, bool(truncated)
        )
        return ExplainResponse(
            label=result.label,
            probability=result.probability,
            probabilities=result.probabilities,
            tokens=[
                TokenScoreOut(
                    token=t.token, score=t.score, probability_without=t.probability_without
                )
                for t in result.tokens
            ],
            truncated=result.truncated,
            method=result.method,
            seconds=round(time.perf_counter() - started, 4),
        )
