"""Predictions over a loader and the metrics of one split. ``model`` is a ``GPTClassifier``
(or a suffix of one fed cached states) or the book's ``GPTModel`` with a class-sized
``out_head``; batches are the book's ``(inputs, targets)`` or ours, with ``lengths`` third."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import DistContext
from ..model import GPTModel
from ..precision import autocast
from .metrics import classification_metrics

# Rows per batch of the final report and of ``evaluate``: the same batches, the same numbers.
EVAL_BATCH_SIZE = 32

Tensors = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]


def unpack_batch(batch: Sequence[Any]) -> Tensors:
    """``(inputs, targets, lengths or None, owners or None)`` from a book batch or one of ours
    (``owners``: rows that are windows, with one target per text)."""
    return batch[0], batch[1], *(batch[i] if len(batch) > i else None for i in (2, 4))


def classifier_logits(
    model: nn.Module,
    input_batch: torch.Tensor,
    lengths: torch.Tensor | None = None,
    owners: torch.Tensor | None = None,
) -> torch.Tensor:
    """Class logits ``(batch, num_classes)``, one row per text."""
    if isinstance(model, GPTModel):  # the book: logits of the last output token
        return model(input_batch)[:, -1, :]
    windows = {} if owners is None else {"owners": owners}  # a cached-states suffix takes none
    return model(input_batch, lengths, **windows)


def predict_loader(
    data_loader: Iterable, model: nn.Module, device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Targets ``(N,)``, class probabilities ``(N, C)`` and the mean loss over examples."""
    targets_all, probs_all, loss_sum, seen = [], [], 0.0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for batch in data_loader:
            inputs, targets, lengths, owners = unpack_batch(batch)
            logits = classifier_logits(model, inputs.to(device), lengths, owners).float()
            targets = targets.to(device)
            loss_sum += F.cross_entropy(logits, targets, reduction="sum").item()
            seen += targets.shape[0]
            targets_all.append(targets.cpu())
            probs_all.append(torch.softmax(logits, dim=-1).cpu())
    model.train(was_training)
    if not seen:
        return torch.empty(0, dtype=torch.long), torch.empty(0, 0), float("nan")
    return torch.cat(targets_all), torch.cat(probs_all), loss_sum / seen


def evaluate_split(
    model: nn.Module,
    loader: Iterable,
    device: torch.device,
    precision: str,
    classes: Sequence[str],
    ctx: DistContext | None = None,
) -> dict[str, Any]:
    """The one path behind ``metrics.json`` and ``gpt-classifier evaluate``, so the two agree.
    Under ``torchrun`` (``ctx``) ``loader`` holds this rank's share of the batches and every
    rank's predictions are gathered: the metrics of one process (the loss up to summing order)."""
    with autocast(device, precision):
        targets, probabilities, loss = predict_loader(loader, model, device)
    if ctx is not None and ctx.enabled:
        loss_sum = loss * len(targets) if len(targets) else 0.0
        parts = [
            part for part in ctx.gather_objects((targets, probabilities, loss_sum)) if len(part[0])
        ]
        targets, probabilities = (torch.cat([part[i] for part in parts]) for i in (0, 1))
        loss = sum(part[2] for part in parts) / len(targets)
    predicted = probabilities.argmax(dim=-1).numpy()
    return classification_metrics(
        targets.numpy(), predicted, list(classes), probabilities.numpy(), loss
    )
