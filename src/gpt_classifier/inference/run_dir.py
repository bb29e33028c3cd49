"""A run directory: the fine-tuned weights plus everything needed to use them again.

``run.json`` (base model config, classes, pooling, padding, tokenizer, training settings),
``model.safetensors``, ``metrics.json``, ``report.txt``, ``history.json``, plots and ``data/``
(the splits) sit side by side; ``load_run`` rebuilds the classifier from the first two.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .. import __version__
from ..classifier import GPTClassifier
from ..classifier.lora import has_lora, merge_lora
from ..config import GPTConfig
from ..errors import GPTClassifierError
from ..fileio import atomic_path, write_json
from ..model import GPTModel
from .transaction import StagedRun, check_output_dir, missing_run_hint, verify_files

RUN_FORMAT = "gpt-classifier-run"
RUN_FORMAT_VERSION = 2  # 2: complete runs carry run-complete.json
RUN_FILE = "run.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class RunInfo:
    """What a run directory says about its model (``run.json``)."""

    gpt_config: GPTConfig
    classes: tuple[str, ...]
    pooling: str
    padding: str
    max_length: int  # texts are cut to this many tokens
    pad_length: int | None  # every input padded to this length (None: per batch)
    base_model: str = "gpt2"
    init: str = "pretrained"
    tokenizer: str = "gpt2"
    pad_token_id: int = 50256
    extra: dict[str, Any] | None = None  # training settings, data summary, timings

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RUN_FORMAT,
            "format_version": RUN_FORMAT_VERSION,
            "package_version": __version__,
            "model": {
                "base_model": self.base_model,
                "init": self.init,
                "gpt_config": self.gpt_config.to_dict(),
            },
            "classifier": {
                "classes": list(self.classes),
                "num_classes": len(self.classes),
                "pooling": self.pooling,
            },
            "inputs": {
                "tokenizer": self.tokenizer,
                "padding": self.padding,
                "max_length": self.max_length,
                "pad_length": self.pad_length,
                "pad_token_id": self.pad_token_id,
            },
            **(self.extra or {}),
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str) -> RunInfo:
        if values.get("format") != RUN_FORMAT:
            raise GPTClassifierError(f"{source} is not a gpt-classifier run file")
        version = values.get("format_version")
        if version != RUN_FORMAT_VERSION:
            raise GPTClassifierError(
                f"{source} was written by another version of gpt-classifier (run format "
                f"{version!r}, this version reads {RUN_FORMAT_VERSION}); train the model again"
            )
        try:
            model, classifier, inputs = values["model"], values["classifier"], values["inputs"]
            known = {"model", "classifier", "inputs", "format", "format_version"}
            return cls(
                gpt_config=GPTConfig.from_dict(model["gpt_config"], source=source),
                classes=tuple(str(c) for c in classifier["classes"]),
                pooling=str(classifier["pooling"]),
                padding=str(inputs["padding"]),
                max_length=int(inputs["max_length"]),
                pad_length=None if inputs["pad_length"] is None else int(inputs["pad_length"]),
                base_model=str(model.get("base_model", "")),
                init=str(model.get("init", "")),
                tokenizer=str(inputs.get("tokenizer", "gpt2")),
                pad_token_id=int(inputs.get("pad_token_id", 50256)),
                extra={k: v for k, v in values.items() if k not in known},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise GPTClassifierError(f"{source} is incomplete or malformed ({exc!r})") from None


@dataclass
class LoadedRun:
    model: GPTClassifier
    info: RunInfo
    directory: Path


def write_model_files(model: GPTClassifier, info: RunInfo, folder: Path) -> None:
    """``model.safetensors`` (LoRA adapters merged first) and ``run.json`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    if has_lora(model):
        merge_lora(model)
    state = {name: t.detach().contiguous().cpu() for name, t in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS_FILE) as partial:
        save_file(state, str(partial), metadata={"format": RUN_FORMAT, "version": __version__})
    write_json(folder / RUN_FILE, info.to_dict())


def save_run(
    model: GPTClassifier,
    info: RunInfo,
    directory: str | os.PathLike[str],
    *,
    overwrite: bool = False,
) -> Path:
    """Save ``model`` as a complete run directory, in one transaction (see ``transaction``).

    An existing non-empty ``directory`` is replaced only with ``overwrite``.
    """
    target = check_output_dir(directory, overwrite=overwrite)
    staged = StagedRun(target).start()
    try:
        write_model_files(model, info, staged.folder)
        return staged.commit()
    except BaseException:
        staged.discard()
        raise


def read_run_info(directory: str | os.PathLike[str]) -> RunInfo:
    folder = Path(directory)
    if not folder.is_dir():
        raise GPTClassifierError(f"run directory not found: {folder}{missing_run_hint(folder)}")
    run_file = folder / RUN_FILE
    if not run_file.is_file():
        raise GPTClassifierError(
            f"{folder} is not a gpt-classifier run directory (no {RUN_FILE}); "
            "pass the --output-dir of a `gpt-classifier train` run"
        )
    verify_files(folder, [RUN_FILE])
    try:
        values = json.loads(run_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GPTClassifierError(f"{run_file} is not valid JSON ({exc})") from None
    if not isinstance(values, dict):
        raise GPTClassifierError(f"{run_file} must hold a JSON object")
    return RunInfo.from_dict(values, str(run_file))


def load_run(directory: str | os.PathLike[str], device: str | torch.device = "cpu") -> LoadedRun:
    """The classifier saved in ``directory``, in eval mode on ``device``."""
    folder = Path(directory)
    info = read_run_info(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise GPTClassifierError(f"{folder} has no {WEIGHTS_FILE}")
    verify_files(folder, [WEIGHTS_FILE])
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise GPTClassifierError(f"{weights} is corrupt or truncated ({exc})") from None
    with torch.device("meta"):
        gpt = GPTModel(info.gpt_config)
        model = GPTClassifier(gpt, len(info.classes), pooling=info.pooling)
    expected = model.state_dict()
    head = state.get("gpt.out_head.weight")
    if head is not None and head.shape[0] != len(info.classes):
        raise GPTClassifierError(
            f"{weights} has a head for {head.shape[0]} classes but {RUN_FILE} lists "
            f"{len(info.classes)} ({', '.join(info.classes)})"
        )
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        problem = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise GPTClassifierError(f"{weights} does not match {RUN_FILE}: {problem}")
    for name, tensor in expected.items():
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise GPTClassifierError(
                f"{weights}: tensor {name} has shape {tuple(state[name].shape)}, "
                f"expected {tuple(tensor.shape)}"
            )
    model.load_state_dict(state, assign=True)
    model.to(device).eval()
    for param in model.parameters():
        param.requires_grad_(False)
    model.run_info = info  # classify_review reads the trained lengths and class names from it
    return LoadedRun(model=model, info=info, directory=folder)
