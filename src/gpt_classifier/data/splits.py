"""Label maps, deduplication, class balancing, seeded stratified splits and the split files;
each function draws from its own ``random.Random(seed)``: a result depends on its inputs only."""

from __future__ import annotations

import csv
import itertools
import json
import math
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import GPTClassifierError
from ..fileio import atomic_path, read_json, write_text
from .readers import PathLike, Record

BALANCE_METHODS = ("weighted", "undersample", "none")
DEFAULT_FRACTIONS = (0.7, 0.1, 0.2)
DEFAULT_SEED = 123
SPLIT_NAMES = ("train", "validation", "test")
_INTEGER = re.compile(r"[+-]?\d+")


def sort_labels(labels: Iterable[str]) -> list[str]:
    """Distinct labels: numeric when all are integers (``"2" < "10"``), else by string."""
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
        if twice := [name for i, name in enumerate(classes) if name in classes[:i]]:
            raise GPTClassifierError(f"label map lists class {twice[0]!r} twice")
        object.__setattr__(self, "_ids", {name: i for i, name in enumerate(classes)})

    @classmethod
    def from_labels(cls, labels: Iterable[str]) -> LabelMap:
        """The classes seen in ``labels``, ordered by :func:`sort_labels`."""
        return cls(tuple(sort_labels(labels)))

    def __len__(self) -> int:
        return len(self.classes)

    num_classes = property(__len__)

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

    def save(self, path: PathLike) -> None:
        text = json.dumps({"classes": list(self.classes)}, indent=2, ensure_ascii=False)
        write_text(path, text + "\n")

    @classmethod
    def load(cls, path: PathLike) -> LabelMap:
        values = read_json(path, "label map file")
        if not isinstance(values, dict) or not isinstance(values.get("classes"), list):
            raise GPTClassifierError(f'{path}: expected an object {{"classes": [...]}}')
        classes = values["classes"]
        if not all(isinstance(c, (str, int)) and not isinstance(c, bool) for c in classes):
            raise GPTClassifierError(f"{path}: classes must be strings")
        return cls(tuple(str(c) for c in classes))


@dataclass(frozen=True)
class DedupReport:
    dropped: int  # rows whose text repeats an earlier row's text (conflicts included)
    conflicts: int  # of those, rows whose label differs from the first occurrence's


def deduplicate(records: Sequence[Record]) -> tuple[list[Record], DedupReport]:
    """Keep the first occurrence of every exact text; count the rest and the label conflicts."""
    first: dict[str, Record] = {}
    for record in records:
        first.setdefault(record.text, record)
    conflicts = sum(first[record.text].label != record.label for record in records)
    return list(first.values()), DedupReport(len(records) - len(first), conflicts)


def balance_classes(
    records: Sequence[Record], method: str = "weighted", seed: int = DEFAULT_SEED
) -> list[Record]:
    """``undersample`` (the book's ``create_balanced_dataset``): a seeded subset of every class as
    large as the smallest, in the original order; ``weighted`` (the loss's) and ``none``: all."""
    records = list(records)
    if check_balance(method) != "undersample" or not records:
        return records
    by_class: dict[str, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        by_class[record.label].append(index)
    minority = min(len(indices) for indices in by_class.values())
    rng = random.Random(seed)
    keep: list[int] = []
    for label in sort_labels(by_class):
        indices = by_class[label]
        keep.extend(indices if len(indices) == minority else rng.sample(indices, minority))
    return [records[i] for i in sorted(keep)]


def check_balance(method: str) -> str:
    if method not in BALANCE_METHODS:
        raise GPTClassifierError(
            f"unknown balance method {method!r}; expected {', '.join(BALANCE_METHODS)}"
        )
    return method


def class_weights(counts: Mapping[str, int], classes: Sequence[str]) -> list[float]:
    """Loss weight of each class: n / (k * count), scikit-learn's "balanced"."""
    total = sum(counts.get(label, 0) for label in classes)
    return [total / (len(classes) * counts[c]) if counts.get(c) else 0.0 for c in classes]


def parse_fractions(value: str | Sequence[float]) -> tuple[float, float, float]:
    """``"0.7,0.1,0.2"`` or 2 or 3 fractions (test the rest of 2) -> (train, validation, test)."""
    texts = value.replace(" ", "").split(",") if isinstance(value, str) else value
    try:
        parts = [float(p) for p in texts if p != ""]
    except ValueError:
        raise GPTClassifierError(
            f"invalid fractions {value!r}; expected e.g. 0.7,0.1,0.2 (train,validation,test)"
        ) from None
    if len(parts) == 2:
        parts.append(round(1.0 - sum(parts), 12))
    if len(parts) != 3:
        raise GPTClassifierError(
            f"invalid fractions {value!r}; expected 3 numbers train,validation,test "
            "(e.g. 0.7,0.1,0.2)"
        )
    if any(p < -1e-9 or not math.isfinite(p) for p in parts) or parts[0] <= 0:
        raise GPTClassifierError(
            f"invalid fractions {value!r}: each must be >= 0 and the train fraction > 0"
        )
    if abs(sum(parts) - 1.0) > 1e-6:
        raise GPTClassifierError(f"invalid fractions {value!r}: they must add up to 1")
    train, validation, test = (max(p, 0.0) for p in parts)
    return train, validation, test


def split_sizes(count: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """Per-class sizes: floor(n * train), floor(n * validation), the rest (as the book splits)."""
    train = math.floor(count * fractions[0] + 1e-9)
    validation = math.floor(count * fractions[1] + 1e-9)
    if count and train == 0:
        train, validation = 1, min(validation, count - 1)
    return train, validation, count - train - validation


def stratified_split(
    records: Sequence[Record],
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = DEFAULT_SEED,
) -> tuple[list[Record], list[Record], list[Record]]:
    """Seeded split keeping every class's share in each split, each split shuffled."""
    fractions = parse_fractions(fractions)
    rng = random.Random(seed)
    by_class: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_class[record.label].append(record)
    splits: tuple[list[Record], list[Record], list[Record]] = ([], [], [])
    for label in sort_labels(by_class):
        members = by_class[label]
        rng.shuffle(members)
        ends = list(itertools.accumulate(split_sizes(len(members), fractions)))
        for split, start, end in zip(splits, [0, *ends], ends, strict=False):
            split.extend(members[start:end])
    for split in splits:
        rng.shuffle(split)
    return splits


def class_counts(records: Sequence[Record]) -> dict[str, int]:
    """Examples per class, classes in :func:`sort_labels` order."""
    counts = Counter(record.label for record in records)
    return {label: counts[label] for label in sort_labels(counts)}


def write_split_file(records: Sequence[Record], path: PathLike) -> Path:
    """One split as CSV with the book's columns ``Label,Text``, written whole (temp + rename)."""
    path = Path(path)
    with atomic_path(path) as partial, partial.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        # With "\n" as terminator the csv module leaves a bare "\r" unquoted, and readers would
        # end the row there: quote every field of such rows (labels included).
        quoting = csv.writer(handle, lineterminator="\n", quoting=csv.QUOTE_ALL)
        writer.writerow(["Label", "Text"])
        for record in records:
            row = [record.label, record.text]
            (quoting if "\r" in record.text or "\r" in record.label else writer).writerow(row)
    return path
