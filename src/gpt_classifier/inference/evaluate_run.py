"""Evaluating a saved run on its own splits or on another labelled file."""

from __future__ import annotations

import math
import os
from typing import Any

import torch

from ..data import read_records, read_splits
from ..errors import GPTClassifierError
from ..evaluation import classification_metrics
from .predict import TextClassifier
from .run_dir import read_run_info

SPLITS = ("train", "validation", "test")


def evaluate_run(
    run_dir: str | os.PathLike[str],
    *,
    data_file: str | os.PathLike[str] | None = None,
    fmt: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    lenient: bool = False,
    tokenizer_dir: str | None = None,
    device: str = "auto",
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """``({split: metrics}, class names)``: the run's saved splits, or ``data_file`` as one
    split named ``data``."""
    read_run_info(run_dir)  # a clear error for a bad run directory before any other work
    classifier = TextClassifier.from_run(run_dir, device=device, tokenizer_dir=tokenizer_dir)
    classes = list(classifier.classes)
    if data_file is not None:
        splits = {"data": read_records(data_file, fmt, text_column, label_column, lenient=lenient)}
    else:
        prepared = read_splits(os.path.join(run_dir, "data"))
        splits = {name: prepared.split(name) for name in SPLITS if prepared.split(name)}
    report = {}
    for name, records in splits.items():
        unknown = [r for r in records if r.label not in classes]
        if unknown:
            raise GPTClassifierError(
                f"{unknown[0].where}: label {unknown[0].label!r} is not one of the model's "
                f"classes ({', '.join(classes)})"
            )
        targets = torch.tensor([classes.index(r.label) for r in records])
        probabilities = classifier.predict_proba([r.text for r in records])
        picked = probabilities[torch.arange(len(records)), targets].clamp_min(1e-12)
        loss = float(-picked.log().mean()) if len(records) else math.nan
        report[name] = classification_metrics(
            targets.numpy(), probabilities.argmax(-1).numpy(), classes, probabilities.numpy(), loss
        )
    return report, classes
