"""Reading labelled text files (SMS-style TSV, TSV, CSV, JSON lines, Parquet) into records.

Formats (``fmt``, the CLI's ``--format``) and the file names that select them by default:

* ``sms``: no header, ``label<TAB>text`` per line, split on the first tab, no quoting (the UCI
  SMS Spam Collection's layout; its texts hold unbalanced double quotes). A file named
  ``SMSSpamCollection``.
* ``tsv``: tab-separated with a header row; fields are not quoted (IANA TSV). ``.tsv``, ``.tab``,
  ``.txt`` or no suffix.
* ``csv``: comma-separated with a header row, RFC 4180 quoting (the book's ``train.csv``). ``.csv``.
* ``jsonl``: one JSON object per line, blank lines skipped. ``.jsonl``, ``.ndjson``.
* ``parquet``: only when pyarrow (or pandas with a Parquet engine) is installed; neither is a
  dependency of this package. ``.parquet``, ``.pq``.

A ``.tsv``/``.tab``/``.txt``/suffix-less file whose first line names no text or label column
(neither a requested ``text_column``/``label_column`` nor a known name such as ``text``/``label``)
and has exactly two fields is read as ``sms`` (headerless ``label<TAB>text``). Pass ``fmt`` (the
CLI's ``--format``) to override the guess.

Text columns tried by default (case-insensitive): ``TEXT_COLUMNS``; label columns:
``LABEL_COLUMNS``. Texts are kept verbatim (no stripping, so exact-duplicate detection sees the
file's text); labels are stripped of surrounding whitespace. Files are UTF-8 (a leading
byte-order mark is ignored).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import GPTClassifierError

FORMATS = ("sms", "tsv", "csv", "jsonl", "parquet")

TEXT_COLUMNS = (
    "text",
    "sentence",
    "message",
    "sms",
    "content",
    "review",
    "document",
    "body",
    "comment",
    "tweet",
)
LABEL_COLUMNS = ("label", "labels", "class", "category", "target", "sentiment", "y")

_SUFFIX_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".txt": "tsv",
    "": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


@dataclass(frozen=True, slots=True)
class Record:
    """One labelled example. ``source`` and ``line`` say where it came from (for error messages)
    and take no part in equality, so records reloaded from written split files compare equal."""

    text: str
    label: str
    source: str = field(default="", compare=False)
    line: int = field(default=0, compare=False)

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}" if self.line else self.source


def detect_format(
    path: str | os.PathLike[str],
    text_column: str | None = None,
    label_column: str | None = None,
) -> str:
    """The format of ``path`` from its name (and, for tab-separated files, its first line)."""
    path = Path(path)
    if path.name == "SMSSpamCollection":
        return "sms"
    suffix = path.suffix.lower()
    if suffix not in _SUFFIX_FORMATS:
        raise GPTClassifierError(
            f"{path}: cannot tell the format from the suffix {path.suffix!r}; "
            f"pass --format ({', '.join(FORMATS)})"
        )
    fmt = _SUFFIX_FORMATS[suffix]
    if fmt == "tsv":
        first = _first_line(path)
        fields = [f.strip() for f in first.split("\t")] if first is not None else []
        if len(fields) == 2 and not _looks_like_header(fields, text_column, label_column):
            return "sms"
    return fmt


def read_records(
    path: str | os.PathLike[str],
    fmt: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    *,
    allow_empty: bool = False,
) -> list[Record]:
    """All examples of a labelled file; raises ``GPTClassifierError`` naming the file and line of
    the first problem (missing column, empty text, missing label, undecodable bytes, ...).
    ``allow_empty``: a file with a header and no rows gives ``[]`` instead of an error."""
    path = Path(path)
    if not path.exists():
        raise GPTClassifierError(f"data file not found: {path}")
    if path.is_dir():
        raise GPTClassifierError(f"{path} is a directory, not a data file")
    if fmt is None:
        fmt = detect_format(path, text_column, label_column)
    elif fmt not in FORMATS:
        raise GPTClassifierError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if fmt == "sms" and (text_column or label_column):
        raise GPTClassifierError(
            f"{path}: format sms (headerless label<TAB>text) has no named columns; "
            "drop --text-column/--label-column or use a file with a header"
        )
    if fmt == "parquet":
        records = _read_parquet(path, text_column, label_column)
    else:
        text = _decode(path)
        if fmt == "sms":
            records = list(_read_sms(text, str(path)))
        elif fmt == "jsonl":
            records = list(_read_jsonl(text, str(path), text_column, label_column))
        else:
            records = list(_read_delimited(text, str(path), fmt, text_column, label_column))
    if not records and not allow_empty:
        raise GPTClassifierError(f"{path}: no examples in the file")
    return records


# --- decoding ---------------------------------------------------------------------------------


def _decode(path: Path) -> str:
    data = path.read_bytes()
    if not data.strip():
        raise GPTClassifierError(f"{path}: the file is empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise GPTClassifierError(
            f"{path}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at byte offset "
            f"{exc.start}, column {column}); re-save the file as UTF-8"
        ) from None
    return text.removeprefix("\ufeff")


def _first_line(path: Path) -> str | None:
    try:
        with path.open("rb") as handle:
            for raw in handle:
                line = raw.decode("utf-8", errors="replace").removeprefix("\ufeff").rstrip("\r\n")
                if line.strip():
                    return line
    except OSError:
        return None
    return None


def _looks_like_header(
    fields: Sequence[str], text_column: str | None, label_column: str | None
) -> bool:
    lowered = {f.lower() for f in fields}
    wanted = {c.lower() for c in (text_column, label_column) if c}
    if wanted & lowered:
        return True
    return bool(lowered & (set(TEXT_COLUMNS) | set(LABEL_COLUMNS)))


def _lines(text: str) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(text.split("\n"), start=1):
        yield number, line.removesuffix("\r")


# --- formats ----------------------------------------------------------------------------------


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and value != value:  # NaN: pandas' missing value
        return True
    return isinstance(value, str) and not value.strip()


def _record(text: Any, label: Any, source: str, line: int) -> Record:
    if hasattr(label, "item") and not isinstance(label, (str, bytes)):
        label = label.item()  # numpy scalars from Parquet/pandas
    if _is_missing(label):
        raise GPTClassifierError(f"{source}:{line}: missing label")
    if isinstance(label, bool) or not isinstance(label, (str, int, float)):
        raise GPTClassifierError(
            f"{source}:{line}: label must be a string or an integer, got {json.dumps(label)}"
        )
    if isinstance(label, float):
        if not label.is_integer():
            raise GPTClassifierError(f"{source}:{line}: label {label!r} is not an integer")
        label = int(label)
    if _is_missing(text):
        raise GPTClassifierError(f"{source}:{line}: empty text")
    if not isinstance(text, str):
        raise GPTClassifierError(
            f"{source}:{line}: text must be a string, got {json.dumps(text, default=str)}"
        )
    return Record(text=text, label=str(label).strip(), source=source, line=line)


def _read_sms(text: str, source: str) -> Iterator[Record]:
    for number, line in _lines(text):
        if not line.strip():
            continue
        label, tab, message = line.partition("\t")
        if not tab:
            raise GPTClassifierError(
                f"{source}:{number}: expected 'label<TAB>text' but the line has no tab"
            )
        yield _record(message, label, source, number)


def _pick_column(
    columns: Sequence[str], requested: str | None, known: Sequence[str], kind: str, where: str
) -> str:
    available = ", ".join(repr(c) for c in columns) or "none"
    if requested is not None:
        if requested in columns:
            return requested
        matches = [c for c in columns if c.lower() == requested.lower()]
        if len(matches) == 1:
            return matches[0]
        raise GPTClassifierError(
            f"{where}: no {kind} column {requested!r}; available columns: {available}"
        )
    by_lower = {}
    for column in columns:
        by_lower.setdefault(column.lower(), column)
    for name in known:
        if name in by_lower:
            return by_lower[name]
    raise GPTClassifierError(
        f"{where}: no {kind} column found (tried {', '.join(known)}); available columns: "
        f"{available}; pass --{kind}-column"
    )


def _choose_columns(
    columns: Sequence[str], text_column: str | None, label_column: str | None, where: str
) -> tuple[str, str]:
    text_col = _pick_column(columns, text_column, TEXT_COLUMNS, "text", where)
    label_col = _pick_column(columns, label_column, LABEL_COLUMNS, "label", where)
    if text_col == label_col:
        raise GPTClassifierError(
            f"{where}: the text and label columns are the same column {text_col!r}"
        )
    return text_col, label_col


def _read_delimited(
    text: str, source: str, fmt: str, text_column: str | None, label_column: str | None
) -> Iterator[Record]:
    if fmt == "csv":
        rows = _csv_rows(text, source)
    else:
        rows = ((n, line.split("\t")) for n, line in _lines(text) if line.strip())
    header: list[str] | None = None
    text_index = label_index = 0
    for number, row in rows:
        if not row or not any(cell.strip() for cell in row):
            continue
        if header is None:
            header = [cell.strip() for cell in row]
            text_col, label_col = _choose_columns(
                header, text_column, label_column, f"{source}:{number}"
            )
            text_index, label_index = header.index(text_col), header.index(label_col)
            continue
        if len(row) != len(header):
            raise GPTClassifierError(
                f"{source}:{number}: {len(row)} field(s) but the header has {len(header)}"
                + (
                    "; tab-separated fields are not quoted, so a text holding a tab breaks it"
                    if fmt == "tsv"
                    else ""
                )
            )
        yield _record(row[text_index], row[label_index], source, number)


def _csv_rows(text: str, source: str) -> Iterator[tuple[int, list[str]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    start = 1
    try:
        for row in reader:
            yield start, row
            start = reader.line_num + 1
    except csv.Error as exc:
        raise GPTClassifierError(f"{source}:{reader.line_num}: malformed CSV ({exc})") from None


def _read_jsonl(
    text: str, source: str, text_column: str | None, label_column: str | None
) -> Iterator[Record]:
    columns: tuple[str, str] | None = None
    for number, line in _lines(text):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise GPTClassifierError(f"{source}:{number}: invalid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise GPTClassifierError(
                f"{source}:{number}: expected a JSON object per line, got {type(obj).__name__}"
            )
        if columns is None:
            columns = _choose_columns(list(obj), text_column, label_column, f"{source}:{number}")
        missing = [c for c in columns if c not in obj]
        if missing:
            available = ", ".join(repr(k) for k in obj) or "none"
            raise GPTClassifierError(
                f"{source}:{number}: no {missing[0]!r} key; available keys: {available}"
            )
        yield _record(obj[columns[0]], obj[columns[1]], source, number)


def _read_parquet(path: Path, text_column: str | None, label_column: str | None) -> list[Record]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        pq = None
    source = str(path)
    try:
        if pq is not None:
            table = pq.read_table(path)
            columns = list(table.column_names)
            text_col, label_col = _choose_columns(columns, text_column, label_column, source)
            texts = table.column(text_col).to_pylist()
            labels = table.column(label_col).to_pylist()
        else:
            try:
                import pandas as pd
            except ImportError:
                raise GPTClassifierError(
                    f"{path}: reading Parquet needs pyarrow (pip install pyarrow), which is not "
                    "installed; or convert the file to CSV, TSV or JSON lines"
                ) from None
            frame = pd.read_parquet(path)
            columns = [str(c) for c in frame.columns]
            text_col, label_col = _choose_columns(columns, text_column, label_column, source)
            texts = frame[text_col].tolist()
            labels = frame[label_col].tolist()
    except GPTClassifierError:
        raise
    except Exception as exc:  # pyarrow/pandas raise their own types for unreadable files
        raise GPTClassifierError(
            f"{path}: cannot read as Parquet ({type(exc).__name__}: {exc})"
        ) from None
    # Row numbers take the place of line numbers (1-based).
    return [
        _record(t, lab, source, i)
        for i, (t, lab) in enumerate(zip(texts, labels, strict=True), start=1)
    ]
