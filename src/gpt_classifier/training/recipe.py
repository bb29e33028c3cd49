"""What ``train`` takes (``FinetuneOptions``) and what it resolves to once (``ResolvedRecipe``)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..classifier import POOLINGS, Pooling, TrainableSpec, parse_trainable, validate_pooling
from ..config import GPTConfig, is_model_name, resolve_config
from ..data import BALANCE_METHODS, parse_fractions, parse_padding
from ..data.encoding import Padding
from ..data.windows import LongText
from ..distributed import DEFAULT_DIST_TIMEOUT_S, DIST_TIMEOUT_ENV, context_from_env, rank_device
from ..errors import GPTClassifierError
from ..precision import resolve_device, resolve_precision
from ..runs.run_dir import SAVE_LAYOUTS
from . import settings
from .settings import TrainSettings, opt, over_preset, rule_problems

_TRAIN_KEYS = tuple(f.name for f in dataclasses.fields(TrainSettings))
_CHOICE_KEYS = ("padding", "pooling", "trainable", "keep_duplicates", "balance")
_BASES = (settings.CacheOptions, settings.PrecisionOptions, settings.ModelOptions)
_BASES += (settings.LongTextOptions, settings.PaddingOptions, settings.SplitOptions)


@dataclass(kw_only=True)
class FinetuneOptions(*_BASES):
    """Everything ``gpt-classifier train`` takes."""

    trainable: str | None = opt("head | last-block | last-blocks:N | all | lora.", preset=True)
    lora_rank: int = opt("LoRA's rank (--trainable lora).", 16, min=1)
    lora_alpha: float = opt("LoRA's scale numerator (--trainable lora).", 16.0)
    causal_mask: bool = opt(
        "--no-causal-mask lets every token see every other (the book's bonus row 17).", True
    )
    pooling: str | None = opt("Which position feeds the head.", choices=POOLINGS, preset=True)
    epochs: int | None = opt("Passes over the training split.", min=1, preset=True)
    batch_size: int | None = opt(
        "Texts per batch (per process under torchrun).", min=1, preset=True
    )
    lr: float | None = opt("AdamW learning rate.", preset=True)
    weight_decay: float | None = opt("AdamW weight decay.", preset=True)
    eval_freq: int | None = opt("Steps between loss evaluations.", min=1, preset=True)
    eval_iter: int | None = opt("Batches per evaluation.", min=1, preset=True)
    grad_accum_steps: int | None = opt(
        "Batches per optimizer step.", flag="--grad-accum", min=1, preset=True
    )
    select_best: bool | None = opt(
        "Keep the epoch with the best validation accuracy, or the last.",
        flag="--select-best/--last-epoch",
        preset=True,
    )
    prefix_cache: bool = opt("Run the frozen blocks once per example, train only the rest.", True)
    disk_cache: bool = opt(
        "Keep the frozen blocks' states on disk for the next run on the same data and model.", True
    )
    plots: bool = opt("Loss, accuracy and confusion-matrix plots in the run.", True)
    save: str = opt(
        "full: every weight; trainable: the trained ones and a reference to the base weights.",
        "full",
        choices=SAVE_LAYOUTS,
    )
    progress: bool = opt("Progress bars on stderr.", True)
    checkpoint_every: int | None = opt(
        "Also checkpoint every N optimizer steps (always: after every epoch).", min=1
    )
    overwrite: bool = opt("Replace an existing run (or non-empty folder) at --output-dir.", False)
    output_dir: str | os.PathLike[str] = opt(
        "Run directory to create.", "runs/sms-spam", path="any", cli_default=None
    )
    dist_timeout: float | None = opt(
        "Under torchrun: seconds to wait for a peer process (to join, or in a collective) "
        f"before stopping with an error (default: ${DIST_TIMEOUT_ENV} or "
        f"{DEFAULT_DIST_TIMEOUT_S:g}).",
        min=0,
        min_open=True,
    )
    resume: bool = opt("Continue the interrupted run in output_dir.", False, cli=False)

    def to_dict(self) -> dict[str, Any]:
        """The options, every path made absolute so a resume works from any folder."""
        values = {**dataclasses.asdict(self), "output_dir": str(self.output_dir)}
        for f in dataclasses.fields(self):
            value = values[f.name]
            is_path = f.metadata.get("path") or (f.name == "model" and Path(value).is_file())
            if is_path and isinstance(value, str):
                values[f.name] = os.path.abspath(os.path.expanduser(value))
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FinetuneOptions:
        if unknown := sorted(set(values) - {f.name for f in dataclasses.fields(cls)}):
            raise GPTClassifierError(f"unknown training options {unknown}")
        if isinstance(values.get("fractions"), list):
            values = {**values, "fractions": tuple(values["fractions"])}
        return cls(**values)

    @property
    def output_path(self) -> Path:
        return Path(self.output_dir).expanduser()

    def resolved(self) -> ResolvedRecipe:
        """The preset overridden by every option given, parsed; every problem in one error."""
        values = over_preset(self, _CHOICE_KEYS + _TRAIN_KEYS)
        long_text = (self.long_text, self.head_fraction, self.chunk_stride, self.max_chunks)
        parsers = {
            "trainable": lambda: parse_trainable(values["trainable"]),
            "padding": lambda: parse_padding(values["padding"]),
            "pooling": lambda: validate_pooling(values["pooling"]),
            "train": lambda: TrainSettings(**{key: values[key] for key in _TRAIN_KEYS}),
            "fractions": lambda: parse_fractions(self.fractions),
            "long_text": lambda: LongText(*long_text),
            "device": lambda: rank_device(context_from_env(), resolve_device(self.device)),
            "precision": lambda: resolve_precision(self.precision, parsed["device"]),
            "config": lambda: resolve_config(self.model),
        }
        if self.weights is not None and is_model_name(self.model):
            del parsers["config"]  # the one stored with the weights
        problems: list[str] = []
        parsed: dict[str, Any] = {"device": torch.device("cpu")}  # precision's, if device fails
        for key, parse in parsers.items():
            try:
                parsed[key] = parse()
            except GPTClassifierError as exc:
                problems.append(str(exc))
        if values["balance"] not in BALANCE_METHODS:
            valid = ", ".join(BALANCE_METHODS)
            problems.append(f"unknown balance {values['balance']!r}; valid: {valid}")
        run_rules = {"lora_rank": "a positive integer", "lora_alpha": "a positive finite number"}
        run_rules.update(checkpoint_every=">= 1", dist_timeout="positive")
        problems += rule_problems(self, run_rules)
        per_batch = (values["pooling"], values["padding"]) == ("last", "batch")
        if self.long_text != "truncate" and per_batch:
            problems.append(
                "--long-text with --pooling last needs a fixed padding (longest-train, fixed:N or "
                "context): a text's last window would otherwise be read at a padding position"
            )
        if problems:
            raise GPTClassifierError("; ".join(problems))
        keep_duplicates = bool(values["keep_duplicates"])
        return ResolvedRecipe(keep_duplicates=keep_duplicates, balance=values["balance"], **parsed)


@dataclass(frozen=True)
class ResolvedRecipe:
    """One run's choices, parsed once: what every later stage reads."""

    padding: Padding
    pooling: Pooling
    trainable: TrainableSpec
    keep_duplicates: bool
    balance: str
    train: TrainSettings
    fractions: tuple[float, float, float]
    device: torch.device  # this process's (under torchrun: its own GPU)
    precision: str  # fp32 or bf16
    config: GPTConfig | None = None  # None: the one stored with --weights
    long_text: LongText = LongText()
