"""Reading text files (SMS-style TSV, TSV, CSV, JSON lines, Parquet, plain lines) into records.

Labelled files (``read_records``, what ``train``, ``data prepare`` and ``evaluate`` read) give
``Record`` objects; files of texts to classify (``read_unlabelled``, what ``classify --file``
reads) give ``TextRow`` objects. Both go through the same parsers, so a file means the same to
both.

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
* ``lines`` (texts to classify only): one text per line, taken whole (tabs and quotes included).

A ``.txt`` or suffix-less file is guessed from its first non-blank line: a header row when that
line names a requested column or a known one (``TEXT_COLUMNS``, ``LABEL_COLUMNS``), read as
``tsv``; otherwise, for labelled data, headerless ``label<TAB>text`` (``sms``, which needs exactly
two fields on that line) and, for texts to classify, ``lines``. A ``.tsv``/``.tab`` file guesses
``sms`` the same way for labelled data and is always ``tsv`` for texts to classify. Pass ``fmt``
(``--format``) to override the guess.

Line breaks are ``\n``, ``\r\n`` and ``\r`` and nothing else, in every format: U+2028,
U+0085, form feeds and vertical tabs are ordinary characters of a text (``str.splitlines`` would
break lines there). Files are UTF-8 (a leading byte-order mark is ignored).

Runaway quotes. A CSV field may hold line breaks inside double quotes, so one unbalanced quote can
swallow the rest of the file into a single text. The rule, for a quoted field with line breaks:

* its quotes do not close cleanly (the file ends inside them, or the closing quote is followed
  by more text, not by a comma or a line break): an error naming the line where the field
  starts, with the rows read and the file's non-blank lines; with ``lenient=True``
  (``--lenient``) a warning with those counts instead, and the rows are kept as parsed. A file
  written by any CSV writer never trips this, so files this program writes always read back.
* it closes cleanly but spans more than ``MAX_FIELD_LINES`` lines or holds a line that looks
  like a record of its own (parsed alone: as many fields as the header, two or more, and in a
  labelled file a label that rows of the file have; texts to classify have no labels to
  compare, so there it takes ``UNLABELLED_RECORD_LINES`` such lines): a warning only, since a
  real text can hold such lines (``"Totals:\n1,200"`` with labels 0/1).

Warnings go to the ``gpt_classifier.data`` logger (stderr in the CLI). TSV and ``sms`` fields are
never quoted, so there every line is one row and nothing can run away.

Text columns tried by default (case-insensitive): ``TEXT_COLUMNS``; label columns:
``LABEL_COLUMNS``. Texts are kept verbatim (no stripping, so exact-duplicate detection sees the
file's text); labels are stripped of surrounding whitespace.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import GPTClassifierError

logger = logging.getLogger("gpt_classifier.data")

FORMATS = ("sms", "tsv", "csv", "jsonl", "parquet")
TEXT_FORMATS = (*FORMATS, "lines")

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

# A quoted CSV field spanning more lines than this is taken for a runaway quote (see the module
# docstring); a text that long in one CSV cell is rare, one unbalanced quote is not.
MAX_FIELD_LINES = 100
# Without labels, one comma in a line of a multi-line text already makes it look like a record
# of a two-column file, so it takes several such lines.
UNLABELLED_RECORD_LINES = 3

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

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# csv.field_size_limit takes a C long, 32 bits on Windows.
_MAX_FIELD_SIZE = 2**31 - 1
_field_limit_lock = threading.Lock()


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


@dataclass(frozen=True, slots=True)
class TextRow:
    """One text to classify and every field of its row (kept for an output file)."""

    text: str
    fields: dict[str, str]
    source: str = field(default="", compare=False)
    line: int = field(default=0, compare=False)


def detect_format(
    path: str | os.PathLike[str],
    text_column: str | None = None,
    label_column: str | None = None,
) -> str:
    """The format of labelled ``path`` from its name (and, for tab-separated files, its first
    line)."""
    path = Path(path)
    if path.name == "SMSSpamCollection":
        return "sms"
    fmt = _suffix_format(path)
    if fmt == "tsv":
        first = _first_line(path)
        fields = [f.strip() for f in first.split("\t")] if first is not None else []
        if len(fields) == 2 and not _looks_like_header(fields, text_column, label_column):
            return "sms"
    return fmt


def detect_text_format(path: str | os.PathLike[str], text_column: str | None = None) -> str:
    """The format of a file of texts to classify: as :func:`detect_format`, except that a
    ``.txt`` or suffix-less file without a header row is ``lines`` (one text per line)."""
    path = Path(path)
    if path.name == "SMSSpamCollection":
        return "sms"
    fmt = _suffix_format(path)
    if fmt == "tsv" and path.suffix.lower() in (".txt", ""):
        first = _first_line(path)
        fields = [f.strip() for f in first.split("\t")] if first is not None else []
        if not _looks_like_header(fields, text_column, None):
            return "lines"
    return fmt


def read_records(
    path: str | os.PathLike[str],
    fmt: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    *,
    allow_empty: bool = False,
    lenient: bool = False,
) -> list[Record]:
    """All examples of a labelled file; raises ``GPTClassifierError`` naming the file and line of
    the first problem (missing column, empty text, missing label, undecodable bytes, runaway
    quote, ...). ``allow_empty``: a file with a header and no rows gives ``[]`` instead of an
    error. ``lenient``: a runaway quoted CSV field is a warning, not an error."""
    path = _existing(path, "data file")
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
            records = _read_delimited(text, str(path), fmt, text_column, label_column, lenient)
    if not records and not allow_empty:
        raise GPTClassifierError(f"{path}: no examples in the file")
    return records


def read_unlabelled(
    path: str | os.PathLike[str],
    fmt: str | None = None,
    text_column: str | None = None,
    *,
    lenient: bool = False,
) -> list[TextRow]:
    """Every text of a file to classify, with its row's fields; the text column is
    ``text_column`` or the first of ``TEXT_COLUMNS`` (or the only column). Raises
    ``GPTClassifierError`` naming the file and line of the first problem (empty text, missing
    column, runaway quote unless ``lenient``, ...)."""
    path = _existing(path, "input file")
    if fmt is None:
        fmt = detect_text_format(path, text_column)
    elif fmt not in TEXT_FORMATS:
        raise GPTClassifierError(
            f"unknown format {fmt!r}; expected one of {', '.join(TEXT_FORMATS)}"
        )
    source = str(path)
    rows: list[tuple[int, dict[str, Any]]]
    if fmt == "parquet":
        columns, rows = _parquet_rows(path)
    else:
        text = _decode(path)
        if fmt == "lines":
            columns = ["text"]
            rows = [(n, {"text": line}) for n, line in _lines(text) if line.strip()]
        elif fmt == "sms":
            columns = ["label", "text"]
            rows = [(n, {"label": label, "text": t}) for n, label, t in _sms_lines(text, source)]
        elif fmt == "jsonl":
            objects = list(_jsonl_objects(text, source))
            columns = list(dict.fromkeys(key for _, obj in objects for key in obj))
            rows = objects
        else:
            table = _delimited_table(text, source, fmt)
            columns = table.header
            _check_runaways(text, source, table, None, lenient)
            rows = []
            for number, cells in table.data:
                _check_width(cells, columns, source, number, fmt)
                rows.append((number, dict(zip(columns, cells, strict=True))))
    if not rows:
        raise GPTClassifierError(f"{path}: no texts in the file")
    first_columns = list(rows[0][1]) if fmt == "jsonl" else columns
    column = _text_column(first_columns, text_column, path)
    return [text_row(values, column, columns, source, number) for number, values in rows]


def text_row(
    values: dict[str, Any], column: str, columns: Sequence[str], source: str, number: int
) -> TextRow:
    """One row to classify, checked: its text in ``column``, its fields in ``columns``."""
    if column not in values:
        raise GPTClassifierError(f"{source}:{number}: no {column!r} key")
    value = values[column]
    if _is_missing(value):
        raise GPTClassifierError(f"{source}:{number}: empty text in column {column!r}")
    if not isinstance(value, str):
        raise GPTClassifierError(
            f"{source}:{number}: text must be a string, got {json.dumps(value, default=str)}"
        )
    _check_encodable(value, source, number)
    fields = {c: _cell(values.get(c)) for c in columns}
    return TextRow(text=value, fields=fields, source=source, line=number)


# --- decoding ---------------------------------------------------------------------------------


def _existing(path: str | os.PathLike[str], kind: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise GPTClassifierError(f"{kind} not found: {path}")
    if path.is_dir():
        raise GPTClassifierError(f"{path} is a directory, not a data file")
    return path


def _suffix_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in _SUFFIX_FORMATS:
        raise GPTClassifierError(
            f"{path}: cannot tell the format from the suffix {path.suffix!r}; "
            f"pass --format ({', '.join(FORMATS)})"
        )
    return _SUFFIX_FORMATS[suffix]


def _decode(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise GPTClassifierError(f"cannot read {path} ({exc.strerror or exc})") from None
    if not data.strip():
        raise GPTClassifierError(f"{path}: the file is empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = len(_LINE_BREAK.split(before.decode("utf-8", errors="replace")))
        column = exc.start - max(before.rfind(b"\n"), before.rfind(b"\r"))
        raise GPTClassifierError(
            f"{path}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at byte offset "
            f"{exc.start}, column {column}); re-save the file as UTF-8"
        ) from None
    return text.removeprefix("\ufeff")


def _first_line(path: Path) -> str | None:
    """The first non-blank line, from the first MiB (enough for any header row)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(1 << 20)
    except OSError:
        return None
    text = head.decode("utf-8", errors="replace").removeprefix("\ufeff")
    for line in _LINE_BREAK.split(text):
        if line.strip():
            return line
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
    """Numbered lines, broken at ``\\n``, ``\\r\\n`` and ``\\r`` only (as the csv module does)."""
    yield from enumerate(_LINE_BREAK.split(text), start=1)


def _physical_records(text: str) -> int:
    return sum(1 for _, line in _lines(text) if line.strip())


# --- formats ----------------------------------------------------------------------------------


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and value != value:  # NaN: pandas' missing value
        return True
    return isinstance(value, str) and not value.strip()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _check_encodable(value: str, source: str, line: int) -> None:
    # JSON's "\ud800" decodes to a lone surrogate, which no UTF-8 file (a split file, an
    # output CSV) can hold: reject it here rather than fail while writing.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise GPTClassifierError(
            f"{source}:{line}: invalid Unicode (unpaired surrogate "
            f"U+{ord(value[exc.start]):04X} at character {exc.start + 1})"
        ) from None


def _record(text: Any, label: Any, source: str, line: int) -> Record:
    if hasattr(label, "item") and not isinstance(label, (str, bytes)):
        label = label.item()  # numpy scalars from Parquet/pandas
    if _is_missing(label):
        raise GPTClassifierError(f"{source}:{line}: missing label")
    if isinstance(label, bool) or not isinstance(label, (str, int, float)):
        raise GPTClassifierError(
            f"{source}:{line}: label must be a string or an integer, got "
            f"{json.dumps(label, default=str)}"
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
    label = str(label).strip()
    _check_encodable(text, source, line)
    _check_encodable(label, source, line)
    return Record(text=text, label=label, source=source, line=line)


def _sms_lines(text: str, source: str) -> Iterator[tuple[int, str, str]]:
    for number, line in _lines(text):
        if line.strip():
            yield number, *sms_fields(line, source, number)


def sms_fields(line: str, source: str, number: int) -> tuple[str, str]:
    """``(label, text)`` of one non-blank ``label<TAB>text`` line."""
    label, tab, message = line.partition("\t")
    if not tab:
        raise GPTClassifierError(
            f"{source}:{number}: expected 'label<TAB>text' but the line has no tab"
        )
    return label, message


def _read_sms(text: str, source: str) -> Iterator[Record]:
    for number, label, message in _sms_lines(text, source):
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


def _text_column(columns: Sequence[str], wanted: str | None, file: Path) -> str:
    """The column of a file to classify that holds the text."""
    # Column names come from the file: repr() keeps a line break in one out of the message.
    listed = ", ".join(repr(c) for c in columns) or "(none)"
    if wanted is not None:
        if wanted in columns:
            return wanted
        raise GPTClassifierError(f"{file}: no column {wanted!r}; columns: {listed}")
    lowered = {}
    for column in columns:
        lowered.setdefault(column.lower(), column)
    for name in TEXT_COLUMNS:
        if name in lowered:
            return lowered[name]
    if len(columns) == 1:
        return columns[0]
    raise GPTClassifierError(
        f"{file}: which column holds the text? pass --text-column (columns: {listed})"
    )


@dataclass
class _Table:
    """A CSV or TSV file: the header, its line, and the data rows with the line each starts on
    (blank rows skipped)."""

    header: list[str]
    header_line: int
    data: list[tuple[int, list[str]]]
    # Start lines of CSV rows with a line break in a field whose quotes do not close cleanly.
    broken: set[int] = field(default_factory=set)


def _delimited_table(text: str, source: str, fmt: str) -> _Table:
    if fmt == "csv":
        rows, broken = _csv_rows(text, source)
    else:
        rows, broken = [(n, line.split("\t")) for n, line in _lines(text)], set()
    table = _Table([], 0, [], broken)
    for number, row in rows:
        if not row or not any(cell.strip() for cell in row):
            continue
        if not table.header_line:
            table.header, table.header_line = [cell.strip() for cell in row], number
        else:
            table.data.append((number, row))
    return table


def _check_width(cells: list[str], header: list[str], source: str, number: int, fmt: str) -> None:
    if len(cells) != len(header):
        raise GPTClassifierError(
            f"{source}:{number}: {len(cells)} field(s) but the header has {len(header)}"
            + (
                "; tab-separated fields are not quoted, so a text holding a tab breaks it"
                if fmt == "tsv"
                else ""
            )
        )


def _read_delimited(
    text: str,
    source: str,
    fmt: str,
    text_column: str | None,
    label_column: str | None,
    lenient: bool = False,
) -> list[Record]:
    table = _delimited_table(text, source, fmt)
    if not table.header_line:
        return []
    header = table.header
    text_col, label_col = _choose_columns(
        header, text_column, label_column, f"{source}:{table.header_line}"
    )
    text_index, label_index = header.index(text_col), header.index(label_col)
    _check_runaways(text, source, table, label_index, lenient)
    records = []
    for number, row in table.data:
        _check_width(row, header, source, number, fmt)
        records.append(_record(row[text_index], row[label_index], source, number))
    return records


def _csv_rows(text: str, source: str) -> tuple[list[tuple[int, list[str]]], set[int]]:
    """Every row with the line it starts on, and the start lines of rows that span lines and do
    not parse strictly (a quote left open at the end of the file, or closed with more text after
    it: what one unbalanced quote does).

    The field size limit is lifted to the length of the whole text (no field can be longer), so
    any text our own writer wrote reads back; the limit is process-wide, hence restored
    afterwards, and the lock."""
    rows = []
    broken = set()
    # Offset of every line's start, to cut a row's own text out of the file.
    starts = [0, *(match.end() for match in _LINE_BREAK.finditer(text))]
    with _field_limit_lock:
        previous = csv.field_size_limit()
        csv.field_size_limit(max(previous, min(len(text) + 1, _MAX_FIELD_SIZE)))
        try:
            reader = csv.reader(io.StringIO(text, newline=""))
            start = 1
            try:
                for row in reader:
                    rows.append((start, row))
                    end = reader.line_num
                    stop = starts[end] if end < len(starts) else len(text)
                    if end > start and not _strict_row(text[starts[start - 1] : stop]):
                        broken.add(start)
                    start = end + 1
            except csv.Error as exc:
                raise GPTClassifierError(
                    f"{source}:{reader.line_num}: malformed CSV ({exc})"
                ) from None
        finally:
            csv.field_size_limit(previous)
    return rows, broken


def _strict_row(raw: str) -> bool:
    try:
        list(csv.reader(io.StringIO(raw, newline=""), strict=True))
    except csv.Error:
        return False
    return True


@dataclass(frozen=True)
class _Runaway:
    line: int  # where the field starts
    lines: int  # how many lines it spans
    record_line: int | None  # the first continuation line that looks like a record
    broken: bool  # its quotes do not close cleanly


def _check_runaways(
    text: str, source: str, table: _Table, label_index: int | None, lenient: bool
) -> None:
    """Raise (or, ``lenient``, warn) on quoted fields whose quotes do not close cleanly, and warn
    about fields that look as if they swallowed further records; the rules are in the module
    docstring."""
    if not table.data:
        return
    width = len(table.header)
    labels = (
        {cells[label_index].strip() for _, cells in table.data if len(cells) == width}
        if label_index is not None
        else None
    )
    runaways = list(_runaways(table, label_index, labels))
    if not runaways:
        return
    broken = [r for r in runaways if r.broken]
    report_runaways(
        runaways[0],
        broken[0] if broken else None,
        len(runaways),
        rows=len(table.data),
        lines=_physical_records(text) - 1,  # less the header line
        source=source,
        lenient=lenient,
    )


def report_runaways(
    first: _Runaway,
    first_broken: _Runaway | None,
    count: int,
    *,
    rows: int,
    lines: int,
    source: str,
    lenient: bool,
) -> None:
    """The error (or, ``lenient``, the warning) for ``count`` runaway fields of a file of
    ``rows`` rows on ``lines`` non-blank lines after the header."""
    counts = f"{rows} row(s) read from {lines} non-blank line(s) after the header"
    broken = first_broken is not None
    if first_broken is not None and not lenient:
        first = first_broken
        raise GPTClassifierError(
            f"{source}:{first.line}: a quoted field starts here, runs over {first.lines} lines "
            f"and its quotes do not close cleanly{_swallowed(first)} ({counts}); an unbalanced "
            "double quote? fix it, or pass --lenient to read the file as parsed"
        )
    cause = (
        "with quotes that do not close cleanly"
        if first.broken
        else "holding lines that look like records"
    )
    logger.warning(
        "%s:%d: warning: %d quoted field(s) run over several lines %s, the first from here over "
        "%d lines%s; %s; rows kept as parsed%s",
        source,
        first.line,
        count,
        cause,
        first.lines,
        _swallowed(first),
        counts,
        " (--lenient)" if broken else "; if that is an unbalanced double quote, fix it",
    )


def _swallowed(runaway: _Runaway) -> str:
    if runaway.record_line is None:
        return ""
    return f", swallowing line {runaway.record_line}, which looks like a record of its own"


def _runaways(
    table: _Table, label_index: int | None, labels: set[str] | None
) -> Iterator[_Runaway]:
    needed = 1 if labels is not None else UNLABELLED_RECORD_LINES
    width = len(table.header)
    for start, cells in table.data:
        line = start
        for cell in cells:
            parts = _LINE_BREAK.split(cell)
            if len(parts) > 1:
                record_lines = []
                for offset, part in enumerate(parts[1:], start=1):
                    if _looks_like_record(part, width, label_index, labels):
                        record_lines.append(line + offset)
                        if len(record_lines) >= needed:
                            break
                broken = start in table.broken
                if broken or len(parts) > MAX_FIELD_LINES or len(record_lines) >= needed:
                    spans = len(parts) - (parts[-1] == "")  # a final line break ends a line
                    first = record_lines[0] if record_lines else None
                    yield _Runaway(line, spans, first, broken)
            line += len(parts) - 1


def _looks_like_record(
    line: str, width: int, label_index: int | None, labels: set[str] | None
) -> bool:
    if width < 2 or not line.strip():
        return False
    try:
        cells = next(csv.reader([line]), [])
    except csv.Error:
        return False
    if len(cells) != width:
        return False
    return labels is None or label_index is None or cells[label_index].strip() in labels


def _jsonl_objects(text: str, source: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in _lines(text):
        if line.strip():
            yield number, json_object(line, source, number)


def json_object(line: str, source: str, number: int) -> dict[str, Any]:
    """The JSON object of one non-blank line of a JSON-lines file."""
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


def _read_jsonl(
    text: str, source: str, text_column: str | None, label_column: str | None
) -> Iterator[Record]:
    columns: tuple[str, str] | None = None
    for number, obj in _jsonl_objects(text, source):
        if columns is None:
            columns = _choose_columns(list(obj), text_column, label_column, f"{source}:{number}")
        missing = [c for c in columns if c not in obj]
        if missing:
            available = ", ".join(repr(k) for k in obj) or "none"
            raise GPTClassifierError(
                f"{source}:{number}: no {missing[0]!r} key; available keys: {available}"
            )
        yield _record(obj[columns[0]], obj[columns[1]], source, number)


def _parquet_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    columns, values = _parquet_columns(path, lambda names: names)
    # Row numbers take the place of line numbers (1-based).
    table = zip(*values, strict=True)
    rows = [(i, dict(zip(columns, row, strict=True))) for i, row in enumerate(table, start=1)]
    return columns, rows


def _read_parquet(path: Path, text_column: str | None, label_column: str | None) -> list[Record]:
    source = str(path)
    _, (texts, labels) = _parquet_columns(
        path, lambda names: list(_choose_columns(names, text_column, label_column, source))
    )
    return [
        _record(t, lab, source, i)
        for i, (t, lab) in enumerate(zip(texts, labels, strict=True), start=1)
    ]


def _parquet_columns(
    path: Path, choose: Callable[[list[str]], list[str]]
) -> tuple[list[str], list[list[Any]]]:
    """The columns ``choose`` picks from the file's column names, and their values."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        pq = None
    try:
        if pq is not None:
            table = pq.read_table(path)
            chosen = choose([str(c) for c in table.column_names])
            return chosen, [table.column(c).to_pylist() for c in chosen]
        try:
            import pandas as pd
        except ImportError:
            raise GPTClassifierError(
                f"{path}: reading Parquet needs pyarrow (pip install pyarrow), which is not "
                "installed; or convert the file to CSV, TSV or JSON lines"
            ) from None
        frame = pd.read_parquet(path)
        frame.columns = [str(c) for c in frame.columns]
        chosen = choose(list(frame.columns))
        return chosen, [frame[c].tolist() for c in chosen]
    except GPTClassifierError:
        raise
    except Exception as exc:  # pyarrow/pandas raise their own types for unreadable files
        raise GPTClassifierError(
            f"{path}: cannot read as Parquet ({type(exc).__name__}: {exc})"
        ) from None
