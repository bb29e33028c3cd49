"""Text files read row by row: one parser per format (:func:`iter_rows`) and one checker
(:func:`scan_text_file`) under the labelled reader and the files to classify, so a file means the
same to both (formats, suffixes, headerless files, runaway quotes: docs/design.md, "Data files");
a file to classify is checked keeping only counts, then streamed (:func:`iter_text_rows`)."""

from __future__ import annotations

import codecs
import csv
import itertools
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..errors import GPTClassifierError

logger = logging.getLogger("gpt_classifier.data")

FORMATS = ("sms", "tsv", "csv", "jsonl", "parquet")
TEXT_FORMATS = (*FORMATS, "lines")
TABLE_FORMATS = ("csv", "tsv", "parquet")  # a header first
TEXT_COLUMNS = ("text", "sentence", "message", "sms", "content", "review", "document", "body")
TEXT_COLUMNS += ("comment", "tweet")
LABEL_COLUMNS = ("label", "labels", "class", "category", "target", "sentiment", "y")
MAX_FIELD_LINES = 100  # one unbalanced quote is common, a 100-line text in one CSV cell is rare
UNLABELLED_RECORD_LINES = 3  # unlabelled, one comma makes a line of text look like a record
PARQUET_BATCH_ROWS = 4096  # rows decoded at a time: memory does not grow with the file

_SUFFIX_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
_SUFFIX_FORMATS |= {".pq": "parquet", ".tsv": "tsv", ".tab": "tsv", ".txt": "tsv", "": "tsv"}
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_MAX_FIELD_SIZE = 2**31 - 1  # csv.field_size_limit takes a C long, 32 bits on Windows
_field_limit_lock = threading.Lock()
_READ_BYTES = 1 << 20
PathLike = str | os.PathLike[str]
Row = tuple[int, Any, bool]  # (line, a dict or a table's cells, quotes broken): see iter_rows


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


def detect_format(path: PathLike, *columns: str | None, labelled: bool = True) -> str:
    """The format of ``path`` from its name and a tab-separated file's first line."""
    path = Path(path)
    suffix = path.suffix.lower()
    if path.name == "SMSSpamCollection":
        return "sms"
    if suffix not in _SUFFIX_FORMATS:
        raise GPTClassifierError(
            f"{path}: cannot tell the format from the suffix {path.suffix!r}; "
            f"pass --format ({', '.join(FORMATS)})"
        )
    fmt = _SUFFIX_FORMATS[suffix]
    if fmt != "tsv":
        return fmt
    try:  # the tab-separated fields of the first non-blank line in the first MiB
        with path.open("rb") as handle:
            head = handle.read(_READ_BYTES).decode("utf-8", errors="replace")
    except OSError:
        head = ""
    lines = _LINE_BREAK.split(head.removeprefix("\ufeff"))
    fields = [f.strip().lower() for f in next((s for s in lines if s.strip()), "").split("\t")]
    wanted = {c.lower() for c in columns if c}
    if wanted & set(fields) or set(fields) & {*TEXT_COLUMNS, *LABEL_COLUMNS}:
        return fmt
    if labelled:
        return "sms" if len(fields) == 2 else fmt
    return "lines" if suffix in (".txt", "") else fmt


def resolve_file(
    path: PathLike, fmt: str | None, *columns: str | None, labelled: bool = True
) -> tuple[Path, str]:
    """The existing, readable (UTF-8 unless Parquet) file and its format, ``fmt`` or detected."""
    path, allowed = Path(path), FORMATS if labelled else TEXT_FORMATS
    if not path.exists():
        raise GPTClassifierError(f"{'data' if labelled else 'input'} file not found: {path}")
    if path.is_dir():
        raise GPTClassifierError(f"{path} is a directory, not a data file")
    if fmt is not None and fmt not in allowed:
        raise GPTClassifierError(f"unknown format {fmt!r}; expected one of {', '.join(allowed)}")
    fmt = fmt or detect_format(path, *columns, labelled=labelled)
    if fmt == "sms" and labelled and any(columns):
        raise GPTClassifierError(
            f"{path}: format sms (headerless label<TAB>text) has no named columns; "
            "drop --text-column/--label-column or use a file with a header"
        )
    if fmt != "parquet":
        check_utf8(path)
    return path, fmt


def check_utf8(path: Path) -> None:
    """Raise unless the file is readable, not blank and UTF-8 throughout (a bad byte: its line)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, breaks, last_break, after_cr, blank = 0, 0, -1, False, True
    try:
        with path.open("rb") as handle:
            while True:
                chunk = handle.read(_READ_BYTES)
                pending, bad = len(decoder.getstate()[0]), None
                try:
                    decoder.decode(chunk, final=not chunk)
                except UnicodeDecodeError as exc:
                    bad, byte = offset - pending + exc.start, exc.object[exc.start]
                    chunk = chunk[: max(bad - offset, 0)]  # the line breaks before it count
                breaks += chunk.count(b"\n") + chunk.count(b"\r") - chunk.count(b"\r\n")
                breaks -= after_cr and chunk.startswith(b"\n")  # one \r\n split across two reads
                found = max(chunk.rfind(b"\n"), chunk.rfind(b"\r"))
                last_break = offset + found if found >= 0 else last_break
                after_cr = chunk.endswith(b"\r")
                if bad is not None:
                    raise GPTClassifierError(
                        f"{path}:{breaks + 1}: not valid UTF-8 (byte 0x{byte:02x} at byte offset "
                        f"{bad}, column {bad - last_break}); re-save the file as UTF-8"
                    )
                if not chunk:
                    break
                blank = blank and not chunk.strip()
                offset += len(chunk)
    except OSError as exc:
        raise GPTClassifierError(f"cannot read {path} ({exc.strerror or exc})") from None
    if blank:
        raise GPTClassifierError(f"{path}: the file is empty")


def iter_rows(path: Path, fmt: str, lines: list[int] | None = None) -> Iterator[Row]:
    """``(line, row, broken)`` of every non-blank row: a dict, or a table's header then cells;
    ``broken``: quotes that do not close cleanly; ``lines[0]``: a CSV file's non-blank lines."""
    if fmt == "parquet":
        yield from parquet_rows(path)
        return
    source = str(path)
    try:  # newline="" keeps each line's ending (the csv module needs it)
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise GPTClassifierError(f"cannot read {path} ({exc.strerror or exc})") from None
    with handle:
        if fmt == "csv":
            yield from _csv_rows(handle, source, lines)
            return
        for number, line in enumerate(handle, start=1):
            line = line.removesuffix("\n").removesuffix("\r")
            if not line.strip():
                continue
            if fmt == "tsv":
                yield number, line.split("\t"), False
            elif fmt == "lines":
                yield number, {"text": line}, False
            elif fmt == "sms":
                label, tab, text = line.partition("\t")
                if not tab:
                    raise GPTClassifierError(
                        f"{source}:{number}: expected 'label<TAB>text' but the line has no tab"
                    )
                yield number, {"label": label, "text": text}, False
            else:
                yield number, _json_object(line, source, number), False


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


def _csv_rows(handle: IO[str], source: str, lines: list[int] | None) -> Iterator[Row]:
    raw: list[str] = []

    def read() -> Iterator[str]:
        for line in handle:
            raw.append(line)
            if lines is not None and line.strip():
                lines[0] += 1
            yield line

    # No field can be longer than the file: any text our own writer wrote reads back.
    limit = min(os.fstat(handle.fileno()).st_size + 1, _MAX_FIELD_SIZE)
    reader, start = csv.reader(read()), 1
    while True:
        with _field_limit_lock:  # a process-wide setting: lifted for one row at a time
            previous = csv.field_size_limit(max(csv.field_size_limit(), limit))
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
        end, broken = reader.line_num, False
        if end > start:  # read again with strict quoting: does it close cleanly?
            try:
                list(csv.reader(raw, strict=True))
            except csv.Error:
                broken = True
        raw.clear()
        if cells and any(cell.strip() for cell in cells):
            yield start, cells, broken
        start = end + 1


def _width_error(width: int, expected: int, where: str, fmt: str) -> GPTClassifierError:
    tab = "; tab-separated fields are not quoted, so a text holding a tab breaks it"
    return GPTClassifierError(
        f"{where}: {width} field(s) but the header has {expected}" + (tab if fmt == "tsv" else "")
    )


def parquet_rows(path: Path) -> Iterator[Row]:
    """``iter_rows`` of a Parquet file, decoded ``PARQUET_BATCH_ROWS`` rows at a time."""
    try:
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
            names = frame.columns
            batches: Any = [[frame.iloc[:, i].tolist() for i in range(frame.shape[1])]]
        else:
            file = pq.ParquetFile(path)
            names = file.schema_arrow.names
            batches = (
                [column.to_pylist() for column in batch.columns]
                for batch in file.iter_batches(batch_size=PARQUET_BATCH_ROWS)
            )
        yield 0, [str(name) for name in names], False
        rows = (row for batch in batches for row in zip(*batch, strict=True))
        for number, row in enumerate(rows, start=1):
            yield number, list(row), False
    except GPTClassifierError:
        raise
    except Exception as exc:  # pyarrow/pandas raise their own types for unreadable files
        message = f"{path}: cannot read as Parquet ({type(exc).__name__}: {exc})"
        raise GPTClassifierError(message) from None


@dataclass
class Runaways:
    """The quoted fields over several lines of a CSV file, fed one row at a time."""

    width: int
    label_index: int = 0
    labels: set[str] | None = None
    count: int = 0
    # (first line, lines spanned, swallowed-record note, quotes broken) of the first ones
    first: tuple[int, int, str, bool] | None = None
    first_broken: tuple[int, int, str, bool] | None = None

    def add(self, start: int, cells: list[str], broken: bool) -> None:
        line, needed = start, 1 if self.labels is not None else UNLABELLED_RECORD_LINES
        for cell in cells:
            parts = _LINE_BREAK.split(cell)
            found = [line + i for i, part in enumerate(parts[1:], 1) if self._is_record(part)]
            suspect = broken or len(parts) > MAX_FIELD_LINES or len(found) >= needed
            if len(parts) > 1 and suspect:
                spans = len(parts) - (parts[-1] == "")  # a final line break ends a line
                note = ", swallowing line {}, which looks like a record of its own"
                runaway = (line, spans, note.format(found[0]) if found else "", broken)
                self.count += 1
                self.first = self.first or runaway
                self.first_broken = self.first_broken or (runaway if broken else None)
            line += len(parts) - 1

    def _is_record(self, line: str) -> bool:
        try:
            cells = next(csv.reader([line]), []) if line.strip() else []
        except csv.Error:
            return False
        if len(cells) != self.width or self.width < 2:
            return False
        return self.labels is None or cells[self.label_index].strip() in self.labels

    def report(self, *, rows: int, lines: int, source: str, lenient: bool) -> None:
        """Raise for a broken field (``lenient``: warn), warn for the others."""
        if self.first is None:
            return
        counts = f"{rows} row(s) read from {lines} non-blank line(s) after the header"
        if self.first_broken is not None and not lenient:
            line, spans, swallowed, _ = self.first_broken
            raise GPTClassifierError(
                f"{source}:{line}: a quoted field starts here, runs over {spans} lines and its "
                f"quotes do not close cleanly{swallowed} ({counts}); an unbalanced double "
                "quote? fix it, or pass --lenient to read the file as parsed"
            )
        line, spans, swallowed, broken = self.first
        causes = ("holding lines that look like records", "with quotes that do not close cleanly")
        hint = "; if that is an unbalanced double quote, fix it"
        logger.warning(
            f"{source}:{line}: warning: {self.count} quoted field(s) run over several lines "
            f"{causes[broken]}, the first from here over {spans} "
            f"lines{swallowed}; {counts}; rows kept as parsed"
            + (" (--lenient)" if self.first_broken is not None else hint)
        )


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
    try:  # JSON's "\ud800" is a lone surrogate, which no UTF-8 file (a split, an output) holds
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise GPTClassifierError(
            f"{where}: invalid Unicode (unpaired surrogate "
            f"U+{ord(text[exc.start]):04X} at character {exc.start + 1})"
        ) from None


def make_record(values: dict[str, Any], names: Sequence[str], source: str, line: int) -> Record:
    """The checked example of one row: its text and label in the ``names`` columns."""
    where = f"{source}:{line}"
    if missing := [c for c in names if c not in values]:
        available = ", ".join(repr(k) for k in values) or "none"
        raise GPTClassifierError(f"{where}: no {missing[0]!r} key; available keys: {available}")
    text, label = values[names[0]], values[names[1]]
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
    _check_text(label, where, "missing label")
    return Record(text=text, label=label, source=source, line=line)


def text_row(
    values: dict[str, Any],
    names: Sequence[str],
    source: str,
    line: int,
    columns: Sequence[str] = (),
) -> TextRow:
    """One checked row to classify: its text in column ``names[0]``, its fields in ``columns``."""
    column, where = names[0], f"{source}:{line}"
    if column not in values:
        raise GPTClassifierError(f"{where}: no {column!r} key")
    _check_text(values[column], where, f"empty text in column {column!r}")
    fields = {name: _cell(values.get(name)) for name in columns}
    return TextRow(text=values[column], fields=fields, source=source, line=line)


def _known_column(columns: Sequence[str], known: Sequence[str]) -> str | None:
    by_lower = {column.lower(): column for column in reversed(columns)}
    return next((by_lower[name] for name in known if name in by_lower), None)


def _choose_columns(columns: Sequence[str], wanted: Sequence[str | None], where: str) -> list[str]:
    """The text and label columns: as asked (in any case if only one matches), else known."""
    available = ", ".join(repr(c) for c in columns) or "none"
    chosen, kinds = [], (("text", TEXT_COLUMNS), ("label", LABEL_COLUMNS))
    for requested, (kind, known) in zip(wanted, kinds, strict=True):
        if requested is None:
            found = _known_column(columns, known)
            if found is None:
                raise GPTClassifierError(
                    f"{where}: no {kind} column found (tried {', '.join(known)}); available "
                    f"columns: {available}; pass --{kind}-column"
                )
        else:
            matches = [c for c in columns if c.lower() == requested.lower()]
            found = requested if requested in columns or len(matches) != 1 else matches[0]
            if found not in columns:
                raise GPTClassifierError(
                    f"{where}: no {kind} column {requested!r}; available columns: {available}"
                )
        chosen.append(found)
    if chosen[0] == chosen[1]:
        raise GPTClassifierError(
            f"{where}: the text and label columns are the same column {chosen[0]!r}"
        )
    return chosen


def pick_text_column(columns: Sequence[str], wanted: str | None, source: str) -> str:
    """The column of a file to classify that holds the text."""
    listed = ", ".join(repr(c) for c in columns) or "(none)"  # repr(): no line break in a message
    if wanted is not None and wanted not in columns:
        raise GPTClassifierError(f"{source}: no column {wanted!r}; columns: {listed}")
    found = wanted if wanted is not None else _known_column(columns, TEXT_COLUMNS)
    if found is None and len(columns) != 1:
        raise GPTClassifierError(
            f"{source}: which column holds the text? pass --text-column (columns: {listed})"
        )
    return columns[0] if found is None else found


class TooManyRows(GPTClassifierError):
    """Raised by :func:`scan_text_file` at the first row over its ``max_rows``."""


@dataclass(frozen=True)
class TextFilePlan:
    """A checked file: its columns in order of appearance, text column, rows and examples."""

    path: Path
    fmt: str
    columns: tuple[str, ...]
    text_column: str
    rows: int
    records: list[Record] = field(default_factory=list, repr=False)


def scan_text_file(
    path: PathLike,
    fmt: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    *,
    labelled: bool = False,
    lenient: bool = False,
    max_rows: int | None = None,
    allow_empty: bool = False,
) -> TextFilePlan:
    """Check every row keeping counts, column names and (``labelled``) the examples; errors come
    in one order whatever the order of the rows (bytes, CSV, quotes, widths, no rows, column,
    text); ``max_rows``: at most, else ``TooManyRows``."""
    wanted = (text_column, label_column)
    path, fmt = resolve_file(path, fmt, *wanted, labelled=labelled)
    source, lines = str(path), [0]
    rows: Iterable[Row] = iter_rows(path, fmt, lines)
    first, header, _ = next(rows, (0, [], False)) if fmt in TABLE_FORMATS else (0, None, False)
    if fmt in ("csv", "tsv"):  # a column named twice is refused: which one is meant?
        header = [cell.strip() for cell in header]
        if twice := next((c for i, c in enumerate(header) if c and c in header[:i]), None):
            raise GPTClassifierError(f"{source}:{first}: the header names column {twice!r} twice")
    # a JSON-lines file's columns are the keys of its objects, in order of appearance
    columns = dict.fromkeys(header or {"lines": ["text"], "sms": ["label", "text"]}.get(fmt, []))
    errors: dict[str, GPTClassifierError | None] = dict.fromkeys(("width", "column", "text"))

    def attempt(kind: str, check: Callable[..., Any], *args: Any) -> Any:
        if errors[kind] is None:
            try:
                return check(*args)
            except GPTClassifierError as exc:
                errors[kind] = exc
        return None

    def choose(number: int) -> list[str]:
        if not labelled:
            return [pick_text_column(list(columns), text_column, source)]
        return _choose_columns(list(columns), wanted, f"{source}:{number}" if number else source)

    chosen = None if header is None else attempt("column", choose, first)
    runaways, check_row = None, make_record if labelled else text_row
    if header is not None and fmt != "parquet" and (chosen is not None or not labelled):
        label, labels = 0, None
        if labelled and chosen is not None:  # a swallowed line that looks like a record has a label
            rows, label = list(rows), header.index(chosen[1])
            labels = {cells[label].strip() for _, cells, _ in rows if len(cells) == len(header)}
        runaways = Runaways(len(header), label, labels)
    count, records = 0, []
    for count, (number, row, broken) in enumerate(rows, start=1):
        if max_rows is not None and count > max_rows:
            raise TooManyRows(f"{source}: more than {max_rows} rows")
        if runaways is not None:
            runaways.add(number, row, broken)
        if fmt == "jsonl":
            columns.update(dict.fromkeys(row))
        if count == 1 and header is None:
            chosen = attempt("column", choose, number)
        if header is not None and len(row) != len(header):
            where = f"{source}:{number}"
            errors["width"] = errors["width"] or _width_error(len(row), len(header), where, fmt)
            continue
        values = row if header is None else dict(zip(header, row, strict=True))
        record = attempt("text", check_row, values, chosen, source, number) if chosen else None
        if labelled:  # (once an error is found the examples are not returned)
            records.append(record)
    if runaways is not None:
        runaways.report(rows=count, lines=lines[0] - 1, source=source, lenient=lenient)
    if not count and not allow_empty:  # (a ragged row is a row: no width error then)
        raise GPTClassifierError(f"{path}: no {'examples' if labelled else 'texts'} in the file")
    if error := next((error for error in errors.values() if error), None):
        raise error
    return TextFilePlan(path, fmt, tuple(columns), chosen[0] if chosen else "", count, records)


def read_records(
    path: PathLike,
    fmt: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    *,
    allow_empty: bool = False,
    lenient: bool = False,
) -> list[Record]:
    """All examples of a labelled file; an error names the file and line of the first problem."""
    read = {"lenient": lenient, "allow_empty": allow_empty}
    return scan_text_file(path, fmt, text_column, label_column, labelled=True, **read).records


def read_unlabelled(
    path: PathLike, fmt: str | None = None, text_column: str | None = None, *, lenient: bool = False
) -> list[TextRow]:
    """Every text of a file to classify with its row's fields."""
    return list(iter_text_rows(scan_text_file(path, fmt, text_column, lenient=lenient)))


def iter_text_rows(plan: TextFilePlan, skip: int = 0) -> Iterator[TextRow]:
    """The rows of a scanned file in file order, from row ``skip`` (0-based) on."""
    columns, source = list(plan.columns), str(plan.path)
    rows, table = iter_rows(plan.path, plan.fmt), plan.fmt in TABLE_FORMATS
    for number, row, _ in itertools.islice(rows, skip + table, None):  # a table: its header first
        values = dict(zip(columns, row, strict=True)) if table else row
        yield text_row(values, [plan.text_column], source, number, columns)
