"""What ``gpt-classifier train`` takes (``FinetuneOptions``) and the typed recipe it resolves to.

Options say what the user asked for (``None``: the preset's value); :meth:`FinetuneOptions.resolved`
checks every option at once, before any download or computation, and returns a
:class:`ResolvedRecipe` whose choices are parsed values, never strings to parse again.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..classifier import Pooling, TrainableSpec, parse_trainable, validate_pooling
from ..config import is_model_name, resolve_config
from ..data import BALANCE_METHODS, parse_padding
from ..data.encoding import Padding
from ..errors import GPTClassifierError
from ..precision import resolve_precision
from .settings import PRESETS, TrainSettings

MAX_SEED = 2**63 - 1  # torch.manual_seed's largest


@dataclass
class FinetuneOptions:
    """Everything ``gpt-classifier train`` takes. ``None`` means: the preset's value."""

    output_dir: str | os.PathLike[str] = "runs/sms-spam"
    preset: str = "default"
    # data
    data_file: str | None = None
    train_file: str | None = None
    validation_file: str | None = None
    test_file: str | None = None
    fmt: str | None = None
    text_column: str | None = None
    label_column: str | None = None
    lenient: bool = False
    balance: str | None = None
    keep_duplicates: bool | None = None
    fractions: str | tuple[float, float, float] = (0.7, 0.1, 0.2)
    padding: str | None = None
    # model
    model: str = "gpt2"
    weights: str | None = None
    init: str = "pretrained"
    tokenizer_dir: str | None = None
    pooling: str | None = None
    trainable: str | None = None
    lora_rank: int = 16
    lora_alpha: float = 16.0
    causal_mask: bool = True  # False: every token attends to every other (the book's row 17)
    # optimisation
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    eval_freq: int | None = None
    eval_iter: int | None = None
    grad_accum_steps: int | None = None
    seed: int | None = None
    select_best: bool | None = None
    # execution
    device: str = "auto"
    precision: str = "auto"
    prefix_cache: bool = True
    disk_cache: bool = True  # keep/reuse the frozen-prefix states on disk between runs
    cache_dir: str | None = None  # default: $GPT_CLASSIFIER_CACHE or the user's cache folder
    progress: bool = True
    plots: bool = True
    # the run directory
    overwrite: bool = False  # replace an existing run (or non-empty folder)
    resume: bool = False  # continue the interrupted run in output_dir from its checkpoint
    checkpoint_every: int | None = None  # optimizer steps between checkpoints (and every epoch)
    # under torchrun: seconds to wait for a peer (to join, or in a collective) before an error;
    # None: $GPT_CLASSIFIER_DIST_TIMEOUT or 10 minutes
    dist_timeout: float | None = None

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["output_dir"] = str(self.output_dir)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FinetuneOptions:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise GPTClassifierError(f"unknown training options {unknown}")
        if isinstance(values.get("fractions"), list):
            values = {**values, "fractions": tuple(values["fractions"])}
        return cls(**values)

    def resolved(self) -> ResolvedRecipe:
        """The preset's recipe overridden by every option that was given; all problems at once."""
        if self.preset not in PRESETS:
            raise GPTClassifierError(
                f"unknown preset {self.preset!r}; valid presets: {', '.join(PRESETS)}"
            )
        recipe = PRESETS[self.preset]

        def pick(key: str) -> Any:
            value = getattr(self, key)
            return getattr(recipe, key) if value is None else value

        overrides = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(TrainSettings)
            if getattr(self, f.name, None) is not None
        }
        problems: list[str] = []
        parsed: dict[str, Any] = {}

        def check(key: str, parse: Callable[[], object]) -> None:
            try:
                parsed[key] = parse()
            except GPTClassifierError as exc:
                problems.append(str(exc))

        check("trainable", lambda: parse_trainable(pick("trainable")))
        check("padding", lambda: parse_padding(pick("padding")))
        check("pooling", lambda: validate_pooling(pick("pooling")))
        check("precision", lambda: resolve_precision(self.precision, torch.device("cpu")))
        check("train", lambda: dataclasses.replace(recipe.train, **overrides))
        if self.weights is None or not is_model_name(self.model):
            check("model", lambda: resolve_config(self.model))
        if pick("balance") not in BALANCE_METHODS:
            problems.append(
                f"unknown balance {pick('balance')!r}; valid: {', '.join(BALANCE_METHODS)}"
            )
        problems += self._run_option_problems()
        if problems:
            raise GPTClassifierError("; ".join(problems))
        return ResolvedRecipe(
            padding=parsed["padding"],
            pooling=parsed["pooling"],
            trainable=parsed["trainable"],
            keep_duplicates=bool(pick("keep_duplicates")),
            balance=pick("balance"),
            train=parsed["train"],
        )

    def _run_option_problems(self) -> list[str]:
        problems = []
        if self.seed is not None and not 0 <= self.seed <= MAX_SEED:
            problems.append(f"seed must be between 0 and 2**63-1 (got {self.seed})")
        if not (isinstance(self.lora_rank, int) and self.lora_rank >= 1):
            problems.append(f"lora_rank must be a positive integer (got {self.lora_rank!r})")
        if not (math.isfinite(self.lora_alpha) and self.lora_alpha > 0):
            problems.append(f"lora_alpha must be a positive finite number (got {self.lora_alpha})")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            problems.append(f"checkpoint_every must be >= 1 (got {self.checkpoint_every})")
        if self.dist_timeout is not None and not self.dist_timeout > 0:
            problems.append(f"dist_timeout must be positive (got {self.dist_timeout})")
        return problems

    @property
    def output_path(self) -> Path:
        return Path(self.output_dir).expanduser()


@dataclass(frozen=True)
class ResolvedRecipe:
    """The parsed choices of one run: what every later stage reads."""

    padding: Padding
    pooling: Pooling
    trainable: TrainableSpec
    keep_duplicates: bool
    balance: str
    train: TrainSettings
