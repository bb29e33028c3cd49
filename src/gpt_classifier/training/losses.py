"""The book's loss and accuracy functions (ch. 6), for our classifier and for the book's model."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..evaluation.predictions import classifier_logits, unpack_batch

Device = torch.device | str


def calc_loss_batch(
    input_batch: torch.Tensor,
    target_batch: torch.Tensor,
    model: nn.Module,
    device: Device,
    lengths: torch.Tensor | None = None,
    owners: torch.Tensor | None = None,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy of one batch (the book's), its mean weighted by ``class_weights``."""
    logits = classifier_logits(model, input_batch.to(device), lengths, owners)
    weight = None if class_weights is None else class_weights.to(logits.device)
    return F.cross_entropy(logits.float(), target_batch.to(device), weight=weight)


def _batches(data_loader: Iterable, num_batches: int | None) -> Iterator[tuple]:
    for i, batch in enumerate(data_loader):  # as the book's loop: draws one batch more
        if num_batches is not None and i >= num_batches:
            break
        yield unpack_batch(batch)


def calc_loss_loader(
    data_loader: Iterable, model: nn.Module, device: Device, num_batches: int | None = None
) -> float:
    """Mean batch loss over the first ``num_batches`` batches (all when ``None``), as the book."""
    if num_batches == 0 or len(data_loader) == 0:  # type: ignore[arg-type]
        return float("nan")
    with torch.no_grad():
        losses = [
            calc_loss_batch(inputs, targets, model, device, lengths, owners).item()
            for inputs, targets, lengths, owners in _batches(data_loader, num_batches)
        ]
    return sum(losses) / len(losses)


def calc_accuracy_loader(
    data_loader: Iterable, model: nn.Module, device: Device, num_batches: int | None = None
) -> float:
    """Share of correct argmax predictions (fraction of 1) over ``num_batches`` batches."""
    correct, seen = 0, 0
    with torch.no_grad():
        for inputs, targets, lengths, owners in _batches(data_loader, num_batches):
            predicted = classifier_logits(model, inputs.to(device), lengths, owners).argmax(-1)
            seen += predicted.shape[0]
            correct += (predicted == targets.to(device)).sum().item()
    return correct / seen if seen else float("nan")


def evaluate_model(
    model: nn.Module, train_loader: Iterable, val_loader: Iterable, device: Device, eval_iter: int
) -> tuple[float, float]:
    """Train and validation loss on ``eval_iter`` batches each, in eval mode (the book's)."""
    was_training = model.training
    model.eval()
    train_loss = calc_loss_loader(train_loader, model, device, num_batches=eval_iter)
    val_loss = calc_loss_loader(val_loader, model, device, num_batches=eval_iter)
    model.train(was_training)
    return train_loss, val_loss
