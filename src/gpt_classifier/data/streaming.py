"""A file of texts to classify read row by row, in memory that does not grow with the file
(``classify --file``).

Two passes over the file, each holding one row at a time: :func:`scan_text_file` checks the
whole file as :func:`~gpt_classifier.data.readers.read_unlabelled` does (same formats, same
errors in the same order: undecodable bytes, malformed CSV, runaway quotes, ragged rows, a
missing column, an empty text) and learns the output columns and the row count, before anything
is classified; :func:`iter_text_rows` then gives the rows, optionally from row ``skip`` on (a
resumed run). Parquet files are read whole (columnar: there is no row to stream).
"""

from __future__ import annotations

import codecs
import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..errors import GPTClassifierError
from . import readers
from .readers import TEXT_FORMATS, TextRow

_READ_BYTES = 1 << 20


@dataclass(frozen=True)
class TextFilePlan:
    """What the checking pass learnt: the format, the output columns, the text column and the
    number of rows."""

    path: Path
    fmt: str
    columns: tuple[str, ...]
    text_column: str
    rows: int

    @property
    def source(self) -> str:
        return str(self.path)


def scan_text_file(
    path: str | os.PathLike[str],
    fmt: str | None = None,
    text_column: str | None = None,
    *,
    lenient: bool = False,
) -> TextFilePlan:
    """Check every row of ``path`` (raises ``GPTClassifierError`` as ``read_unlabelled``
    would) keeping only counts and column names."""
    path = readers._existing(path, "input file")
    if fmt is None:
        fmt = readers.detect_text_format(path, text_column)
    elif fmt not in TEXT_FORMATS:
        raise GPTClassifierError(
            f"unknown format {fmt!r}; expected one of {', '.join(TEXT_FORMATS)}"
        )
    if fmt == "parquet":
        rows = readers.read_unlabelled(path, fmt, text_column, lenient=lenient)
        columns = tuple(rows[0].fields)
        column = readers._text_column(list(columns), text_column, path)
        return TextFilePlan(path, fmt, columns, column, len(rows))
    _check_utf8(path)
    scan = _Scan(path, text_column)
    with _open_text(path) as handle:
        if fmt in ("csv", "tsv"):
            scan.delimited(handle, fmt, lenient)
        else:
            scan.line_records(handle, fmt)
    return scan.plan(fmt)


def iter_text_rows(plan: TextFilePlan, skip: int = 0) -> Iterator[TextRow]:
    """The rows of a scanned file in file order, from row ``skip`` (0-based) on."""
    if plan.fmt == "parquet":
        rows = readers.read_unlabelled(plan.path, plan.fmt, plan.text_column)
        yield from rows[skip:]
        return
    columns, source = list(plan.columns), plan.source
    with _open_text(plan.path) as handle:
        for index, (number, values) in enumerate(_records(handle, plan.fmt, source)):
            if index >= skip:
                yield readers.text_row(values, plan.text_column, columns, source, number)


# --- decoding ----------------------------------------------------------------------------------


def _open_text(path: Path) -> IO[str]:
    # newline="": lines end at \n, \r\n or \r, endings kept (what the csv module needs)
    try:
        return path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise GPTClassifierError(f"cannot read {path} ({exc.strerror or exc})") from None


def _check_utf8(path: Path) -> None:
    """The file is not blank and is UTF-8 throughout; the errors ``readers._decode`` gives."""
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
    """Line and column of byte ``offset`` counted as ``readers._decode`` counts them."""
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
        yield number, _without_ending(line)


def _without_ending(line: str) -> str:
    if line.endswith("\r\n"):
        return line[:-2]
    if line.endswith(("\n", "\r")):
        return line[:-1]
    return line


# --- the formats -------------------------------------------------------------------------------


def _records(handle: IO[str], fmt: str, source: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line, values)`` of every row, as ``read_unlabelled`` builds them."""
    if fmt in ("csv", "tsv"):
        header: list[str] | None = None
        for number, cells, _ in _delimited_rows(handle, fmt, source):
            if header is None:
                header = [cell.strip() for cell in cells]
            else:
                yield number, dict(zip(header, cells, strict=True))
        return
    for number, line in _numbered_lines(handle):
        if line.strip():
            yield number, _line_values(line, fmt, source, number)


def _line_values(line: str, fmt: str, source: str, number: int) -> dict[str, Any]:
    if fmt == "lines":
        return {"text": line}
    if fmt == "sms":
        label, text = readers.sms_fields(line, source, number)
        return {"label": label, "text": text}
    return readers.json_object(line, source, number)


def _delimited_rows(
    handle: IO[str], fmt: str, source: str, counter: list[int] | None = None
) -> Iterator[tuple[int, list[str], bool]]:
    """``(start line, cells, broken)`` of every non-blank CSV/TSV row; ``broken``: a CSV row
    over several lines whose quotes do not close cleanly. ``counter[0]`` counts the non-blank
    physical lines read."""
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
            if counter is not None and _without_ending(line).strip():
                counter[0] += 1
            yield line

    limit = min(os.fstat(handle.fileno()).st_size + 1, readers._MAX_FIELD_SIZE)
    reader = csv.reader(lines())
    start = 1
    while True:
        with readers._field_limit_lock:  # a process-wide setting: lifted for one row at a time
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
        broken = end > start and not readers._strict_row("".join(raw))
        raw.clear()
        if cells and any(cell.strip() for cell in cells):
            yield start, cells, broken
        start = end + 1


class _Scan:
    """The checking pass: the first problem of each kind, raised in ``read_unlabelled``'s
    order once the whole file is read."""

    def __init__(self, path: Path, text_column: str | None) -> None:
        self.path, self.source, self.wanted = path, str(path), text_column
        self.rows = 0
        self.columns: dict[str, None] = {}  # in order of appearance
        self.column: str | None = None
        self.column_error: GPTClassifierError | None = None
        self.text_error: GPTClassifierError | None = None

    def _choose_column(self, columns: list[str]) -> None:
        try:
            self.column = readers._text_column(columns, self.wanted, self.path)
        except GPTClassifierError as exc:
            self.column_error = exc

    def _check_row(self, number: int, values: dict[str, Any]) -> None:
        if self.column is None or self.text_error is not None:
            return
        try:
            readers.text_row(values, self.column, list(self.columns), self.source, number)
        except GPTClassifierError as exc:
            self.text_error = exc

    def line_records(self, handle: IO[str], fmt: str) -> None:
        if fmt == "lines":
            self.columns = {"text": None}
        elif fmt == "sms":
            self.columns = {"label": None, "text": None}
        for number, line in _numbered_lines(handle):
            if not line.strip():
                continue
            values = _line_values(line, fmt, self.source, number)
            if fmt == "jsonl":
                self.columns.update(dict.fromkeys(values))
            if self.rows == 0:
                self._choose_column(list(values) if fmt == "jsonl" else list(self.columns))
            self.rows += 1
            self._check_row(number, values)

    def delimited(self, handle: IO[str], fmt: str, lenient: bool) -> None:
        header: list[str] | None = None
        lines = [0]
        runaways: list[Any] = []  # the first one, the first broken one
        count = 0
        width_error: GPTClassifierError | None = None
        for number, cells, broken in _delimited_rows(handle, fmt, self.source, lines):
            if header is None:
                header = [cell.strip() for cell in cells]
                self.columns = dict.fromkeys(header)
                self._choose_column(header)
                continue
            self.rows += 1
            table = readers._Table(header, 1, [(number, cells)], {number} if broken else set())
            for runaway in readers._runaways(table, None, None):
                count += 1
                if not runaways or (runaway.broken and not any(r.broken for r in runaways)):
                    runaways.append(runaway)
            if len(cells) != len(header):
                if width_error is None:
                    try:
                        readers._check_width(cells, header, self.source, number, fmt)
                    except GPTClassifierError as exc:
                        width_error = exc
                continue
            self._check_row(number, dict(zip(header, cells, strict=True)))
        if runaways:
            broken_ones = [r for r in runaways if r.broken]
            readers.report_runaways(
                runaways[0],
                broken_ones[0] if broken_ones else None,
                count,
                rows=self.rows,
                lines=lines[0] - 1,
                source=self.source,
                lenient=lenient,
            )
        if width_error is not None:
            raise width_error

    def plan(self, fmt: str) -> TextFilePlan:
        if not self.rows:
            raise GPTClassifierError(f"{self.path}: no texts in the file")
        if self.column_error is not None:
            raise self.column_error
        if self.text_error is not None:
            raise self.text_error
        assert self.column is not None
        return TextFilePlan(self.path, fmt, tuple(self.columns), self.column, self.rows)
