"""``LabelMap``: the classes of a classifier in a fixed order, saved next to the model as JSON."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import GPTClassifierError
from ..fileio import read_json, write_text

_INTEGER = re.compile(r"[+-]?\d+")


def sort_labels(labels: Iterable[str]) -> list[str]:
    """Distinct labels in a stable order: numeric when every label is an integer (``"2" < "10"``),
    otherwise by string (so ``ham`` = 0, ``spam`` = 1, as in the book)."""
    distinct = set(labels)
    if distinct and all(_INTEGER.fullmatch(label) for label in distinct):
        return sorted(distinct, key=lambda label: (int(label), label))
    return sorted(distinct)


@dataclass(frozen=True)
class LabelMap:
    """Class names in id order: ``classes[i]`` is the name of output ``i`` of the classifier."""

    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        classes = tuple(map(str, self.classes))
        object.__setattr__(self, "classes", classes)
        if not classes:
            raise GPTClassifierError("a label map needs at least one class")
        twice = [name for i, name in enumerate(classes) if name in classes[:i]]
        if twice:
            raise GPTClassifierError(f"label map lists class {twice[0]!r} twice")
        object.__setattr__(self, "_ids", {name: i for i, name in enumerate(classes)})

    @classmethod
    def from_labels(cls, labels: Iterable[str]) -> LabelMap:
        """The classes seen in ``labels``, ordered by :func:`sort_labels`."""
        return cls(tuple(sort_labels(labels)))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.classes)

    def __contains__(self, label: object) -> bool:
        return label in self._ids  # type: ignore[attr-defined]

    def id_of(self, label: str) -> int:
        """The class id of ``label``; raises ``GPTClassifierError`` for an unknown label."""
        try:
            return self._ids[label]  # type: ignore[attr-defined]
        except KeyError:
            raise GPTClassifierError(
                f"unknown label {label!r}; known classes: {', '.join(self.classes)}"
            ) from None

    def save(self, path: str | os.PathLike[str]) -> None:
        text = json.dumps({"classes": list(self.classes)}, indent=2, ensure_ascii=False)
        write_text(path, text + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LabelMap:
        values = read_json(path, "label map file")
        if not isinstance(values, dict) or not isinstance(values.get("classes"), list):
            raise GPTClassifierError(f'{path}: expected an object {{"classes": [...]}}')
        classes = values["classes"]
        if not all(isinstance(c, (str, int)) and not isinstance(c, bool) for c in classes):
            raise GPTClassifierError(f"{path}: classes must be strings")
        return cls(tuple(str(c) for c in classes))
