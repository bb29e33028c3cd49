"""Classifying new texts: one batched predictor shared by the Python API, the CLI and a server;
evaluating a saved run on its splits or another labelled file, as its training report did."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tiktoken
import torch

from ..classifier import GPTClassifier
from ..classifier.packing import pack
from ..classifier.pooling import combine_probabilities, padding_reads
from ..config import EOT_TOKEN_ID
from ..data import SPLIT_NAMES, LabelMap, encode_records, make_loader, read_records, read_splits
from ..data.batching import TOKENS_PER_PASS, plan_batches
from ..data.encoding import pad_token_ids
from ..data.windows import LongText, reads_all, window_texts
from ..errors import GPTClassifierError
from ..evaluation.predictions import EVAL_BATCH_SIZE, evaluate_split
from ..evaluation.report import read_report_json
from ..precision import autocast, resolve_device, resolve_precision
from ..progress import tracked
from ..runs.run_dir import RunInfo, load_run, read_run_info, run_tokenizer
from ..tokenizer import encode


@dataclass(frozen=True)
class Prediction:
    label: str
    probability: float  # of ``label``
    probabilities: dict[str, float]


class TextClassifier:
    """A fine-tuned classifier with its tokenizer and input rules (and scikit-learn's names)."""

    def __init__(
        self,
        model: GPTClassifier,
        tokenizer: tiktoken.Encoding,
        info: RunInfo,
        device: str | torch.device | None = None,
        precision: str = "fp32",
    ) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer, self.info, self.classes = tokenizer, info, info.classes
        self.precision = resolve_precision(precision, self.device)
        self.truncated = 0  # texts cut to max_length by the last call
        self.run_dir: Path | None = None  # the saved run it was loaded from (``from_run``)

    @classmethod
    def from_run(
        cls,
        run_dir: str | os.PathLike[str],
        *,
        device: str | torch.device | None = None,
        tokenizer_dir: str | os.PathLike[str] | None = None,
        precision: str = "fp32",
        weights: str | None = None,
    ) -> TextClassifier:
        """The run in ``run_dir`` with its own tokenizer (``weights``: base weights, if moved)."""
        run = load_run(run_dir, resolve_device(device), weights)
        tokenizer = run_tokenizer(run_dir, tokenizer_dir)
        classifier = cls(run.model, tokenizer, run.info, device, precision)
        classifier.run_dir = Path(run_dir)
        if classifier.precision == "bf16":  # the run's model is this classifier's alone
            # Linear weights stored in bf16: under autocast bit-identical outputs, without
            # recasting the weights each pass (~40 ms for GPT-2 124M on a CPU core).
            for module in classifier.model.modules():
                if isinstance(module, torch.nn.Linear):
                    module.to(torch.bfloat16)
        return classifier

    @property
    def long_text(self) -> LongText:
        """How the run reads a text longer than ``max_tokens`` (``data/windows.py``)."""
        return self.info.long_text

    @property
    def max_tokens(self) -> int:
        """The most tokens of a text the model reads (the trained length, within its context)."""
        return min(self.info.max_length, self.model.cfg.context_length)

    @property
    def classes_(self) -> np.ndarray:
        """The class names in the order of ``predict_proba``'s columns (scikit-learn's name)."""
        return np.array(self.classes)

    @property
    def metrics(self) -> dict[str, dict[str, Any]]:
        """The saved run's evaluation per split (accuracy, loss, per_class, macro_avg ...)."""
        if self.run_dir is None:
            raise GPTClassifierError("no metrics: this classifier was not loaded from a run")
        return read_report_json(self.run_dir / "metrics.json")

    @property
    def can_pack(self) -> bool:
        """Whether ``forward_packed`` applies: per-batch padding and a model that packs."""
        return self.info.pad_length is None and self.model.can_pack

    def encode_windows(
        self, texts: Sequence[str], *, truncate: bool = True
    ) -> tuple[list[list[int]], list[int] | None, int]:
        """``(windows, owners, how many texts are partly read)``, keeping no state (threads share
        it); ``owners`` None: one window a text. ``truncate=False``: a partly read text fails."""
        limit, reading = self.max_tokens, self.long_text
        encoded, truncated = [], 0
        for number, text in enumerate(texts, start=1):
            if not isinstance(text, str) or not text.strip():
                raise GPTClassifierError(f"text {number} is empty; there is nothing to classify")
            encoded.append(ids := encode(self.tokenizer, text))
            whole = reads_all(len(ids), limit, reading)
            if not whole and not truncate:
                windows = f" in each of {reading.max_chunks} windows"
                raise GPTClassifierError(
                    f"text {number} has {len(ids)} tokens; the model reads at most "
                    f"{limit}" + (windows if reading.mode == "chunks" else "")
                )
            truncated += not whole
        return *window_texts(encoded, limit, reading), truncated

    def encode_texts(self, texts: Sequence[str]) -> tuple[list[list[int]], int]:
        """``(token ids per text, how many were cut)``: one window a text (not ``chunks``)."""
        if self.long_text.mode == "chunks":  # several windows a text: their owners matter
            raise GPTClassifierError("a chunks run reads a text in windows: use encode_windows")
        windows, _, truncated = self.encode_windows(texts)
        return windows, truncated

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Class probabilities ``(len(texts), num_classes)``, columns in ``classes_`` order."""
        if isinstance(texts, str):  # a string is a sequence of characters: never what was meant
            raise GPTClassifierError("texts must be a list of strings; for one text use classify")
        windows, owners, self.truncated = self.encode_windows(texts)
        return combine_probabilities(run_inputs(self, windows, batch_size), owners).numpy()

    def forward(self, encoded: Sequence[Sequence[int]]) -> torch.Tensor:
        """Class probabilities of token ids on the CPU, as ONE batch padded to the longest."""
        width = self.info.pad_length or max(len(ids) for ids in encoded)
        ids = pad_token_ids(encoded, width, self.info.pad_token_id).to(self.device)
        return self._probabilities(self.model, ids, torch.tensor([len(t) for t in encoded]))

    def forward_packed(
        self, encoded: Sequence[Sequence[int]], row_tokens: int = TOKENS_PER_PASS
    ) -> torch.Tensor:
        """``forward`` with the texts packed end to end, not padded: equal up to rounding."""
        packed = pack(encoded, row_tokens, self.info.pad_token_id)
        return self._probabilities(self.model.forward_packed, packed)

    def _probabilities(self, forward, *inputs) -> torch.Tensor:
        with torch.inference_mode(), autocast(self.device, self.precision):
            logits = forward(*inputs)
        if not torch.isfinite(logits).all():  # finite but huge weights can still overflow
            raise GPTClassifierError(
                "the model's outputs are not finite (NaN or infinite): its weights are corrupt "
                "or come from a diverged training"
            )
        return torch.softmax(logits.float(), dim=-1).cpu()

    def classify(
        self, texts: str | Sequence[str], batch_size: int = 64
    ) -> Prediction | list[Prediction]:
        """One ``Prediction`` for one text, a list of them for a list of texts."""
        if isinstance(texts, str):
            return self.classify([texts], batch_size)[0]
        return self.predictions(self.predict_proba(texts, batch_size))

    __call__ = classify

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> list[str]:
        """The predicted label of each text (scikit-learn's name)."""
        return [prediction.label for prediction in self.classify(list(texts), batch_size)]

    def predictions(self, probabilities: np.ndarray | torch.Tensor) -> list[Prediction]:
        """One ``Prediction`` per row of class probabilities."""
        rows = torch.as_tensor(probabilities)
        return [
            Prediction(self.classes[best], row[best], dict(zip(self.classes, row, strict=True)))
            for row, best in zip(rows.tolist(), rows.argmax(-1).tolist(), strict=True)
        ]

    def plan_batches(
        self, lengths: Sequence[int], batch_size: int, max_tokens: int = TOKENS_PER_PASS
    ) -> list[list[int]]:
        """Padded batches of indices, longest first (``last`` pooling: one length a batch)."""
        pad = self.info.pad_length
        equal_lengths = padding_reads(self.model.pooling, self.model.cfg.causal, pad).pooled
        return plan_batches(
            lengths, max_tokens, max_texts=batch_size, pad_to=pad, equal_lengths=equal_lengths
        )


def evaluate_run(
    run_dir: str | os.PathLike[str],
    data_file: str | os.PathLike[str] | None = None,
    *,
    progress: bool = False,
    **options: Any,
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """``({split: metrics}, class names)`` of the run's saved splits or of ``data_file`` (``data``);
    ``options``: ``from_run``'s and ``read_records``'s. In fp32: its ``metrics.json`` again."""
    info = read_run_info(run_dir)  # a clear error for a bad run directory before any other work
    keys = [key for key in ("device", "tokenizer_dir", "weights", "precision") if key in options]
    clf = TextClassifier.from_run(run_dir, **{key: options.pop(key) for key in keys})
    label_map = LabelMap(info.classes)
    if data_file is not None:
        splits = {"data": read_records(data_file, **options)}
    else:
        prepared = read_splits(Path(run_dir) / "data")
        splits = {name: prepared.split(name) for name in SPLIT_NAMES if prepared.split(name)}
    # As at training time: cut to the trained length, padded to the run's pad length (if any).
    equal = padding_reads(clf.model.pooling, clf.model.cfg.causal, info.pad_length).pooled
    order = {"shuffle": False, "drop_last": False, "bucket_by_length": True, "equal_lengths": equal}
    pads = {"pad_length": info.pad_length, "pad_token_id": info.pad_token_id}
    report = {}
    for name, records in splits.items():
        dataset = encode_records(records, clf.tokenizer, label_map, clf.max_tokens, info.long_text)
        loader = make_loader(dataset, EVAL_BATCH_SIZE, **order, **pads)
        loader = tracked(loader, len(loader), f"evaluate {name}", enabled=progress)
        report[name] = evaluate_split(clf.model, loader, clf.device, clf.precision, clf.classes)
    return report, list(label_map.classes)


def run_inputs(
    classifier: TextClassifier, encoded: Sequence[Sequence[int]], batch_size: int = 64
) -> torch.Tensor:
    """Class probabilities of token-id inputs, in order; inputs with the same ids run once."""
    slot_of: dict[tuple[int, ...], int] = {}
    slots = [slot_of.setdefault(tuple(ids), len(slot_of)) for ids in encoded]
    unique = list(slot_of)
    probabilities = torch.empty(len(unique), len(classifier.classes))
    for rows in classifier.plan_batches([len(ids) for ids in unique], batch_size):
        probabilities[rows] = classifier.forward([unique[i] for i in rows])
    return probabilities[slots]


def classify_review(
    text: str,
    model: GPTClassifier,
    tokenizer: tiktoken.Encoding,
    device: str | torch.device,
    max_length: int | None = None,
    pad_token_id: int = EOT_TOKEN_ID,
) -> str:
    """The book's function: the predicted class name of one text. ``max_length`` pads and cuts
    as the book does; ``None``: the trained length (``model.run_info``), else no padding."""
    info: RunInfo | None = getattr(model, "run_info", None)
    pad = max_length is not None
    if max_length is None and info is not None:
        max_length, pad = info.pad_length or info.max_length, info.pad_length is not None
    model.eval()
    if not (ids := encode(tokenizer, text)):
        raise GPTClassifierError("the text is empty; there is nothing to classify")
    supported = model.cfg.context_length
    limit = min(max_length, supported) if max_length is not None else supported
    length = min(len(ids), limit)
    input_tensor = pad_token_ids([ids], limit if pad else length, pad_token_id).to(device)
    with torch.no_grad():
        predicted = int(model(input_tensor, torch.tensor([length])).argmax(dim=-1).item())
    return info.classes[predicted] if info is not None and info.classes else str(predicted)
