"""The HTTP API: ``POST /classify``, ``GET /info``, ``GET /health``.

One model serves every request. Requests run in FastAPI's thread pool (the endpoints are plain
functions, so the event loop never blocks on a forward pass) and take turns on the model behind
a lock: each request is already one batched, length-sorted call, and two forward passes at once
would only split the same CPU cores between them.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from .. import __version__
from ..errors import GPTClassifierError
from ..inference.predict import TextClassifier

DEFAULT_MAX_TEXTS = 256


class ClassifyRequest(BaseModel):
    texts: list[str] = Field(min_length=1, description="The texts to classify.")


class PredictionOut(BaseModel):
    label: str
    probability: float
    probabilities: dict[str, float]


class ClassifyResponse(BaseModel):
    predictions: list[PredictionOut]
    truncated: int = Field(description="Texts cut to the length the model was trained with.")
    seconds: float


def create_app(
    classifier: TextClassifier,
    *,
    max_texts: int = DEFAULT_MAX_TEXTS,
    batch_size: int = 64,
    run_dir: str | None = None,
) -> FastAPI:
    """A FastAPI app serving ``classifier``; ``max_texts`` caps the texts of one request."""
    app = FastAPI(
        title="gpt-classifier",
        version=__version__,
        description="GPT-2 fine-tuned as a text classifier.",
    )
    lock = threading.Lock()
    info = classifier.info

    @app.exception_handler(GPTClassifierError)
    def _bad_input(request: Request, exc: GPTClassifierError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/info")
    def model_info() -> dict[str, Any]:
        return {
            "run_dir": run_dir,
            "classes": list(classifier.classes),
            "base_model": info.base_model,
            "pooling": info.pooling,
            "max_length": info.max_length,
            "pad_length": info.pad_length,
            "device": str(classifier.device),
            "precision": classifier.precision,
            "max_texts": max_texts,
            "package_version": __version__,
        }

    @app.post("/classify", response_model=ClassifyResponse)
    def classify(request: ClassifyRequest) -> ClassifyResponse:
        if len(request.texts) > max_texts:
            raise GPTClassifierError(
                f"{len(request.texts)} texts in one request; the limit is {max_texts} "
                "(split the request or start the server with a larger --max-texts)"
            )
        with lock:
            started = time.perf_counter()
            predictions = classifier.classify(request.texts, batch_size=batch_size)
            truncated = classifier.truncated
            elapsed = time.perf_counter() - started
        return ClassifyResponse(
            predictions=[
                PredictionOut(
                    label=p.label, probability=p.probability, probabilities=p.probabilities
                )
                for p in predictions
            ],
            truncated=truncated,
            seconds=round(elapsed, 4),
        )

    return app
