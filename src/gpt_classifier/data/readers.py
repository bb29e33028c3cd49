"""Text files read row by row: one parser per format serves the labelled reader
(``read_records``) and the reader of texts to classify (``streaming.py``), so a file means the
same to both. Formats (``--format``) and the suffixes that pick them: ``sms`` (``label<TAB>text``,
no header, no quoting), ``tsv`` (header, unquoted; ``.tsv``, ``.tab``, ``.txt``, none), ``csv``
(RFC 4180), ``jsonl`` (``.jsonl``, ``.ndjson``), ``parquet`` (pyarrow or pandas; ``.parquet``,
``.pq``), ``lines`` (texts to classify only). A ``.txt``/suffix-less (labelled: ``.tsv`` too)
file whose first line names no column is headerless: ``sms`` when labelled, ``lines`` when not.
UTF-8 (a BOM ignored); lines break at ``\n``, ``\r\n``, ``\r`` only; texts kept verbatim,
labels stripped.

Runaway quotes: a CSV field over several lines whose quotes do not close cleanly (one stray
``"``) is an error naming its first line (``lenient``: a warning). One that closes but spans over
``MAX_FIELD_LINES`` lines or holds lines that parse as records (labelled: with a label of the
file; else ``UNLABELLED_RECORD_LINES`` of them) is a warning to the ``gpt_classifier.data``
logger: a real text may do that.
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import json
import logging
import os
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..errors import GPTClassifierError

logger = logging.getLogger("gpt_classifier.data")

FORMATS = ("sms", "tsv", "csv", "jsonl", "parquet")
TEXT_FORMATS = (*FORMATS, "lines")
TEXT_COLUMNS = (
    *("text", "sentence", "message", "sms", "content", "review", "document", "body", "comment"),
    "tweet",
)
LABEL_COLUMNS = ("label", "labels", "class", "category", "target", "sentiment", "y")
# One unbalanced quote is common, a 100-line text in one CSV cell is rare.
MAX_FIELD_LINES = 100
# Without labels one comma already makes a line of a text look like a two-column record.
UNLABELLED_RECORD_LINES = 3

_SUFFIX_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
_SUFFIX_FORMATS |= {".pq": "parquet", ".tsv": "tsv", ".tab": "tsv", ".txt": "tsv", "": "tsv"}
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_MAX_FIELD_SIZE = 2**31 - 1  # csv.field_size_limit takes a C long, 32 bits on Windows
_field_limit_lock = threading.Lock()
_READ_BYTES = 1 << 20
PathLike = str | os.PathLike[str]


@dataclass(frozen=True, slots=True)
class Record:
    """One labelled example; ``source`` and ``line`` (for messages) take no part in equality."""

    text: str
    label: str
    source: str = field(default="", compare=False)
    line: int = field(default=0, compare=False)

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}" if self.line else self.source


@dataclass(frozen=True, slots=True)
class TextRow:
    """One text to classify and every field of its row (kept for an output file)."""

    text: str
    fields: dict[str, str]
    source: str = field(default="", compare=False)
    line: int = field(default=0, compare=False)


def detect_format(
    path: PathLike,
    text_column: str | None = None,
    label_column: str | None = None,
    *,
    labelled: bool = True,
) -> str:
    """The format of ``path`` from its name and a tab-separated file's first line."""
    path = Path(path)
    if path.name == "SMSSpamCollection":
        return "sms"
    if path.suffix.lower() not in _SUFFIX_FORMATS:
        raise GPTClassifierError(
            f"{path}: cannot tell the format from the suffix {path.suffix!r}; "
            f"pass --format ({', '.join(FORMATS)})"
        )
    fmt = _SUFFIX_FORMATS[path.suffix.lower()]
    fields = _first_fields(path) if fmt == "tsv" else []
    lowered = {f.lower() for f in fields}
    wanted = {c.lower() for c in (text_column, label_column) if c}
    if fmt != "tsv" or wanted & lowered or lowered & {*TEXT_COLUMNS, *LABEL_COLUMNS}:
        return fmt
    if labelled:
        return "sms" if len(fields) == 2 else fmt
    return "lines" if path.suffix.lower() in (".txt", "") else fmt


def resolve_file(
    path: PathLike, kind: str, fmt: str | None, allowed: Sequence[str], detect: Any
) -> tuple[Path, str]:
    """The existing file ``path`` and its format: ``fmt`` (one of ``allowed``) or ``detect``'s."""
    path = Path(path)
    if not path.exists():
        raise GPTClassifierError(f"{kind} not found: {path}")
    if path.is_dir():
        raise GPTClassifierError(f"{path} is a directory, not a data file")
    if fmt is not None and fmt not in allowed:
        raise GPTClassifierError(f"unknown format {fmt!r}; expected one of {', '.join(allowed)}")
    return path, fmt or detect(path)


def _first_fields(path: Path) -> list[str]:
    """The tab-separated fields of the first non-blank line in the first MiB (any header)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(_READ_BYTES)
    except OSError:
        return []
    text = head.decode("utf-8", errors="replace").removeprefix("\ufeff")
    line = next((line for line in _LINE_BREAK.split(text) if line.strip()), None)
    return [f.strip() for f in line.split("\t")] if line is not None else []


def open_text(path: Path) -> IO[str]:
    """``path`` for reading; ``newline=""`` keeps each line's ending (the csv module needs it)."""
    try:
        return path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise GPTClassifierError(f"cannot read {path} ({exc.strerror or exc})") from None


def check_utf8(path: Path) -> None:
    """Raise unless the file is readable, not blank and UTF-8 throughout (read a MiB at a time)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, blank = 0, True
    try:
        with path.open("rb") as handle:
            while True:
                chunk = handle.read(_READ_BYTES)
                pending = len(decoder.getstate()[0])
                try:
                    decoder.decode(chunk, final=not chunk)
                except UnicodeDecodeError as exc:
                    bad = offset - pending + exc.start
                    raise _not_utf8(path, bad, exc.object[exc.start]) from None
                if not chunk:
                    break
                blank = blank and not chunk.strip()
                offset += len(chunk)
    except OSError as exc:
        raise GPTClassifierError(f"cannot read {path} ({exc.strerror or exc})") from None
    if blank:
        raise GPTClassifierError(f"{path}: the file is empty")


def _not_utf8(path: Path, offset: int, byte: int) -> GPTClassifierError:
    """The error naming the line and column of byte ``offset``."""
    breaks, last_break, position, after_cr = 0, -1, 0, False
    with path.open("rb") as handle:
        while position < offset:
            chunk = handle.read(min(_READ_BYTES, offset - position))
            breaks += chunk.count(b"\n") + chunk.count(b"\r") - chunk.count(b"\r\n")
            if after_cr and chunk.startswith(b"\n"):
                breaks -= 1  # a \r\n split across two reads is one break
            found = max(chunk.rfind(b"\n"), chunk.rfind(b"\r"))
            if found >= 0:
                last_break = position + found
            after_cr = chunk.endswith(b"\r")
            position += len(chunk)
    return GPTClassifierError(
        f"{path}:{breaks + 1}: not valid UTF-8 (byte 0x{byte:02x} at byte offset {offset}, "
        f"column {offset - last_break}); re-save the file as UTF-8"
    )


def _numbered_lines(handle: IO[str]) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(handle, start=1):
        yield number, line.removesuffix("\n").removesuffix("\r")


def line_records(handle: IO[str], fmt: str, source: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line, values)`` of every non-blank line of an ``sms``, ``jsonl`` or ``lines`` file."""
    for number, line in _numbered_lines(handle):
        if not line.strip():
            continue
        if fmt == "lines":
            yield number, {"text": line}
        elif fmt == "sms":
            label, tab, text = line.partition("\t")
            if not tab:
                raise GPTClassifierError(
                    f"{source}:{number}: expected 'label<TAB>text' but the line has no tab"
                )
            yield number, {"label": label, "text": text}
        else:
            yield number, _json_object(line, source, number)


def _json_object(line: str, source: str, number: int) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except ValueError as exc:  # JSONDecodeError, and ints too long to convert
        message = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise GPTClassifierError(f"{source}:{number}: invalid JSON ({message})") from None
    except RecursionError:
        raise GPTClassifierError(f"{source}:{number}: invalid JSON (nested too deeply)") from None
    if not isinstance(obj, dict):
        raise GPTClassifierError(
            f"{source}:{number}: expected a JSON object per line, got {type(obj).__name__}"
        )
    return obj


def delimited_rows(
    handle: IO[str], fmt: str, source: str, counter: list[int] | None = None
) -> Iterator[tuple[int, list[str], bool]]:
    """``(start line, cells, broken)`` of every non-blank CSV/TSV row, the header first;
    ``broken``: a CSV row over several lines whose quotes do not close cleanly.
    ``counter[0]`` counts the non-blank physical lines read."""
    if fmt == "tsv":
        for number, line in _numbered_lines(handle):
            if counter is not None and line.strip():
                counter[0] += 1
            cells = line.split("\t")
            if any(cell.strip() for cell in cells):
                yield number, cells, False
        return
    raw: list[str] = []

    def lines() -> Iterator[str]:
        for line in handle:
            raw.append(line)
            if counter is not None and line.strip():
                counter[0] += 1
            yield line

    # No field can be longer than the file: any text our own writer wrote reads back.
    limit = min(os.fstat(handle.fileno()).st_size + 1, _MAX_FIELD_SIZE)
    reader, start = csv.reader(lines()), 1
    while True:
        with _field_limit_lock:  # a process-wide setting: lifted for one row at a time
            previous = csv.field_size_limit()
            csv.field_size_limit(max(previous, limit))
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise GPTClassifierError(
                    f"{source}:{reader.line_num}: malformed CSV ({exc})"
                ) from None
            finally:
                csv.field_size_limit(previous)
        end = reader.line_num
        broken = end > start and not _strict_row("".join(raw))
        raw.clear()
        if cells and any(cell.strip() for cell in cells):
            yield start, cells, broken
        start = end + 1


def _strict_row(raw: str) -> bool:
    try:
        list(csv.reader(io.StringIO(raw, newline=""), strict=True))
    except csv.Error:
        return False
    return True


def header_of(cells: list[str], where: str) -> list[str]:
    """A CSV/TSV header's column names; a name given twice is refused (which one is meant?)."""
    header = [cell.strip() for cell in cells]
    repeated = next((c for i, c in enumerate(header) if c and c in header[:i]), None)
    if repeated is not None:
        raise GPTClassifierError(f"{where}: the header names column {repeated!r} twice")
    return header


def check_width(cells: list[str], header: list[str], source: str, number: int, fmt: str) -> None:
    if len(cells) != len(header):
        tab = "; tab-separated fields are not quoted, so a text holding a tab breaks it"
        raise GPTClassifierError(
            f"{source}:{number}: {len(cells)} field(s) but the header has {len(header)}"
            + (tab if fmt == "tsv" else "")
        )


PARQUET_BATCH_ROWS = 4096  # rows decoded at a time: memory does not grow with the file


def parquet_rows(path: Path) -> tuple[list[str], Iterator[tuple[int, dict[str, Any]]]]:
    """The column names and ``(row number, values)`` of every row (numbers from 1), decoded
    ``PARQUET_BATCH_ROWS`` at a time as they are iterated."""
    try:
        columns, batches = _parquet_batches(path)
    except GPTClassifierError:
        raise
    except Exception as exc:  # pyarrow/pandas raise their own types for unreadable files
        raise _not_parquet(path, exc) from None
    return columns, _numbered_rows(path, columns, batches)


def _numbered_rows(
    path: Path, columns: list[str], batches: Iterator[list[list[Any]]]
) -> Iterator[tuple[int, dict[str, Any]]]:
    number = 0
    try:
        for batch in batches:
            for row in zip(*batch, strict=True):
                number += 1
                yield number, dict(zip(columns, row, strict=True))
    except Exception as exc:  # a broken page further on
        raise _not_parquet(path, exc) from None


def _not_parquet(path: Path, exc: Exception) -> GPTClassifierError:
    return GPTClassifierError(f"{path}: cannot read as Parquet ({type(exc).__name__}: {exc})")


def _parquet_batches(path: Path) -> tuple[list[str], Iterator[list[list[Any]]]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        try:
            import pandas as pd
        except ImportError:
            raise GPTClassifierError(
                f"{path}: reading Parquet needs pyarrow (pip install pyarrow), which is not "
                "installed; or convert the file to CSV, TSV or JSON lines"
            ) from None
        frame = pd.read_parquet(path)
        values = [frame.iloc[:, i].tolist() for i in range(frame.shape[1])]
        return [str(c) for c in frame.columns], iter([values])
    file = pq.ParquetFile(path)
    batches = file.iter_batches(batch_size=PARQUET_BATCH_ROWS)
    columns = [str(name) for name in file.schema_arrow.names]
    return columns, ([column.to_pylist() for column in batch.columns] for batch in batches)


@dataclass(frozen=True)
class _Runaway:
    line: int  # where the field starts
    lines: int  # how many lines it spans
    record_line: int | None  # the first continuation line that looks like a record
    broken: bool  # its quotes do not close cleanly


class Runaways:
    """The quoted fields over several lines of a CSV/TSV file's rows, fed one row at a time;
    ``labels``: the file's labels, for a labelled file (the rules: module docstring)."""

    def __init__(self, width: int, label_index: int | None = None, labels: set[str] | None = None):
        self.width, self.label_index, self.labels = width, label_index, labels
        self.needed = 1 if labels is not None else UNLABELLED_RECORD_LINES
        self.count = 0
        self.first: _Runaway | None = None
        self.first_broken: _Runaway | None = None

    def add(self, start: int, cells: list[str], broken: bool) -> None:
        line = start
        for cell in cells:
            parts = _LINE_BREAK.split(cell)
            found = [line + i for i, part in enumerate(parts[1:], 1) if self._is_record(part)]
            suspect = broken or len(parts) > MAX_FIELD_LINES or len(found) >= self.needed
            if len(parts) > 1 and suspect:
                spans = len(parts) - (parts[-1] == "")  # a final line break ends a line
                runaway = _Runaway(line, spans, found[0] if found else None, broken)
                self.count += 1
                self.first = self.first or runaway
                if broken and self.first_broken is None:
                    self.first_broken = runaway
            line += len(parts) - 1

    def _is_record(self, line: str) -> bool:
        if self.width < 2 or not line.strip():
            return False
        try:
            cells = next(csv.reader([line]), [])
        except csv.Error:
            return False
        if len(cells) != self.width:
            return False
        return self.labels is None or cells[self.label_index or 0].strip() in self.labels

    def report(self, *, rows: int, lines: int, source: str, lenient: bool) -> None:
        """Raise for a broken field (``lenient``: warn), warn for the others; ``lines``: the
        file's non-blank lines after the header."""
        if self.first is None:
            return
        counts = f"{rows} row(s) read from {lines} non-blank line(s) after the header"
        if self.first_broken is not None and not lenient:
            first = self.first_broken
            raise GPTClassifierError(
                f"{source}:{first.line}: a quoted field starts here, runs over {first.lines} "
                f"lines and its quotes do not close cleanly{_swallowed(first)} ({counts}); an "
                "unbalanced double quote? fix it, or pass --lenient to read the file as parsed"
            )
        first = self.first
        broken = "with quotes that do not close cleanly"
        cause = broken if first.broken else "holding lines that look like records"
        hint = "; if that is an unbalanced double quote, fix it"
        logger.warning(
            f"{source}:{first.line}: warning: {self.count} quoted field(s) run over several "
            f"lines {cause}, the first from here over {first.lines} lines{_swallowed(first)}; "
            f"{counts}; rows kept as parsed"
            + (" (--lenient)" if self.first_broken is not None else hint)
        )


def _swallowed(runaway: _Runaway) -> str:
    if runaway.record_line is None:
        return ""
    return f", swallowing line {runaway.record_line}, which looks like a record of its own"


def _is_missing(value: Any) -> bool:
    nan = isinstance(value, float) and value != value  # pandas' missing value
    return value is None or nan or (isinstance(value, str) and not value.strip())


def _cell(value: Any) -> str:
    if isinstance(value, (bool, dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else str(value)


def _check_text(text: Any, where: str, empty: str) -> None:
    if _is_missing(text):
        raise GPTClassifierError(f"{where}: {empty}")
    if not isinstance(text, str):
        raise GPTClassifierError(
            f"{where}: text must be a string, got {json.dumps(text, default=str)}"
        )
    _check_encodable(text, where)


def _check_encodable(value: str, where: str) -> None:
    # JSON's "\ud800" is a lone surrogate, which no UTF-8 file (a split, an output) can hold.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise GPTClassifierError(
            f"{where}: invalid Unicode (unpaired surrogate "
            f"U+{ord(value[exc.start]):04X} at character {exc.start + 1})"
        ) from None


def make_record(text: Any, label: Any, source: str, line: int) -> Record:
    """A checked ``Record``: a non-empty string text, a string or integral label."""
    where = f"{source}:{line}"
    if hasattr(label, "item") and not isinstance(label, (str, bytes)):
        label = label.item()  # numpy scalars from Parquet/pandas
    if _is_missing(label):
        raise GPTClassifierError(f"{where}: missing label")
    if isinstance(label, bool) or not isinstance(label, (str, int, float)):
        raise GPTClassifierError(
            f"{where}: label must be a string or an integer, got {json.dumps(label, default=str)}"
        )
    if isinstance(label, float):
        if not label.is_integer():
            raise GPTClassifierError(f"{where}: label {label!r} is not an integer")
        label = int(label)
    _check_text(text, where, "empty text")
    label = str(label).strip()
    _check_encodable(label, where)
    return Record(text=text, label=label, source=source, line=line)


def text_row(
    values: dict[str, Any], column: str, columns: Sequence[str], source: str, number: int
) -> TextRow:
    """One checked row to classify: its text in ``column``, its fields in ``columns``."""
    if column not in values:
        raise GPTClassifierError(f"{source}:{number}: no {column!r} key")
    _check_text(values[column], f"{source}:{number}", f"empty text in column {column!r}")
    fields = {c: _cell(values.get(c)) for c in columns}
    return TextRow(text=values[column], fields=fields, source=source, line=number)


def _pick_column(
    columns: Sequence[str], requested: str | None, known: Sequence[str], kind: str, where: str
) -> str:
    available = ", ".join(repr(c) for c in columns) or "none"
    if requested is None:
        found = _known_column(columns, known)
        if found is not None:
            return found
        raise GPTClassifierError(
            f"{where}: no {kind} column found (tried {', '.join(known)}); available columns: "
            f"{available}; pass --{kind}-column"
        )
    matches = [c for c in columns if c.lower() == requested.lower()]
    if requested in columns or len(matches) == 1:
        return requested if requested in columns else matches[0]
    raise GPTClassifierError(
        f"{where}: no {kind} column {requested!r}; available columns: {available}"
    )


def _known_column(columns: Sequence[str], known: Sequence[str]) -> str | None:
    """The first of ``known`` among ``columns``, in any case (the file's first spelling)."""
    by_lower: dict[str, str] = {}
    for column in columns:
        by_lower.setdefault(column.lower(), column)
    return next((by_lower[name] for name in known if name in by_lower), None)


def _choose_columns(columns: Sequence[str], wanted: Sequence[str | None], where: str) -> list[str]:
    text_col = _pick_column(columns, wanted[0], TEXT_COLUMNS, "text", where)
    label_col = _pick_column(columns, wanted[1], LABEL_COLUMNS, "label", where)
    if text_col == label_col:
        raise GPTClassifierError(
            f"{where}: the text and label columns are the same column {text_col!r}"
        )
    return [text_col, label_col]


def text_column(columns: Sequence[str], wanted: str | None, source: str) -> str:
    """The column of a file to classify that holds the text."""
    listed = ", ".join(repr(c) for c in columns) or "(none)"  # repr(): no line break in a message
    if wanted is not None and wanted not in columns:
        raise GPTClassifierError(f"{source}: no column {wanted!r}; columns: {listed}")
    found = wanted if wanted is not None else _known_column(columns, TEXT_COLUMNS)
    if found is None and len(columns) == 1:
        found = columns[0]
    if found is None:
        raise GPTClassifierError(
            f"{source}: which column holds the text? pass --text-column (columns: {listed})"
        )
    return found


def read_records(
    path: PathLike,
    fmt: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    *,
    allow_empty: bool = False,
    lenient: bool = False,
) -> list[Record]:
    """All examples of a labelled file; ``GPTClassifierError`` names the file and line of the
    first problem. ``allow_empty``: a header without rows gives ``[]``; ``lenient``: a runaway
    quoted CSV field is a warning, not an error."""
    detect = functools.partial(detect_format, text_column=text_column, label_column=label_column)
    path, fmt = resolve_file(path, "data file", fmt, FORMATS, detect)
    source, wanted = str(path), (text_column, label_column)
    if fmt == "sms" and any(wanted):
        raise GPTClassifierError(
            f"{path}: format sms (headerless label<TAB>text) has no named columns; "
            "drop --text-column/--label-column or use a file with a header"
        )
    if fmt == "parquet":
        names, rows = parquet_rows(path)
        text, label = _choose_columns(names, wanted, source)
        records = [make_record(v[text], v[label], source, n) for n, v in rows]
    else:
        check_utf8(path)
        with open_text(path) as handle:
            if fmt in ("csv", "tsv"):
                records = _delimited_records(handle, source, fmt, wanted, lenient)
            else:
                records = _line_records(handle, source, fmt, wanted)
    if not records and not allow_empty:
        raise GPTClassifierError(f"{path}: no examples in the file")
    return records


def _line_records(
    handle: IO[str], source: str, fmt: str, wanted: Sequence[str | None]
) -> list[Record]:
    columns = ["text", "label"] if fmt == "sms" else None
    records = []
    for number, values in line_records(handle, fmt, source):
        columns = columns or _choose_columns(list(values), wanted, f"{source}:{number}")
        missing = [c for c in columns if c not in values]
        if missing:
            available = ", ".join(repr(k) for k in values) or "none"
            raise GPTClassifierError(
                f"{source}:{number}: no {missing[0]!r} key; available keys: {available}"
            )
        records.append(make_record(values[columns[0]], values[columns[1]], source, number))
    return records


def _delimited_records(
    handle: IO[str], source: str, fmt: str, wanted: Sequence[str | None], lenient: bool
) -> list[Record]:
    lines = [0]
    rows = list(delimited_rows(handle, fmt, source, lines))
    if not rows:
        return []
    header = header_of(rows[0][1], f"{source}:{rows[0][0]}")
    columns = _choose_columns(header, wanted, f"{source}:{rows[0][0]}")
    text, label = header.index(columns[0]), header.index(columns[1])
    data = rows[1:]
    labels = {cells[label].strip() for _, cells, _ in data if len(cells) == len(header)}
    runaways = Runaways(len(header), label, labels)
    for number, cells, broken in data:
        runaways.add(number, cells, broken)
    runaways.report(rows=len(data), lines=lines[0] - 1, source=source, lenient=lenient)
    records = []
    for number, cells, _ in data:
        check_width(cells, header, source, number, fmt)
        records.append(make_record(cells[text], cells[label], source, number))
    return records
