"""The HTTP API, its page and Swagger UI, all served offline (docs/serving.md). Every refusal
(408, 413, 422, 429, 503) is a JSON ``{"detail": "<one line>"}`` and costs no model time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from swagger_ui_bundle import swagger_ui_path

from .. import __version__
from ..classifier.pooling import combine_probabilities
from ..data.readers import TooManyRows, iter_text_rows, scan_text_file
from ..errors import GPTClassifierError
from ..inference.explain import explanation_from_probabilities, text_occlusion_inputs
from ..inference.predict import TextClassifier
from ..runs.transaction import MARKER_FILE
from ..tokenizer import encode
from . import batching, schemas, server
from .batching import Batcher, ModelThread, QueueFull, ShuttingDown

INLINE_TOKENIZE_CHARS = 4096  # requests up to this many characters are tokenised on the loop
DRAIN_TIMEOUT_SECONDS = 60.0
_RUN_INFO_FIELDS = ("base_model", "init", "pooling", "padding", "max_length", "pad_length")
PAGE_DIR = Path(__file__).with_name("page")
ASSETS_URL = "/docs/assets"
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,99}")  # an upload's own name
# Never framed, never sniffed; the page runs only its own files (no inline script or style, no
# eval), so an injected <script> in a text shown could not run.
FRAME_HEADERS = {"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff"}
PAGE_HEADERS = FRAME_HEADERS | {
    "Content-Security-Policy": "default-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
}
_APP_INFO = {"title": "gpt-classifier", "version": __version__, "docs_url": None, "redoc_url": None}
_APP_INFO["description"] = "GPT-2 fine-tuned as a text classifier. Concurrent requests are batched "
_APP_INFO["description"] += "together; every error is a JSON object with a one-line `detail`."
_REFUSALS = {GPTClassifierError: 422, QueueFull: 429, ShuttingDown: 503}
_FORMATS = "csv, tsv, jsonl, parquet, lines or sms."
_TOO_LONG = 'a text longer than the model reads with "truncate": false'
_INVALID = {  # what a 422 of each model route means
    "/classify": f"Malformed body, an empty text, more texts than --max-texts, or {_TOO_LONG}.",
    "/classify/file": "A file the readers of `classify --file` cannot read (format, missing "
    "column, empty text, broken quoting, undecodable bytes...), more rows than --max-texts, or "
    f"{_TOO_LONG}.",
    "/explain": f"Malformed body, an empty text, {_TOO_LONG}, or one with more tokens than "
    "--max-queue can hold (each token is one more input).",
}


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
        keys = [str(part) for part in location if part != "body"]
        where = ".".join(key if key.isprintable() else json.dumps(key) for key in keys)
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


def create_app(
    classifier: TextClassifier,
    *,
    max_texts: int = 256,
    batch_size: int = 64,
    max_batch_tokens: int = batching.TOKENS_PER_PASS,
    batch_wait_ms: float = batching.DEFAULT_BATCH_WAIT_MS,
    max_queue: int = batching.DEFAULT_MAX_QUEUE,
    max_request_bytes: int = server.DEFAULT_MAX_REQUEST_BYTES,
    run_dir: str | None = None,
    model_thread: ModelThread | None = None,
) -> FastAPI:
    """A FastAPI app serving ``classifier``; the limits are the ``serve`` flags of those names."""
    check_limits(max_texts=max_texts, max_queue=max_queue)
    shared = {"max_batch_tokens": max_batch_tokens, "batch_wait_ms": batch_wait_ms}
    shared["max_queue"] = max_queue
    batcher = Batcher(classifier, **shared, max_batch_texts=batch_size, model_thread=model_thread)
    metrics = server.ServerMetrics(queue_depth=lambda: batcher.depth)
    batcher.on_batch = metrics.observe_batch

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        # uvicorn has answered every open request: finish what is queued before exiting
        await run_in_threadpool(batcher.close, DRAIN_TIMEOUT_SECONDS)

    app = FastAPI(lifespan=lifespan, **_APP_INFO)
    app.state.batcher, app.state.metrics = batcher, metrics
    app.add_middleware(server.GuardMiddleware, served=app, max_bytes=max_request_bytes)

    async def refuse(request: Request, exc: Exception) -> JSONResponse:
        status = next(code for kind, code in _REFUSALS.items() if isinstance(exc, kind))
        headers = {"Retry-After": str(server.RETRY_AFTER_SECONDS)} if status == 429 else None
        return JSONResponse({"detail": str(exc)}, status, headers)

    for kind in _REFUSALS:
        app.add_exception_handler(kind, refuse)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # a 400 is a body FastAPI's parsers gave up on (JSON nested thousands deep): a 422 too
        if exc.status_code == 400:
            if request.headers.get("content-type", "").startswith("multipart/"):
                return JSONResponse({"detail": f"malformed multipart form: {exc.detail}"}, 422)
            return JSONResponse({"detail": "body is not valid JSON"}, 422)
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": _one_line(exc.errors())})

    limits = {**shared, "max_texts": max_texts, "max_request_bytes": max_request_bytes}
    _add_status_routes_and_pages(app, schemas.InfoOut(**_run_card(classifier, run_dir), **limits))
    _add_model_routes(app, _Admission(classifier, batcher, metrics, max_texts, max_request_bytes))
    return app


def _run_card(classifier: TextClassifier, run_dir: str | None) -> dict[str, Any]:
    """The model and its run as ``/info`` shows them; missing or unknown values are ``None``."""
    info, trainable = classifier.info, (classifier.info.extra or {}).get("trainable")
    card: dict[str, Any] = {key: getattr(info, key) for key in _RUN_INFO_FIELDS}
    card.update(run_dir=run_dir, classes=list(classifier.classes), long_text=info.long_text.mode)
    card.update(device=str(classifier.device), precision=classifier.precision, test=None)
    card.update(trainable=trainable if isinstance(trainable, str) else None, trained_at=None)
    card["package_version"] = __version__
    if run_dir is None:
        return card
    with contextlib.suppress(OSError):  # the marker is a run's last file: when it was saved
        seconds = (Path(run_dir) / MARKER_FILE).stat().st_mtime
        card["trained_at"] = datetime.fromtimestamp(seconds, UTC).isoformat("T", "seconds")
    with contextlib.suppress(OSError, ValueError, AttributeError):
        test = json.loads((Path(run_dir) / "metrics.json").read_text(encoding="utf-8")).get("test")
        if isinstance(test, dict) and (accuracy := _number(test.get("accuracy"))) is not None:
            examples, macro = test.get("num_examples"), test.get("macro_avg")
            f1 = _number(macro.get("f1") if isinstance(macro, dict) else None)
            examples = examples if type(examples) is int else None
            card["test"] = {"accuracy": accuracy, "macro_f1": f1, "examples": examples}
    return card


def _number(value: Any) -> float | None:
    return float(value) if type(value) in (int, float) and value == value else None  # not bool, NaN


def _add_status_routes_and_pages(app: FastAPI, model_info: schemas.InfoOut) -> None:
    index = (PAGE_DIR / "index.html").read_text(encoding="utf-8")
    app.mount("/page", StaticFiles(directory=str(PAGE_DIR)), name="page-assets")
    app.mount(ASSETS_URL, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(index, headers=PAGE_HEADERS)

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")  # a reverse proxy's prefix
        page = get_swagger_ui_html(
            openapi_url=root + (app.openapi_url or "/openapi.json"),
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon-32x32.png",
        )
        page.headers.update(FRAME_HEADERS)  # Swagger UI's page has an inline script: no CSP
        return page

    described = "Prometheus text format: requests by endpoint and status, latency, batch sizes "
    described += "in texts and tokens, queue depth, texts classified."
    plain = {"response_class": PlainTextResponse, "responses": {200: {"description": described}}}

    @app.get("/health", summary="Answers once the model is loaded")
    async def health() -> schemas.HealthOut:
        return schemas.HealthOut(status="ok")

    @app.get("/info", summary="The model, its run and the server's limits")
    async def get_info() -> schemas.InfoOut:
        return model_info

    @app.get("/metrics", summary="Prometheus metrics", **plain)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _post(app: FastAPI, path: str, summary: str) -> Any:
    """A model route: the refusals every one shares, and what its 422 means."""
    described = {
        408: "The body did not arrive within 30 s of its headers.",
        413: "The body is over --max-request-bytes.",
        422: _INVALID[path],
        429: "The queue holds --max-queue texts already; retry after `Retry-After` seconds.",
        503: "The server is shutting down.",
    }
    errors: dict[int | str, dict[str, Any]] = {
        code: {"model": schemas.ErrorOut, "description": text} for code, text in described.items()
    }
    retry = {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}
    errors[429]["headers"] = {"Retry-After": retry}
    return app.post(path, summary=summary, responses=errors)


@dataclass
class _Admission:
    """Texts into the batcher: reserved first (so a refusal costs nothing), tokenised, awaited."""

    classifier: TextClassifier
    batcher: Batcher
    metrics: server.ServerMetrics
    max_texts: int
    max_request_bytes: int

    async def encode(self, texts: list[str], truncate: bool) -> tuple[list[list[int]], Any, int]:
        # short requests on the loop (cheaper than a thread hand-off), long ones in the pool
        if sum(len(text) for text in texts) <= INLINE_TOKENIZE_CHARS:
            return self.classifier.encode_windows(texts, truncate=truncate)
        return await run_in_threadpool(self.classifier.encode_windows, texts, truncate=truncate)

    async def run(self, encoded: list[list[int]], truncated: int) -> Any:
        probabilities = await asyncio.wrap_future(self.batcher.submit(encoded))
        self.metrics.truncated.inc(truncated)
        return probabilities

    async def classify(self, texts: list[str], truncate: bool, started: float) -> dict[str, Any]:
        self.batcher.reserve(len(texts))
        try:
            encoded, owners, truncated = await self.encode(texts, truncate)
            if len(encoded) > len(texts):  # windows of long texts: each one more input
                self.batcher.reserve(len(encoded) - len(texts))
        except BaseException:
            self.batcher.release(len(texts))
            raise
        probabilities = combine_probabilities(await self.run(encoded, truncated), owners)
        predictions = [asdict(p) for p in self.classifier.predictions(probabilities)]
        seconds = round(time.perf_counter() - started, 4)
        return {"predictions": predictions, "truncated": truncated, "seconds": seconds}


def upload_name(filename: str | None) -> str:
    """The upload's base name if plain, else ``upload`` plus its suffix (the format)."""
    base = PurePath((filename or "").replace("\\", "/")).name
    if _SAFE_NAME.fullmatch(base):
        return base
    suffix = PurePath(base).suffix
    return "upload" + (suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,10}", suffix) else "")


def too_many_texts(count: int | str, what: str, max_texts: int) -> GPTClassifierError:
    return GPTClassifierError(
        f"{count} texts in {what}; the limit is {max_texts} "
        "(split it or start the server with a larger --max-texts)"
    )


def read_upload(
    name: str | None, data: bytes, column: str | None, fmt: str | None, limit: int, max_bytes: int
) -> tuple[str, list[dict[str, str]], list[str]]:
    """``(name, rows, texts)`` of an upload read as ``classify --file`` reads it (written in a
    private folder): at most ``limit`` rows and ``max_bytes`` decoded, before any text is built."""
    name = upload_name(name)
    with tempfile.TemporaryDirectory(prefix="gpt-classifier-upload-") as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        try:
            if data[:4] == b"PAR1":
                _check_parquet(path, name, limit, max_bytes)
            plan = scan_text_file(path, fmt or None, column or None, max_rows=limit)
            rows = list(iter_text_rows(plan))
        except TooManyRows:
            raise too_many_texts(f"more than {limit}", name, limit) from None
        except GPTClassifierError as exc:
            raise GPTClassifierError(str(exc).replace(str(path), name)) from None
    return name, [row.fields for row in rows], [row.text for row in rows]


def _check_parquet(path: Path, name: str, max_texts: int, max_bytes: int) -> None:
    """Rows and sizes from the footer, then the columns' decoded size read as dictionaries: a few
    hundred KB can hold millions of rows, or one text repeated to gigabytes."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        footer = pq.read_metadata(path)
        if footer.num_rows > max_texts:
            raise too_many_texts(footer.num_rows, name, max_texts)
        decoded = sum(footer.row_group(i).total_byte_size for i in range(footer.num_row_groups))
        if decoded <= max_bytes:  # uncompressed within the limit: now the columns decoded
            table = pq.read_table(path, read_dictionary=footer.schema.to_arrow_schema().names)
            decoded = 0
            for chunk in (chunk for column in table.columns for chunk in column.chunks):
                values = chunk.dictionary if pa.types.is_dictionary(chunk.type) else None
                if values is not None and values.type in (pa.string(), pa.binary()):
                    lengths = pc.take(pc.binary_length(values), chunk.indices)
                    decoded += pc.sum(lengths).as_py() or 0
                else:
                    decoded += chunk.nbytes
    except GPTClassifierError:
        raise
    except Exception:  # no pyarrow, or a broken file: the readers say why
        return
    if decoded > max_bytes:
        raise GPTClassifierError(
            f"{name} decodes to {decoded} bytes, over the {max_bytes} of --max-request-bytes "
            "that an upload is held to whatever its encoding (start the server with a larger "
            "--max-request-bytes)"
        )


def _add_model_routes(app: FastAPI, admission: _Admission) -> None:
    max_texts, max_queue = admission.max_texts, admission.batcher.max_queue

    @_post(app, "/classify", "Classify texts")
    async def classify(request: schemas.ClassifyRequest) -> schemas.ClassifyResponse:
        started = time.perf_counter()
        if len(request.texts) > max_texts:
            raise too_many_texts(len(request.texts), "one request", max_texts)
        answer = await admission.classify(request.texts, request.truncate, started)
        return schemas.ClassifyResponse(**answer)

    @_post(app, "/classify/file", "Classify every row of an uploaded file")
    async def classify_file(
        file: Annotated[UploadFile, File(description="The file of texts.")],
        text_column: Annotated[str | None, Form(description="Column holding the text.")] = None,
        format: Annotated[str | None, Form(description=_FORMATS)] = None,
        truncate: Annotated[bool, Form(description="Cut texts longer than it reads.")] = True,
    ) -> schemas.FileClassifyResponse:
        """A CSV / TSV / JSONL / Parquet file with a text column, or a .txt with one text per line,
        read exactly as `gpt-classifier classify --file` reads it (format from the file name's
        suffix unless `format` says)."""
        started = time.perf_counter()
        limits = (max_texts, admission.max_request_bytes)
        upload = (file.filename, await file.read(), text_column, format, *limits)
        name, rows, texts = await run_in_threadpool(read_upload, *upload)
        answer = await admission.classify(texts, truncate, started)
        return schemas.FileClassifyResponse(**answer, filename=name, texts=texts, rows=rows)

    @_post(app, "/explain", "Why this label: each token's push towards the predicted class")
    async def explain(request: schemas.ExplainRequest) -> schemas.ExplainResponse:
        """Occlusion: the text is also run with each token deleted in turn (in the same batches as
        other requests); a token's score is the log-odds of the predicted class lost without it.
        See `gpt_classifier.inference.explain`."""
        started = time.perf_counter()
        classifier = admission.classifier
        encoded, owners, truncated = await admission.encode([request.text], request.truncate)
        ids = encoded[0]
        if owners is not None:  # several windows: recombined from the text's own ids
            ids = await run_in_threadpool(encode, classifier.tokenizer, request.text)
        inputs = text_occlusion_inputs(classifier, ids)
        if len(inputs) > max_queue:
            raise GPTClassifierError(
                f"the text has {len(ids)} tokens: explaining it takes {len(inputs)} inputs and the "
                f"queue holds {max_queue} (start the server with a larger --max-queue)"
            )
        admission.batcher.reserve(len(inputs))
        probabilities = await admission.run(inputs, truncated)
        result = explanation_from_probabilities(classifier, ids, probabilities, truncated > 0)
        seconds = round(time.perf_counter() - started, 4)
        return schemas.ExplainResponse(**asdict(result), seconds=seconds)
