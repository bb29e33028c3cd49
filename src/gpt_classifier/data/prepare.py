"""From files (or the built-in ``sms-spam``, the UCI SMS Spam Collection: downloaded once,
checked against its sha256 and cached) to train/validation/test records and a label map: label
maps, deduplication, class balancing, seeded stratified splits and the split files; each function
draws from its own ``random.Random(seed)``: a result depends on its inputs only."""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import math
import random
import re
import urllib.request
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError

from .. import fileio
from ..errors import GPTClassifierError
from ..fileio import atomic_path, read_json, write_text
from ..progress import progress_bar
from .readers import PathLike, Record, read_records

SMS_SPAM_NAME = "sms-spam"
SMS_SPAM_URL = "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip"
SMS_SPAM_MEMBER = "SMSSpamCollection"
SMS_SPAM_SHA256 = "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d"

_HINT = "pass --data-file PATH to a local copy of SMSSpamCollection"
_BAR = {"unit_scale": True, "unit_divisor": 1024, "leave": False}
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
    return max(parts[0], 0.0), max(parts[1], 0.0), max(parts[2], 0.0)


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
    fractions, rng = parse_fractions(fractions), random.Random(seed)
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


def sms_spam_path(
    *,
    url: str = SMS_SPAM_URL,
    cache_dir: PathLike | None = None,
    sha256: str = SMS_SPAM_SHA256,
    progress: bool = True,
) -> Path:
    """The cached ``SMSSpamCollection``, downloaded (again, if its checksum is wrong) if needed."""
    folder = Path(cache_dir) if cache_dir is not None else fileio.cache_dir()
    target = folder / "sms_spam_collection" / SMS_SPAM_MEMBER
    if target.is_file() and fileio.sha256_of(target) == sha256:
        return target
    request = urllib.request.Request(url, headers={"User-Agent": "gpt-classifier"})
    try:
        with urllib.request.urlopen(request, timeout=60.0) as response:
            size = response.headers.get("Content-Length")
            total = int(size) if size and size.isdigit() else None
            buffer = io.BytesIO()
            with progress_bar(total, "sms-spam", enabled=progress, unit="B", **_BAR) as bar:
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    buffer.write(chunk)
                    bar.update(len(chunk))
    except (OSError, ValueError) as exc:  # URLError (HTTPError), timeouts, resets, bad URLs
        why = str(exc.reason) if isinstance(exc, URLError) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, HTTPError):
            why = f"HTTP {exc.code} {exc.reason}"
        raise GPTClassifierError(
            f"cannot download the SMS Spam Collection from {url} ({why}); {_HINT}"
        ) from None
    try:
        with zipfile.ZipFile(buffer) as archive:
            names = [n for n in archive.namelist() if n.rsplit("/", 1)[-1] == SMS_SPAM_MEMBER]
            if not names:
                raise GPTClassifierError(
                    f"the zip from {url} holds no {SMS_SPAM_MEMBER} "
                    f"(it has {', '.join(archive.namelist()) or 'nothing'}); {_HINT}"
                )
            content = archive.read(names[0])
    except zipfile.BadZipFile:
        raise GPTClassifierError(f"the download from {url} is not a zip file; {_HINT}") from None
    if (actual := hashlib.sha256(content).hexdigest()) != sha256:
        raise GPTClassifierError(
            f"{SMS_SPAM_MEMBER} from {url} has sha256 {actual}, expected {sha256} "
            f"(corrupt or changed download); {_HINT}"
        )
    try:
        fileio.write_text(target, content)  # (which makes the folder)
    except OSError as exc:
        raise GPTClassifierError(
            f"cannot write the dataset cache {target} ({exc.strerror or exc}); set "
            f"{fileio.CACHE_ENV} to a writable folder or {_HINT}"
        ) from None
    return target


@dataclass
class DataSummary:
    """Class counts at each step and per split; ``overlap``: held-out texts also in training."""

    source: str
    raw: dict[str, int]
    deduplicated: dict[str, int]
    balanced: dict[str, int]
    splits: dict[str, dict[str, int]]
    duplicates_dropped: int = 0
    label_conflicts: int = 0
    balance: str = "none"
    keep_duplicates: bool = False
    seed: int | None = None
    fractions: tuple[float, float, float] | None = None
    overlap: int = 0

    def to_dict(self) -> dict:
        return asdict(self) | {"fractions": list(self.fractions) if self.fractions else None}

    def removals(self) -> list[str]:
        """One line per step that removed rows of the data, with what it removed per class."""
        conflicts = f", {self.label_conflicts} with another label" if self.label_conflicts else ""
        steps = (
            (self.raw, self.deduplicated, "repeated texts", conflicts, "--keep-duplicates"),
            (self.deduplicated, self.balanced, "rows by undersampling", "", "--balance weighted"),
        )
        lines = []
        for before, after, what, more, keeps in steps:
            if lost := {c: n - after.get(c, 0) for c, n in before.items() if n > after.get(c, 0)}:
                per_class = ", ".join(f"{label} {n}" for label, n in lost.items())
                total = sum(lost.values())
                lines.append(f"dropped {total} {what} ({per_class}{more}); {keeps} keeps them")
        return lines


@dataclass
class PreparedData:
    train: list[Record]
    validation: list[Record]
    test: list[Record]
    label_map: LabelMap
    summary: DataSummary = field(repr=False)

    def split(self, name: str) -> list[Record]:
        return {"train": self.train, "validation": self.validation, "test": self.test}[name]


def prepare_dataset(
    *,
    data_file: PathLike | None = None,
    train_file: PathLike | None = None,
    validation_file: PathLike | None = None,
    test_file: PathLike | None = None,
    balance: str = "undersample",
    keep_duplicates: bool = False,
    seed: int = DEFAULT_SEED,
    fractions: str | Sequence[float] = DEFAULT_FRACTIONS,
    progress: bool = True,
    **read: Any,
) -> PreparedData:
    """The splits, the label map (from the training split) and a summary: ``data_file`` (default:
    ``sms-spam``) is deduplicated, balanced and split; split files are read as they are; ``read``:
    :func:`read_records`' ``fmt``, ``text_column``, ``label_column`` and ``lenient``."""
    method = check_balance(balance)
    split_files = {"train": train_file, "validation": validation_file, "test": test_file}
    if any(path is not None for path in split_files.values()):
        if data_file is not None:
            raise GPTClassifierError(
                "pass either a data file (split automatically) or train/validation/test files, "
                "not both"
            )
        if train_file is None:
            raise GPTClassifierError(
                "validation/test files were given without a training file; pass --train-file"
            )
        return _from_split_files(split_files, **read)
    fractions = parse_fractions(fractions)
    if data_file is None or str(data_file) == SMS_SPAM_NAME:
        path = sms_spam_path(progress=progress)
        source, records = f"{SMS_SPAM_NAME} ({path})", read_records(path, "sms")
    else:
        source, records = str(data_file), read_records(data_file, **read)
    raw = _class_counts(records, source)
    all_kept = (records, DedupReport(0, 0))
    unique, report = all_kept if keep_duplicates else deduplicate(records)
    deduplicated = _class_counts(unique, f"{source} after dropping duplicate texts")
    balanced = balance_classes(unique, method, seed)
    parts = stratified_split(balanced, fractions, seed)
    counts = {"raw": raw, "deduplicated": deduplicated, "balanced": class_counts(balanced)}
    dropped = {"duplicates_dropped": report.dropped, "label_conflicts": report.conflicts}
    chosen = {"balance": method, "keep_duplicates": keep_duplicates, "seed": seed}
    summary = {"source": source, **counts, **dropped, **chosen, "fractions": fractions}
    return _prepared(parts, LabelMap.from_labels(r.label for r in parts[0]), **summary)


def write_splits(prepared: PreparedData, output_dir: PathLike) -> dict[str, Path]:
    """The three split CSVs (``Label,Text``) and ``labels.json``; their paths by name."""
    folder = Path(output_dir)
    written = {name: folder / f"{name}.csv" for name in SPLIT_NAMES}
    written["labels"] = folder / "labels.json"
    try:
        for name in SPLIT_NAMES:  # (the first write makes the folder)
            write_split_file(prepared.split(name), written[name])
        prepared.label_map.save(written["labels"])
    except OSError as exc:
        raise GPTClassifierError(
            f"cannot write the splits to {folder} ({exc.strerror or exc})"
        ) from None
    return written


def read_splits(directory: PathLike) -> PreparedData:
    """The splits written by :func:`write_splits` (or the book's three CSVs) from one folder."""
    files = {name: Path(directory) / f"{name}.csv" for name in SPLIT_NAMES}
    # write_splits writes validation and test even when empty; the book may lack them
    present = {name: p if name == "train" or p.exists() else None for name, p in files.items()}
    return _from_split_files(present, empty=True)


def _from_split_files(
    files: dict[str, PathLike | None], empty: bool = False, **read: Any
) -> PreparedData:
    """``empty``: validation and test files may hold a header only."""
    parts = {
        name: read_records(path, **read, allow_empty=empty and name != "train") if path else []
        for name, path in files.items()
    }
    train_counts = _class_counts(parts["train"], str(files["train"]))
    label_map = LabelMap.from_labels(train_counts)
    for record in parts["validation"] + parts["test"]:
        if record.label not in label_map:
            raise GPTClassifierError(
                f"{record.where}: label {record.label!r} does not occur in the training file "
                f"{files['train']} (its classes: {', '.join(label_map.classes)})"
            )
    raw = class_counts([record for part in parts.values() for record in part])
    source = ", ".join(str(p) for p in files.values() if p is not None)
    steps = dict.fromkeys(("raw", "deduplicated", "balanced"), raw)
    return _prepared(list(parts.values()), label_map, source=source, **steps)


def _prepared(parts: Sequence[list[Record]], label_map: LabelMap, **summary: Any) -> PreparedData:
    """The splits with a summary (``summary``: ``DataSummary``'s fields but counts and overlap)."""
    seen = {record.text for record in parts[0]}
    overlap = sum(record.text in seen for record in [*parts[1], *parts[2]])
    counts = {name: class_counts(part) for name, part in zip(SPLIT_NAMES, parts, strict=True)}
    return PreparedData(*parts, label_map, DataSummary(**summary, splits=counts, overlap=overlap))


def _class_counts(records: Sequence[Record], source: str) -> dict[str, int]:
    if len(counts := class_counts(records)) < 2:
        found = f"only the class {next(iter(counts))!r}" if counts else "no classes"
        raise GPTClassifierError(f"{source}: {found}; a classifier needs at least two classes")
    return counts
