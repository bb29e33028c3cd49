"""The training loop: the book's ``train_classifier_simple`` and the one the CLI runs around it."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from ..evaluation.history import TrainingHistory
from .losses import calc_accuracy_loader, calc_loss_batch, evaluate_model, unpack_batch
from .settings import TrainSettings


@dataclass
class TrainResult:
    history: TrainingHistory
    examples_seen: int = 0
    global_steps: int = 0
    epochs_completed: int = 0
    interrupted: bool = False  # Ctrl-C: the model holds the weights of the last finished step
    best_epoch: int | None = None  # with select_best: the epoch whose weights were kept (1-based)
    step_losses: list[float] = field(default_factory=list)


def train_classifier(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable,
    optimizer: torch.optim.Optimizer,
    device: torch.device | str,
    settings: TrainSettings,
    *,
    autocast: Callable[[], object] | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """The book's loop (evaluate on ``eval_iter`` batches every ``eval_freq`` steps, accuracy
    on ``eval_iter`` batches after each epoch) plus gradient accumulation, a progress bar,
    best-epoch selection and a clean stop on Ctrl-C.

    ``autocast`` returns a context manager wrapped around every forward pass (bf16 autocast).
    """
    amp = autocast or contextlib.nullcontext
    history = TrainingHistory()
    result = TrainResult(history=history)
    steps_per_epoch = len(train_loader) if isinstance(train_loader, Sized) else None
    accum = settings.grad_accum_steps
    best_val_acc, best_state = -1.0, None
    global_step = -1  # the book's counter: the first evaluation happens after the first step
    examples_seen = 0
    trainable = [p for p in model.parameters() if p.requires_grad]

    def say(message: str) -> None:
        (log or (lambda m: print(m, file=sys.stderr)))(message)

    try:
        for epoch in range(settings.epochs):
            model.train()
            bar = tqdm(
                total=steps_per_epoch,
                desc=f"epoch {epoch + 1}/{settings.epochs}",
                disable=not progress,
                file=sys.stderr,
                leave=False,
                dynamic_ncols=True,
            )
            running_loss, running_seen = 0.0, 0
            optimizer.zero_grad(set_to_none=True)
            for batch_index, batch in enumerate(train_loader):
                inputs, targets, lengths = unpack_batch(batch)
                with amp():
                    loss = calc_loss_batch(inputs, targets, model, device, lengths)
                (loss / accum if accum > 1 else loss).backward()
                last_in_epoch = steps_per_epoch is not None and batch_index + 1 == steps_per_epoch
                if (batch_index + 1) % accum == 0 or last_in_epoch:
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                examples_seen += inputs.shape[0]
                global_step += 1
                result.step_losses.append(loss.item())
                running_loss += loss.item() * inputs.shape[0]
                running_seen += inputs.shape[0]
                bar.update(1)
                bar.set_postfix(loss=f"{running_loss / running_seen:.3f}")

                if global_step % settings.eval_freq == 0:
                    with amp():
                        train_loss, val_loss = evaluate_model(
                            model, train_loader, val_loader, device, settings.eval_iter
                        )
                    epoch_position = epoch + (
                        (batch_index + 1) / steps_per_epoch if steps_per_epoch else 0.0
                    )
                    history.record_losses(epoch_position, examples_seen, train_loss, val_loss)
                    bar.set_postfix(
                        loss=f"{running_loss / running_seen:.3f}", val=f"{val_loss:.3f}"
                    )
                    if not progress:
                        say(
                            f"ep {epoch + 1} (step {global_step:06d}): "
                            f"train loss {train_loss:.3f}, val loss {val_loss:.3f}"
                        )
            bar.close()
            model.eval()
            with amp():
                train_acc = calc_accuracy_loader(
                    train_loader, model, device, num_batches=settings.eval_iter
                )
                val_acc = calc_accuracy_loader(
                    val_loader, model, device, num_batches=settings.eval_iter
                )
            history.record_accuracies(epoch + 1, examples_seen, train_acc, val_acc)
            result.epochs_completed = epoch + 1
            mean_loss = running_loss / max(running_seen, 1)
            say(
                f"epoch {epoch + 1}/{settings.epochs}: train loss {mean_loss:.4f}, "
                f"accuracy on {settings.eval_iter} batches: train {train_acc * 100:.2f} %, "
                f"validation {val_acc * 100:.2f} %"
            )
            if settings.select_best:
                with amp():
                    full_val_acc = calc_accuracy_loader(val_loader, model, device)
                if full_val_acc > best_val_acc:
                    best_val_acc, result.best_epoch = full_val_acc, epoch + 1
                    best_state = [p.detach().clone() for p in trainable]
    except KeyboardInterrupt:
        result.interrupted = True
        say("interrupted: keeping the weights of the last finished step")
    finally:
        model.eval()
    if settings.select_best and best_state is not None and not result.interrupted:
        with torch.no_grad():
            for param, saved in zip(trainable, best_state, strict=True):
                param.copy_(saved)
        say(f"kept epoch {result.best_epoch} (best validation accuracy {best_val_acc * 100:.2f} %)")
    result.examples_seen = examples_seen
    result.global_steps = global_step + 1
    return result


def train_classifier_simple(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable,
    optimizer: torch.optim.Optimizer,
    device: torch.device | str,
    num_epochs: int,
    eval_freq: int,
    eval_iter: int,
) -> tuple[list[float], list[float], list[float], list[float], int]:
    """The book's signature and return values: ``train_losses, val_losses, train_accs, val_accs,
    examples_seen``."""
    settings = TrainSettings(epochs=num_epochs, eval_freq=eval_freq, eval_iter=eval_iter)
    result = train_classifier(
        model, train_loader, val_loader, optimizer, device, settings, progress=False
    )
    h = result.history
    return h.train_losses, h.val_losses, h.train_accs, h.val_accs, result.examples_seen
