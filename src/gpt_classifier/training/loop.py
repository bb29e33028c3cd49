"""The training loop: the book's ``train_classifier_simple`` and the resumable one of ``train``."""

from __future__ import annotations

import contextlib
import functools
import math
import sys
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..distributed import DistContext, unwrap
from ..errors import GPTClassifierError
from ..evaluation.history import TrainingHistory
from ..progress import progress_bar
from ..runs.checkpoint import LoopState
from .losses import calc_accuracy_loader, calc_loss_batch, evaluate_model, unpack_batch
from .settings import TrainSettings


class TrainingDiverged(GPTClassifierError):
    """A loss or a weight became NaN or infinite."""


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
    state: LoopState | None = None,
    on_checkpoint: Callable[[LoopState], None] | None = None,
    checkpoint_every: int | None = None,
    dist: DistContext | None = None,
    train_eval_loader: Iterable | None = None,
    class_weights: torch.Tensor | None = None,
) -> TrainResult:
    """The book's loop plus gradient accumulation, best-epoch selection, checkpoints, resuming,
    a clean stop on Ctrl-C and an error on a NaN or infinite loss; class weights optimised only."""
    return _Loop(**locals()).fit()


@dataclass
class _Loop:  # train_classifier's parameters, by name
    model: nn.Module
    train_loader: Iterable
    val_loader: Iterable
    optimizer: torch.optim.Optimizer
    device: torch.device | str
    settings: TrainSettings
    autocast: Callable[[], object] | None
    progress: bool
    log: Callable[[str], None] | None
    state: LoopState | None
    on_checkpoint: Callable[[LoopState], None] | None
    checkpoint_every: int | None
    dist: DistContext | None
    train_eval_loader: Iterable | None
    class_weights: torch.Tensor | None

    def __post_init__(self) -> None:
        self.train, self.val = self.train_loader, self.val_loader
        self.train_eval = self.train if self.train_eval_loader is None else self.train_eval_loader
        self.amp = self.autocast or contextlib.nullcontext
        self.say = self.log or (lambda message: print(message, file=sys.stderr))
        self.dist = self.dist or DistContext()
        self.eval_model = unwrap(self.model)  # estimates need no gradient synchronisation
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.steps_per_epoch = len(self.train) if isinstance(self.train, Sized) else None
        # the generators that shuffle the loaders (ours, or ones wrapped by the prefix cache)
        loaders = {"train": self.train, "validation": self.val}
        inner = {name: getattr(loader, "token_loader", loader) for name, loader in loaders.items()}
        found = {name: getattr(loader, "generator", None) for name, loader in inner.items()}
        self.generators = {name: gen for name, gen in found.items() if gen is not None}

    def fit(self) -> TrainResult:
        state = self.state or LoopState()
        self._restore_rngs(state)
        interrupted = False
        try:
            while state.epoch < self.settings.epochs:
                self._run_epoch(state)
                state.epoch, state.batch_index = state.epoch + 1, 0
                state.running_loss, state.running_seen = 0.0, 0
                self._checkpoint(state)
        except KeyboardInterrupt:
            if self.dist.enabled:  # the other ranks cannot stop at the same step: resume instead
                raise
            interrupted = True
            self.say("interrupted: keeping the weights of the last finished step")
        finally:
            self.model.eval()
        self._check_weights()
        if self.settings.select_best and state.best_state is not None and not interrupted:
            with torch.no_grad():
                for param, saved in zip(self.trainable, state.best_state, strict=True):
                    param.copy_(saved)
            best = f"best validation accuracy {state.best_val_acc * 100:.2f} %"
            self.say(f"kept epoch {state.best_epoch} ({best})")
        best, steps = None if interrupted else state.best_epoch, state.global_step + 1
        seen, epochs, losses = state.examples_seen, state.epoch, state.step_losses
        return TrainResult(state.history, seen, steps, epochs, interrupted, best, losses)

    def _restore_rngs(self, state: LoopState) -> None:  # a resumed run's generators as saved
        if state.torch_rng is not None:
            torch.set_rng_state(state.torch_rng)
        for name, generator in self.generators.items():
            if name in state.loader_rngs:
                generator.set_state(state.loader_rngs[name])

    def _batches(self, state: LoopState) -> Iterable:
        """This epoch's batches from ``state.batch_index`` on, in the uninterrupted order."""
        generator = self.generators.get("train")
        if generator is not None:
            if state.batch_index and state.epoch_start_rng is not None:
                generator.set_state(state.epoch_start_rng)
            state.epoch_start_rng = generator.get_state()
        batches = iter(self.train)
        for _ in range(state.batch_index):
            next(batches)
        if state.batch_index:
            self._restore_rngs(state)
        return batches

    def _run_epoch(self, state: LoopState) -> None:
        settings, accum, steps = self.settings, self.settings.grad_accum_steps, self.steps_per_epoch
        weights, desc = self.class_weights, f"epoch {state.epoch + 1}/{settings.epochs}"
        where = {"unit": "batches", "initial": state.batch_index, "leave": False}
        with progress_bar(steps, desc, enabled=self.progress, **where) as bar:
            self.model.train()
            self.optimizer.zero_grad(set_to_none=True)
            for batch in self._batches(state):
                index = state.batch_index
                step = (index + 1) % accum == 0 or index + 1 == steps
                # batches in this accumulation group (an epoch's last may be short)
                group = accum if steps is None else min(accum, steps - index + index % accum)
                inputs, targets, lengths, owners = unpack_batch(batch)
                # DDP averages the gradients once per optimizer step, not after every batch
                no_sync = getattr(self.model, "no_sync", None)
                with no_sync() if no_sync is not None and not step else contextlib.nullcontext():
                    with self.amp():
                        loss = calc_loss_batch(
                            inputs, targets, self.model, self.device, lengths, owners, weights
                        )
                    # one value per rank, in the order of the one-process run's batches
                    gathered = self.dist.gather_floats([loss.item(), targets.shape[0]])
                    if bad := [value for value, _ in gathered if not math.isfinite(value)]:
                        raise TrainingDiverged(
                            f"training diverged: the loss became {bad[0]} at step "
                            f"{state.global_step + 2} (epoch {state.epoch + 1}); the "
                            f"learning rate ({settings.lr:g}) is probably too high"
                        )
                    (loss / group).backward()
                if step:
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                state.batch_index = index + 1
                bar.update(1)
                for loss_value, rows in gathered:
                    state.examples_seen += int(rows)
                    state.global_step += 1
                    state.step_losses.append(loss_value)
                    state.running_loss += loss_value * rows
                    state.running_seen += int(rows)
                    bar.set_postfix(loss=f"{state.running_loss / state.running_seen:.3f}")
                    if state.global_step % settings.eval_freq == 0:
                        self._evaluate_losses(state, bar)
                due = self.checkpoint_every and (state.global_step + 1) % self.checkpoint_every == 0
                if step and due and state.batch_index != steps:  # an epoch's end checkpoints anyway
                    self._checkpoint(state)
        self.model.eval()  # the epoch's accuracies (on the whole validation split for select_best)
        model, device = self.eval_model, self.device
        accuracy = functools.partial(calc_accuracy_loader, model=model, device=device)
        with self.amp():
            train_acc = accuracy(self.train_eval, num_batches=settings.eval_iter)
            val_acc = accuracy(self.val, num_batches=settings.eval_iter)
            full_val_acc = accuracy(self.val) if settings.select_best else None
        state.history.record_accuracies(state.epoch + 1, state.examples_seen, train_acc, val_acc)
        mean_loss = state.running_loss / max(state.running_seen, 1)
        accuracies = f"train {train_acc * 100:.2f} %, validation {val_acc * 100:.2f} %"
        epoch = f"epoch {state.epoch + 1}/{settings.epochs}: train loss {mean_loss:.4f}"
        self.say(f"{epoch}, accuracy on {settings.eval_iter} batches: {accuracies}")
        if full_val_acc is not None and full_val_acc > state.best_val_acc:
            state.best_val_acc, state.best_epoch = full_val_acc, state.epoch + 1
            state.best_state = [p.detach().clone() for p in self.trainable]

    def _check_weights(self) -> None:
        if not all(torch.isfinite(p).all() for p in self.trainable):
            raise TrainingDiverged(
                "training diverged: a trainable weight became NaN or infinite; the learning "
                f"rate ({self.settings.lr:g}) or weight decay is probably too high"
            )

    def _checkpoint(self, state: LoopState) -> None:
        if self.on_checkpoint is not None:
            self._check_weights()  # a checkpoint is always one worth resuming from
            state.torch_rng = torch.get_rng_state()
            state.loader_rngs.update({name: g.get_state() for name, g in self.generators.items()})
            self.on_checkpoint(state)

    def _evaluate_losses(self, state: LoopState, bar: Any) -> None:
        with self.amp():
            train_loss, val_loss = evaluate_model(
                self.eval_model, self.train_eval, self.val, self.device, self.settings.eval_iter
            )
        fraction = state.batch_index / self.steps_per_epoch if self.steps_per_epoch else 0.0
        epoch = state.epoch + fraction
        state.history.record_losses(epoch, state.examples_seen, train_loss, val_loss)
        bar.set_postfix(
            loss=f"{state.running_loss / state.running_seen:.3f}", val=f"{val_loss:.3f}"
        )
        if not self.progress:
            losses = f"train loss {train_loss:.3f}, val loss {val_loss:.3f}"
            self.say(f"ep {state.epoch + 1} (step {state.global_step:06d}): {losses}")


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
    """The book's signature: ``train_losses, val_losses, train_accs, val_accs, examples_seen``."""
    settings = TrainSettings(epochs=num_epochs, eval_freq=eval_freq, eval_iter=eval_iter)
    result = train_classifier(
        model, train_loader, val_loader, optimizer, device, settings, progress=False
    )
    h = result.history
    return h.train_losses, h.val_losses, h.train_accs, h.val_accs, result.examples_seen
