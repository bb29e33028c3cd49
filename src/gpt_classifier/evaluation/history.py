"""What the trainer records while it runs: losses at each evaluation step, accuracies per epoch."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import GPTClassifierError

# Lists that must have one entry per loss evaluation, and per accuracy evaluation.
_LOSS_FIELDS = ("epochs_seen", "examples_seen", "train_losses", "val_losses")
_ACCURACY_FIELDS = ("acc_epochs_seen", "acc_examples_seen", "train_accs", "val_accs")
_INT_FIELDS = ("examples_seen", "acc_examples_seen")


@dataclass
class TrainingHistory:
    """The curves of one training run, as the book's ``train_classifier_simple`` returns them, but
    with the x positions of every point stored next to it.

    * Each loss evaluation (the book: every ``eval_freq`` = 50 optimizer steps) appends to
      ``epochs_seen`` (fractional epochs, e.g. ``1.25`` a quarter into the second epoch),
      ``examples_seen`` (training examples processed so far), ``train_losses`` and ``val_losses``.
    * Each end of epoch appends to ``acc_epochs_seen``, ``acc_examples_seen``, ``train_accs`` and
      ``val_accs`` (accuracies as fractions of 1).

    Use :meth:`record_losses` and :meth:`record_accuracies` to append; :meth:`to_dict` and
    :meth:`from_dict` go to and from JSON-ready dicts.
    """

    epochs_seen: list[float] = field(default_factory=list)
    examples_seen: list[int] = field(default_factory=list)
    train_losses: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    acc_epochs_seen: list[float] = field(default_factory=list)
    acc_examples_seen: list[int] = field(default_factory=list)
    train_accs: list[float] = field(default_factory=list)
    val_accs: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            convert = int if f.name in _INT_FIELDS else float
            values = getattr(self, f.name)
            try:
                if isinstance(values, (str, bytes)):
                    raise TypeError
                setattr(self, f.name, [convert(value) for value in values])
            except (TypeError, ValueError):
                raise ValueError(f"{f.name} must be a list of numbers, got {values!r}") from None
        for group in (_LOSS_FIELDS, _ACCURACY_FIELDS):
            lengths = {name: len(getattr(self, name)) for name in group}
            if len(set(lengths.values())) > 1:
                listed = ", ".join(f"{name}={length}" for name, length in lengths.items())
                raise ValueError(f"training history lists differ in length: {listed}")

    def record_losses(
        self, epoch: float, examples_seen: int, train_loss: float, val_loss: float
    ) -> None:
        """Append one loss evaluation point."""
        self.epochs_seen.append(float(epoch))
        self.examples_seen.append(int(examples_seen))
        self.train_losses.append(float(train_loss))
        self.val_losses.append(float(val_loss))

    def record_accuracies(
        self, epoch: float, examples_seen: int, train_acc: float, val_acc: float
    ) -> None:
        """Append one accuracy evaluation point (accuracies as fractions of 1)."""
        self.acc_epochs_seen.append(float(epoch))
        self.acc_examples_seen.append(int(examples_seen))
        self.train_accs.append(float(train_acc))
        self.val_accs.append(float(val_acc))

    def to_dict(self) -> dict[str, list[Any]]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(
        cls, values: Mapping[str, Any], source: str = "training history"
    ) -> TrainingHistory:
        """Build from :meth:`to_dict` output (e.g. read back from JSON). Missing keys are empty
        lists; unknown keys or inconsistent lengths raise :class:`GPTClassifierError` naming
        ``source``."""
        if not isinstance(values, Mapping):
            raise GPTClassifierError(
                f"{source}: expected a JSON object, got {type(values).__name__}"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise GPTClassifierError(f"{source}: unknown keys {unknown}")
        try:
            return cls(**values)
        except ValueError as exc:
            raise GPTClassifierError(f"{source}: {exc}") from exc
