"""Training hyperparameters, and the book's chapter-6 recipe as a preset."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..errors import GPTClassifierError


@dataclass(frozen=True)
class TrainSettings:
    """How the classifier is optimised. Defaults are the book's (AdamW 5e-5, wd 0.1, 5 epochs,
    batch 8, evaluation every 50 steps on 5 batches, seed 123)."""

    epochs: int = 5
    batch_size: int = 8
    lr: float = 5e-5
    weight_decay: float = 0.1
    eval_freq: int = 50
    eval_iter: int = 5
    grad_accum_steps: int = 1
    seed: int = 123
    select_best: bool = False  # keep the epoch with the best validation accuracy

    def __post_init__(self) -> None:
        problems = []
        for key in ("epochs", "batch_size", "eval_freq", "eval_iter", "grad_accum_steps"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append(f"{key} must be a positive integer (got {value!r})")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            problems.append(f"lr must be a positive finite number (got {self.lr!r})")
        wd = self.weight_decay
        if not (isinstance(wd, (int, float)) and math.isfinite(wd) and wd >= 0):
            problems.append(f"weight_decay must be a finite number >= 0 (got {wd!r})")
        if problems:
            raise GPTClassifierError("invalid training settings: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Recipe:
    """Everything a preset fixes: data preparation, model head, and optimisation."""

    padding: str = "batch"
    pooling: str = "last-real"
    trainable: str = "last-block"
    keep_duplicates: bool = False
    balance: str = "undersample"
    train: TrainSettings = TrainSettings()


DEFAULT_RECIPE = Recipe()

# Chapter 6 exactly: every text padded to the longest training text, the last position read,
# last block + final norm + head trained, duplicates kept (the book's split has them).
BOOK_RECIPE = Recipe(
    padding="longest-train",
    pooling="last",
    trainable="last-block",
    keep_duplicates=True,
    balance="undersample",
    train=TrainSettings(
        epochs=5, batch_size=8, lr=5e-5, weight_decay=0.1, eval_freq=50, eval_iter=5, seed=123
    ),
)

PRESETS = {"default": DEFAULT_RECIPE, "book": BOOK_RECIPE}
