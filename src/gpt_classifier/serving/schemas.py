"""The HTTP API's request and response bodies (they are also its OpenAPI schema at ``/docs``)."""

from __future__ import annotations

from pydantic import BaseModel, Field


# A request's misspelt key ("truncte") is refused, not silently ignored.
class ClassifyRequest(BaseModel, extra="forbid"):
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


class FileClassifyResponse(ClassifyResponse):
    filename: str
    texts: list[str] = Field(description="The text of each row, in file order.")
    rows: list[dict[str, str]] = Field(
        description="Every field of each row, as `classify --file --output` keeps them."
    )


class ExplainRequest(BaseModel, extra="forbid"):
    text: str = Field(description="One text to explain.")
    truncate: bool = Field(
        default=True,
        description="Explain the part the model reads of a longer text; false refuses it (422).",
    )


class TokenScoreOut(BaseModel):
    token: str = Field(description="The token's piece of the text (the pieces make the text).")
    score: float = Field(
        description="Log-odds of the predicted class lost when this token is deleted: "
        "positive pushed towards the label, negative away from it."
    )
    probability_without: float = Field(
        description="Probability of the predicted class with this token deleted."
    )


class ExplainResponse(PredictionOut):
    tokens: list[TokenScoreOut]
    truncated: bool = Field(description="The text was cut: only the part the model reads.")
    method: str = Field(description="How the scores were computed (`occlusion`: deletion).")
    seconds: float


class ErrorOut(BaseModel):
    detail: str = Field(description="What is wrong, in one line.")


class HealthOut(BaseModel):
    status: str


class TestMetricsOut(BaseModel):
    accuracy: float
    macro_f1: float | None
    examples: int | None


class InfoOut(BaseModel):
    run_dir: str | None
    classes: list[str]
    base_model: str | None
    init: str = Field(description="`pretrained` or `random` weights before fine-tuning.")
    trainable: str | None = Field(description="What was fine-tuned (e.g. `last-blocks:1`).")
    pooling: str
    padding: str
    max_length: int
    pad_length: int | None
    long_text: str = Field(description="How a longer text is read: truncate, head-tail, chunks.")
    test: TestMetricsOut | None = Field(description="From the run's metrics.json, if present.")
    trained_at: str | None = Field(
        description="When the run was saved (ISO 8601, UTC), from its completion marker."
    )
    device: str
    precision: str
    max_texts: int
    max_batch_tokens: int
    batch_wait_ms: float
    max_queue: int
    max_request_bytes: int
    package_version: str
