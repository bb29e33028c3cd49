"""Training checkpoints in the run's staging folder, so ``train --resume RUN`` ends the same."""

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from ..errors import GPTClassifierError
from ..evaluation.history import TrainingHistory
from ..faults import crash_point
from ..fileio import atomic_path, write_json


@dataclass
class LoopState:
    """Where the loop stands: enough to continue exactly where it stopped."""

    epoch: int = 0  # the epoch under way (0-based)
    batch_index: int = 0  # batches of that epoch already trained on
    global_step: int = -1  # the book's counter: the first evaluation happens after the first step
    examples_seen: int = 0
    running_loss: float = 0.0  # this epoch's summed loss, for the progress bar and the log
    running_seen: int = 0
    history: TrainingHistory = field(default_factory=TrainingHistory)
    step_losses: list[float] = field(default_factory=list)
    best_val_acc: float = -1.0
    best_epoch: int | None = None
    best_state: list[torch.Tensor] | None = None
    # the loader's shuffle generator at this epoch's start (to redraw its order on resume) and now
    epoch_start_rng: torch.Tensor | None = None
    loader_rngs: dict[str, torch.Tensor] = field(default_factory=dict)
    torch_rng: torch.Tensor | None = None  # dropout's generator


STATE_FILE = "state.pt"
OPTIONS_FILE = "options.json"
CHECKPOINT_FORMAT = 1


def save_checkpoint(
    folder: Path, model: nn.Module, optimizer: Optimizer, state: LoopState, fingerprint: str
) -> None:
    """One file, replaced atomically: a kill at any moment leaves the previous checkpoint."""
    weights = {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}
    payload = {"format": CHECKPOINT_FORMAT, "fingerprint": fingerprint, "weights": weights}
    payload.update(loop=asdict(state), optimizer=optimizer.state_dict())
    with atomic_path(folder / STATE_FILE) as partial, partial.open("wb") as handle:
        failed: list[OSError] = []  # torch words a full disk as "unexpected pos": keep the real one

        def write(data: bytes) -> int:
            try:
                return handle.write(data)
            except OSError as exc:
                failed.append(exc)
                raise

        try:
            torch.save(payload, SimpleNamespace(write=write, flush=handle.flush))
        except RuntimeError as exc:
            raise (failed[0] if failed else exc) from None
        crash_point("checkpoint-written")
    crash_point("checkpoint")


def save_options(folder: Path, options: dict[str, Any]) -> None:
    write_json(folder / OPTIONS_FILE, options)


def read_options(folder: Path) -> dict[str, Any]:
    path = folder / OPTIONS_FILE
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GPTClassifierError(f"no interrupted run to resume: {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise GPTClassifierError(f"{path} is unreadable ({exc})") from None
    if not isinstance(values, dict):
        raise GPTClassifierError(f"{path} must hold a JSON object")
    return values


def has_checkpoint(folder: Path) -> bool:
    return (folder / STATE_FILE).is_file()


def load_checkpoint(folder: Path, model: nn.Module, optimizer: Optimizer, digest: str) -> LoopState:
    """Put the checkpoint's weights and optimizer state back; return the loop's state."""
    path = folder / STATE_FILE
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged pickle/zip
        raise GPTClassifierError(f"{path} is corrupt ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise GPTClassifierError(f"{path} is not a checkpoint of this version")
    if payload.get("fingerprint") != digest:  # data_fingerprint of this run
        raise GPTClassifierError(
            f"{path} was made from other data or another base model than this run's; "
            "start again with --overwrite"
        )
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in payload["weights"].items():
            if name not in params or params[name].shape != value.shape:
                raise GPTClassifierError(f"{path} does not match the model ({name})")
            params[name].copy_(value)
    optimizer.load_state_dict(payload["optimizer"])
    history = TrainingHistory.from_dict(payload["loop"]["history"], source=str(path))
    return LoopState(**{**payload["loop"], "history": history})


def data_fingerprint(*parts: Any) -> str:
    """A digest of what the checkpoint's weights depend on besides the options."""
    return hashlib.sha256(b"".join(repr(part).encode() + b"\0" for part in parts)).hexdigest()
