"""What the trainer records while it runs: losses at each evaluation step, accuracies per epoch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Self

from ..errors import GPTClassifierError

# Lists that must have one entry per loss evaluation, and per accuracy evaluation.
_LOSS_FIELDS = ("epochs_seen", "examples_seen", "train_losses", "val_losses")
_ACCURACY_FIELDS = ("acc_epochs_seen", "acc_examples_seen", "train_accs", "val_accs")
_INT_FIELDS = ("examples_seen", "acc_examples_seen")


@dataclass
class TrainingHistory:
    """The book's curves of ``train_classifier_simple`` with the x position of every point."""

    epochs_seen: list[float] = field(default_factory=list)
    examples_seen: list[int] = field(default_factory=list)
    train_losses: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    acc_epochs_seen: list[float] = field(default_factory=list)
    acc_examples_seen: list[int] = field(default_factory=list)
    train_accs: list[float] = field(default_factory=list)
    val_accs: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in (item.name for item in fields(self)):
            convert, values = (int if name in _INT_FIELDS else float), getattr(self, name)
            try:
                if isinstance(values, (str, bytes)):  # iterable, but not a list of numbers
                    raise TypeError
                setattr(self, name, [convert(value) for value in values])
            except (TypeError, ValueError):
                raise ValueError(f"{name} must be a list of numbers, got {values!r}") from None
        for group in (_LOSS_FIELDS, _ACCURACY_FIELDS):
            lengths = {name: len(getattr(self, name)) for name in group}
            if len(set(lengths.values())) > 1:
                listed = ", ".join(f"{name}={length}" for name, length in lengths.items())
                raise ValueError(f"training history lists differ in length: {listed}")

    def record_losses(self, epoch: float, examples_seen: int, train: float, val: float) -> None:
        for name, value in zip(_LOSS_FIELDS, (epoch, examples_seen, train, val), strict=True):
            getattr(self, name).append(int(value) if name in _INT_FIELDS else float(value))

    def record_accuracies(self, epoch: float, examples_seen: int, train: float, val: float) -> None:
        for name, value in zip(_ACCURACY_FIELDS, (epoch, examples_seen, train, val), strict=True):
            getattr(self, name).append(int(value) if name in _INT_FIELDS else float(value))

    def to_dict(self) -> dict[str, list[Any]]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "training history") -> Self:
        """From :meth:`to_dict`'s output (missing keys are empty lists); errors name ``source``."""
        if not isinstance(data, Mapping):
            raise GPTClassifierError(f"{source}: expected a JSON object, got {type(data).__name__}")
        if unknown := sorted(set(data) - {item.name for item in fields(cls)}):
            raise GPTClassifierError(f"{source}: unknown keys {unknown}")
        try:
            return cls(**data)
        except ValueError as exc:
            raise GPTClassifierError(f"{source}: {exc}") from exc
