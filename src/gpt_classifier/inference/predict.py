"""Classifying new texts: one batched predictor shared by the Python API, the CLI and a server."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import tiktoken
import torch

from ..classifier import GPTClassifier
from ..classifier.packing import pack
from ..classifier.pooling import padding_reads
from ..config import EOT_TOKEN_ID
from ..data.encoding import pad_token_ids
from ..errors import GPTClassifierError
from ..precision import autocast, resolve_device, resolve_precision
from ..runs.run_dir import RunInfo, load_run
from ..tokenizer import encode, get_tokenizer

_TOKENS_PER_BATCH = 1024  # matmuls of ~1k rows run fastest on the CPU (cache-sized)


@dataclass(frozen=True)
class Prediction:
    label: str
    probability: float  # of ``label``
    probabilities: dict[str, float]


class TextClassifier:
    """A fine-tuned classifier with its tokenizer and input rules, ready for raw texts.

    Texts are tokenized, cut to the length the model was trained with, sorted by length and
    run in batches of similar length (little padding); results come back in input order.
    """

    def __init__(
        self,
        model: GPTClassifier,
        tokenizer: tiktoken.Encoding,
        info: RunInfo,
        device: str | torch.device | None = None,
        precision: str = "auto",
    ) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.info = info
        self.classes = info.classes
        self.precision = resolve_precision(precision, self.device)
        self.truncated = 0  # texts cut to max_length by the last call

    @classmethod
    def from_run(
        cls,
        run_dir: str | os.PathLike[str],
        *,
        device: str | torch.device | None = None,
        tokenizer_dir: str | os.PathLike[str] | None = None,
        precision: str = "auto",
    ) -> TextClassifier:
        resolved = resolve_device(device)
        run = load_run(run_dir, resolved)
        classifier = cls(run.model, get_tokenizer(tokenizer_dir), run.info, resolved, precision)
        if classifier.precision == "bf16":  # the run's model is this classifier's alone
            cast_linear_weights(classifier.model, torch.bfloat16)
        return classifier

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, cut to the trained ``max_length``; empty texts are an error."""
        encoded, self.truncated = self.encode_texts(texts)
        return encoded

    @property
    def max_tokens(self) -> int:
        """The most tokens of a text the model reads (the trained length, within its context)."""
        return min(self.info.max_length, self.model.cfg.context_length)

    def encode_texts(
        self, texts: Sequence[str], *, truncate: bool = True
    ) -> tuple[list[list[int]], int]:
        """``(token ids per text, how many were cut)``; keeps no state, so threads may share it.

        ``truncate=False`` makes a text longer than ``max_tokens`` an error instead of a cut."""
        limit = self.max_tokens
        encoded, truncated = [], 0
        for number, text in enumerate(texts, start=1):
            if not isinstance(text, str) or not text.strip():
                raise GPTClassifierError(f"text {number} is empty; there is nothing to classify")
            ids = encode(self.tokenizer, text)
            if len(ids) > limit:
                if not truncate:
                    raise GPTClassifierError(
                        f"text {number} has {len(ids)} tokens; the model reads at most {limit}"
                    )
                truncated += 1
                ids = ids[:limit]
            encoded.append(ids)
        return encoded, truncated

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Class probabilities ``(len(texts), num_classes)`` in input order.

        Texts with the same token ids (repeats, or texts equal up to the cut) run once."""
        slot_of: dict[tuple[int, ...], int] = {}
        slots = [slot_of.setdefault(tuple(ids), len(slot_of)) for ids in self.encode(texts)]
        encoded = list(slot_of)
        probabilities = torch.empty(len(encoded), len(self.classes))
        for rows in self._batches([len(ids) for ids in encoded], batch_size):
            probabilities[rows] = self.forward([encoded[i] for i in rows])
        return probabilities[slots]

    def forward(self, encoded: Sequence[Sequence[int]]) -> torch.Tensor:
        """Class probabilities ``(len(encoded), num_classes)`` of token ids, as ONE batch padded
        to the longest (or to the trained ``pad_length``); on the CPU."""
        width = self.info.pad_length or max(len(ids) for ids in encoded)
        ids = pad_token_ids(encoded, width, self.info.pad_token_id)
        lengths = torch.tensor([len(text_ids) for text_ids in encoded])
        with torch.inference_mode(), autocast(self.device, self.precision):
            logits = self.model(ids.to(self.device), lengths)
        return self._probabilities(logits)

    @property
    def can_pack(self) -> bool:
        """Whether ``forward_packed`` applies: a run trained with per-batch padding whose
        model packs (``GPTClassifier.can_pack``). A fixed ``pad_length`` is part of what such a
        model reads, so it is kept."""
        return self.info.pad_length is None and self.model.can_pack

    def forward_packed(
        self, encoded: Sequence[Sequence[int]], row_tokens: int = _TOKENS_PER_BATCH
    ) -> torch.Tensor:
        """``forward`` with the texts packed end to end in rows of ``row_tokens`` tokens
        instead of padded (``classifier/packing.py``): for texts of mixed lengths, such as a
        server's batch, no work goes to padding. Same probabilities up to float rounding."""
        packed = pack(encoded, row_tokens, self.info.pad_token_id)
        with torch.inference_mode(), autocast(self.device, self.precision):
            logits = self.model.forward_packed(packed)
        return self._probabilities(logits)

    def _probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        if not torch.isfinite(logits).all():  # finite but huge weights can still overflow
            raise GPTClassifierError(
                "the model's outputs are not finite (NaN or infinite): its weights are corrupt "
                "or come from a diverged training"
            )
        return torch.softmax(logits.float(), dim=-1).cpu()

    def classify(self, texts: Sequence[str], batch_size: int = 64) -> list[Prediction]:
        return self.predictions(self.predict_proba(texts, batch_size))

    def predictions(self, probabilities: torch.Tensor) -> list[Prediction]:
        """One ``Prediction`` per row of class probabilities."""
        predictions = []
        for row in probabilities.tolist():
            best = max(range(len(row)), key=row.__getitem__)
            predictions.append(
                Prediction(
                    label=self.classes[best],
                    probability=row[best],
                    probabilities=dict(zip(self.classes, row, strict=True)),
                )
            )
        return predictions

    def _batches(
        self, lengths: Sequence[int], batch_size: int, max_tokens: int = _TOKENS_PER_BATCH
    ) -> list[list[int]]:
        """Indices grouped longest first, at most ``batch_size`` rows and ``max_tokens`` padded
        tokens a batch (a text longer than that runs alone).

        The book's ``last`` pooling reads position -1, so without a fixed pad length only texts
        of exactly the same length may share a batch (then nothing is padded)."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        model = self.model
        exact = padding_reads(model.pooling, model.cfg.causal, self.info.pad_length).pooled
        batches: list[list[int]] = []
        for index in order:
            current = batches[-1] if batches else None
            width = self.info.pad_length or (lengths[current[0]] if current else lengths[index])
            fits = (
                current is not None
                and len(current) < batch_size
                and (len(current) + 1) * width <= max_tokens
                and (not exact or lengths[current[0]] == lengths[index])
            )
            if fits:
                current.append(index)
            else:
                batches.append([index])
        return batches

    plan_batches = _batches  # public: the server plans its own batches


def cast_linear_weights(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Store every ``Linear`` layer's weight and bias in ``dtype``, in place.

    Under autocast to ``dtype`` the outputs are bit-identical (autocast rounds float32 weights
    to ``dtype`` for every matmul anyway), but the weights are no longer cast again at every
    forward pass: for GPT-2 124M on a CPU core that cast is ~40 ms a pass, more than the
    compute of a one-text batch, which is what a server runs under light load."""
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.to(dtype)


def classify_review(
    text: str,
    model: GPTClassifier,
    tokenizer: tiktoken.Encoding,
    device: str | torch.device,
    max_length: int | None = None,
    pad_token_id: int = EOT_TOKEN_ID,
) -> str:
    """The book's function: the predicted class name of one text.

    ``max_length`` pads and cuts as the book does; ``None`` uses the length the model was trained
    with (``model.run_info`` after ``load_run``/training) or, lacking that, no padding at all.
    """
    info: RunInfo | None = getattr(model, "run_info", None)
    if max_length is None and info is not None:
        max_length = info.pad_length or info.max_length
        pad = info.pad_length is not None
    else:
        pad = max_length is not None
    model.eval()
    ids = encode(tokenizer, text)
    if not ids:
        raise GPTClassifierError("the text is empty; there is nothing to classify")
    supported = model.cfg.context_length
    limit = min(max_length, supported) if max_length is not None else supported
    length = min(len(ids), limit)
    input_tensor = pad_token_ids([ids], limit if pad else length, pad_token_id).to(device)
    with torch.no_grad():
        logits = model(input_tensor, torch.tensor([length]))
    predicted = int(torch.argmax(logits, dim=-1).item())
    classes = info.classes if info is not None else None
    return classes[predicted] if classes else str(predicted)
