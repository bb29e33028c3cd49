"""Files of texts to classify, read row by row in memory that does not grow with the file:
:func:`scan_text_file` checks every row and counts them, :func:`iter_text_rows` then gives them
(from row ``skip`` on, for a resumed run). Parquet is decoded 4,096 rows at a time."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..errors import GPTClassifierError
from .readers import (
    TEXT_FORMATS,
    PathLike,
    Runaways,
    TextRow,
    check_utf8,
    check_width,
    delimited_rows,
    detect_format,
    header_of,
    line_records,
    open_text,
    parquet_rows,
    resolve_file,
    text_column,
    text_row,
)


@dataclass(frozen=True)
class TextFilePlan:
    path: Path
    fmt: str
    columns: tuple[str, ...]
    text_column: str
    rows: int


def read_unlabelled(
    path: PathLike, fmt: str | None = None, text_column: str | None = None, *, lenient: bool = False
) -> list[TextRow]:
    """Every text of a file to classify with its row's fields; the text column is
    ``text_column``, else the first of ``TEXT_COLUMNS``, else the only column."""
    return list(iter_text_rows(scan_text_file(path, fmt, text_column, lenient=lenient)))


class TooManyRows(GPTClassifierError):
    """Raised by :func:`scan_text_file` at the first row over its ``max_rows``."""


def scan_text_file(
    path: PathLike,
    fmt: str | None = None,
    text_column: str | None = None,
    *,
    lenient: bool = False,
    max_rows: int | None = None,
) -> TextFilePlan:
    """Check every row of ``path`` keeping only counts and column names; the errors, in this
    order: undecodable bytes, malformed CSV, runaway quotes, ragged rows, no rows, a missing
    column, an empty text (whatever the order of the rows). Past ``max_rows`` rows it stops
    with :class:`TooManyRows`."""
    detect = functools.partial(detect_format, text_column=text_column, labelled=False)
    path, fmt = resolve_file(path, "input file", fmt, TEXT_FORMATS, detect)
    scan = _Scan(path, text_column, max_rows)
    if fmt == "parquet":
        scan.parquet()
        return scan.plan(fmt)
    check_utf8(path)
    with open_text(path) as handle:
        if fmt in ("csv", "tsv"):
            scan.delimited(handle, fmt, lenient)
        else:
            scan.line_records(handle, fmt)
    return scan.plan(fmt)


def iter_text_rows(plan: TextFilePlan, skip: int = 0) -> Iterator[TextRow]:
    """The rows of a scanned file in file order, from row ``skip`` (0-based) on."""
    columns, source = list(plan.columns), str(plan.path)
    if plan.fmt == "parquet":
        for number, values in itertools.islice(parquet_rows(plan.path)[1], skip, None):
            yield text_row(values, plan.text_column, columns, source, number)
        return
    with open_text(plan.path) as handle:
        if plan.fmt in ("csv", "tsv"):
            rows = delimited_rows(handle, plan.fmt, source)
            header = [cell.strip() for cell in next(rows)[1]]
            records = ((n, dict(zip(header, cells, strict=True))) for n, cells, _ in rows)
        else:
            records = line_records(handle, plan.fmt, source)
        for index, (number, values) in enumerate(records):
            if index >= skip:
                yield text_row(values, plan.text_column, columns, source, number)


class _Scan:
    """The checking pass: the first problem of each kind, raised once the file is read."""

    def __init__(self, path: Path, wanted: str | None, max_rows: int | None = None) -> None:
        self.path, self.source, self.wanted, self.max_rows = path, str(path), wanted, max_rows
        self.rows = 0
        self.columns: dict[str, None] = {}  # in order of appearance
        self.column: str | None = None
        self.errors: dict[str, GPTClassifierError] = {}  # by kind: width, column, text

    def _first(self, kind: str, check: Callable[[], Any]) -> Any:
        if kind not in self.errors:
            try:
                return check()
            except GPTClassifierError as exc:
                self.errors[kind] = exc
        return None

    def _count_row(self) -> None:
        self.rows += 1
        if self.max_rows is not None and self.rows > self.max_rows:
            raise TooManyRows(f"{self.source}: more than {self.max_rows} rows")

    def _check_row(self, number: int, values: dict[str, Any]) -> None:
        self._count_row()
        if self.column is not None:
            columns = list(self.columns)
            self._first("text", lambda: text_row(values, self.column, columns, self.source, number))

    def _choose_column(self, columns: list[str]) -> None:
        self.column = self._first("column", lambda: text_column(columns, self.wanted, self.source))

    def parquet(self) -> None:
        columns, rows = parquet_rows(self.path)
        self.columns = dict.fromkeys(columns)
        for number, values in rows:
            if self.rows == 0:
                self._choose_column(columns)
            self._check_row(number, values)

    def line_records(self, handle: IO[str], fmt: str) -> None:
        if fmt != "jsonl":  # a JSON-lines file's columns are the keys of its objects
            self.columns = dict.fromkeys(["text"] if fmt == "lines" else ["label", "text"])
        for number, values in line_records(handle, fmt, self.source):
            if fmt == "jsonl":
                self.columns.update(dict.fromkeys(values))
            if self.rows == 0:
                self._choose_column(list(values) if fmt == "jsonl" else list(self.columns))
            self._check_row(number, values)

    def delimited(self, handle: IO[str], fmt: str, lenient: bool) -> None:
        lines = [0]
        rows = delimited_rows(handle, fmt, self.source, lines)
        first = next(rows, None)
        if first is None:
            return
        header = header_of(first[1], f"{self.source}:{first[0]}")
        self.columns = dict.fromkeys(header)
        self._choose_column(header)
        runaways = Runaways(len(header))
        for number, cells, broken in rows:
            runaways.add(number, cells, broken)
            if len(cells) == len(header):
                self._check_row(number, dict(zip(header, cells, strict=True)))
            else:
                self._count_row()
                check = functools.partial(check_width, cells, header, self.source, number, fmt)
                self._first("width", check)
        runaways.report(rows=self.rows, lines=lines[0] - 1, source=self.source, lenient=lenient)
        if "width" in self.errors:
            raise self.errors["width"]

    def plan(self, fmt: str) -> TextFilePlan:
        if not self.rows:
            raise GPTClassifierError(f"{self.path}: no texts in the file")
        for kind in ("column", "text"):
            if kind in self.errors:
                raise self.errors[kind]
        assert self.column is not None
        return TextFilePlan(self.path, fmt, tuple(self.columns), self.column, self.rows)
