"""``--save trainable``: the trained tensors alone (``trained.safetensors``) and, in run.json's
``model.base_weights``, the base they go over with its sha256 (see docs/design.md)."""

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .. import weights
from ..classifier import GPTClassifier, apply_trainable
from ..classifier.lora import merge_lora
from ..config import GPTConfig, canonical_model_name, is_model_name
from ..errors import GPTClassifierError
from ..fileio import sha256_of

if TYPE_CHECKING:
    from .run_dir import RunInfo

SAVE_LAYOUTS = ("full", "trainable")
TRAINED_FILE = "trained.safetensors"
RANDOM_BASE = "random"


def base_weights_record(
    model: str | GPTConfig, weights_path: str | None, init: str, seed: int
) -> dict[str, Any]:
    """``model.base_weights`` of a run trained from these ``build_lazy_model`` arguments."""
    if init == RANDOM_BASE:
        lazy = weights.lazy_weights_of(weights.build_lazy_model(model, init=RANDOM_BASE, seed=seed))
        return {"source": RANDOM_BASE, "seed": seed, "sha256": _drawn_digest(lazy)}
    source = os.path.abspath(os.path.expanduser(weights_path)) if weights_path else str(model)
    source = canonical_model_name(source) if is_model_name(source) else source
    return {"source": source, "sha256": _files_digest(weights.locate_weights(source)[0])}


def check_state(
    state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], path: Path, against: str
) -> dict[str, torch.Tensor]:
    """``state`` with the ``expected`` names and shapes, as finite float32 tensors."""
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        problem = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise GPTClassifierError(f"{path} does not match {against}: {problem}")
    checked = {}
    for name, tensor in ((name, state[name]) for name in expected):
        if (shape := tuple(tensor.shape)) != (want := tuple(expected[name].shape)):
            raise GPTClassifierError(f"{path}: tensor {name} has shape {shape}, expected {want}")
        if not tensor.dtype.is_floating_point:
            dtype = str(tensor.dtype).removeprefix("torch.")
            raise GPTClassifierError(
                f"{path}: tensor {name} has dtype {dtype}; weights must be float32"
            )
        checked[name] = tensor.to(torch.float32)  # float64 beyond float32's range: inf, refused
        if not bool(torch.isfinite(checked[name]).all()):
            raise GPTClassifierError(
                f"{path}: tensor {name} holds NaN or infinite values (a diverged training run "
                "or a corrupt file); train the model again"
            )
    return checked


def load_trainable(
    state: dict[str, torch.Tensor], info: "RunInfo", moved_base: str | None, path: Path
) -> GPTClassifier:
    """The run's base (from ``moved_base`` if given) with the trained tensors ``state`` over it."""
    base, extra, cfg = info.base_weights or {}, info.extra or {}, info.gpt_config
    if base["source"] == RANDOM_BASE:
        gpt = weights.build_lazy_model(cfg, init=RANDOM_BASE, seed=base["seed"])
    else:
        source, expected = moved_base or base["source"], base["sha256"]
        named = f"base weights {base['source']} (sha256 {expected[:12]}…)"
        fetch = f"run `gpt-classifier download {source}` or " if is_model_name(source) else ""
        try:
            files = weights.locate_weights(source)[0]
        except GPTClassifierError as exc:
            raise GPTClassifierError(
                f"{named} not found ({exc}); {fetch}pass --weights PATH to a copy of them"
            ) from None
        if (actual := _files_digest(files)) != expected:
            raise GPTClassifierError(
                f"{source} has sha256 {actual[:12]}…, not the run's {named}; "
                "pass --weights PATH to the weights the run was trained on"
            )
        gpt = weights.open_pretrained(source, config=cfg)
    lazy = weights.lazy_weights_of(gpt)
    model = GPTClassifier(gpt, len(info.classes), pooling=info.pooling)
    weights.materialize_model(gpt)
    if base["source"] == RANDOM_BASE and _drawn_digest(lazy) != base["sha256"]:
        raise GPTClassifierError(
            f"the random base weights drawn from seed {base['seed']} differ from those the run "
            "was trained on (another torch version?); retrain with --save full"
        )
    lora = extra.get("lora") or {}
    rank, alpha = int(lora.get("rank", 16)), float(lora.get("alpha", 16.0))
    apply_trainable(model, str(extra.get("trainable", "all")), lora_rank=rank, lora_alpha=alpha)
    expected = {name: p for name, p in model.named_parameters() if p.requires_grad}
    with torch.no_grad():
        for name, value in check_state(state, expected, path, "run.json's trainable").items():
            expected[name].copy_(value)
    merge_lora(model)  # if the run trained LoRA adapters
    return model


def _files_digest(files: list[Path]) -> str:
    if len(files) == 1:
        return sha256_of(files[0])
    lines = "".join(f"{sha256_of(file)}  {file.name}\n" for file in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def _drawn_digest(lazy: weights.LazyWeights | None) -> str:
    """The sha256 of every base tensor, module by module (drawn now, or as materialised)."""
    assert lazy is not None
    digest = hashlib.sha256()
    for name in lazy.names:
        for _, tensor in lazy.stream(name):
            digest.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()
