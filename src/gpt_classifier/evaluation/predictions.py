"""Predictions over a loader and the metrics of one split, for our classifier or the book's."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..distributed import DistContext
from ..model import GPTModel
from ..precision import autocast
from .metrics import classification_metrics

# Rows per batch of the final report and of ``evaluate``: the same batches, the same numbers.
EVAL_BATCH_SIZE = 32

Tensors = tuple[Tensor, Tensor, Tensor | None, Tensor | None]


def unpack_batch(batch: Sequence[Any]) -> Tensors:
    """``(inputs, targets, lengths or None, owners or None)`` from a book batch or one of ours."""
    return batch[0], batch[1], *(batch[i] if len(batch) > i else None for i in (2, 4))


def classifier_logits(
    model: nn.Module, inputs: Tensor, lengths: Tensor | None = None, owners: Tensor | None = None
) -> Tensor:
    """Class logits ``(batch, num_classes)``, one row per text."""
    if isinstance(model, GPTModel):  # the book: logits of the last output token
        return model(inputs)[:, -1, :]
    windows = {} if owners is None else {"owners": owners}  # a cached-states suffix takes none
    return model(inputs, lengths, **windows)


def predict_loader(
    data_loader: Iterable, model: nn.Module, device: torch.device | str
) -> tuple[Tensor, Tensor, float]:
    """Targets ``(N,)``, class probabilities ``(N, C)`` and the mean loss over examples."""
    targets_all, probs_all, loss_sum = [], [], 0.0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for batch in data_loader:
            inputs, targets, lengths, owners = unpack_batch(batch)
            logits = classifier_logits(model, inputs.to(device), lengths, owners).float()
            targets = targets.to(device)
            loss_sum += F.cross_entropy(logits, targets, reduction="sum").item()
            targets_all.append(targets.cpu())
            probs_all.append(torch.softmax(logits, dim=-1).cpu())
    model.train(was_training)
    if not targets_all:
        return torch.empty(0, dtype=torch.long), torch.empty(0, 0), float("nan")
    targets = torch.cat(targets_all)
    return targets, torch.cat(probs_all), loss_sum / len(targets)


def evaluate_split(
    model: nn.Module,
    loader: Iterable,
    device: torch.device,
    precision: str,
    classes: Sequence[str],
    ctx: DistContext | None = None,
) -> dict[str, Any]:
    """The one path behind ``metrics.json`` and ``evaluate``; under torchrun, gathers all ranks'."""
    with autocast(device, precision):
        targets, probabilities, loss = predict_loader(loader, model, device)
    if ctx is not None and ctx.enabled:
        gathered = ctx.gather_objects((targets, probabilities, loss * len(targets)))
        parts = [part for part in gathered if len(part[0])]
        targets, probabilities = (torch.cat([part[i] for part in parts]) for i in (0, 1))
        loss = sum(part[2] for part in parts) / len(targets)
    predicted = probabilities.argmax(dim=-1).numpy()
    return classification_metrics(targets.numpy(), predicted, classes, probabilities.numpy(), loss)
