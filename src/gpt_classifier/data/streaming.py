"""Files of texts to classify in memory that does not grow with the file: :func:`scan_text_file`
checks and counts every row, :func:`iter_text_rows` then gives them (from ``skip``: resumed)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import GPTClassifierError
from . import readers
from .readers import TABLE_FORMATS, PathLike, TextRow, iter_rows, text_row


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
    """Every text of a file to classify with its row's fields."""
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
    """Check every row keeping only counts and column names; errors come in one order whatever the
    order of the rows (bytes, CSV, quotes, widths, no rows, column, empty text)."""
    path, fmt = readers.resolve_file(path, fmt, text_column, labelled=False)
    source = str(path)
    lines = [0]
    rows = iter_rows(path, fmt, lines)
    header = next(rows, (0, [], False))[1] if fmt in TABLE_FORMATS else None
    # a JSON-lines file's columns are the keys of its objects, in order of appearance
    columns = dict.fromkeys(header or {"lines": ["text"], "sms": ["label", "text"]}.get(fmt, []))
    runaways = readers.Runaways(len(header)) if header is not None and fmt != "parquet" else None
    errors: dict[str, GPTClassifierError] = {}  # the first of each kind: width, column, text

    def first_error(kind: str, check: Callable[..., Any], *args: Any) -> Any:
        if kind not in errors:
            try:
                return check(*args)
            except GPTClassifierError as exc:
                errors[kind] = exc
        return None

    count, column = 0, None
    for number, row, broken in rows:
        count += 1
        if max_rows is not None and count > max_rows:
            raise TooManyRows(f"{source}: more than {max_rows} rows")
        if runaways is not None:
            runaways.add(number, row, broken)
        if fmt == "jsonl":
            columns.update(dict.fromkeys(row))
        if count == 1:
            column = first_error(
                "column", readers.pick_text_column, list(columns), text_column, source
            )
        if header is not None and len(row) != len(header):
            first_error("width", readers.check_width, row, header, source, number, fmt)
            continue
        values = row if header is None else dict(zip(header, row, strict=True))
        if column is not None:
            first_error("text", text_row, values, column, list(columns), source, number)
    if runaways is not None:
        runaways.report(rows=count, lines=lines[0] - 1, source=source, lenient=lenient)
    if not count:  # (a ragged row is a row: no width error then)
        raise GPTClassifierError(f"{path}: no texts in the file")
    for kind in ("width", "column", "text"):
        if kind in errors:
            raise errors[kind]
    assert column is not None
    return TextFilePlan(path, fmt, tuple(columns), column, count)


def iter_text_rows(plan: TextFilePlan, skip: int = 0) -> Iterator[TextRow]:
    """The rows of a scanned file in file order, from row ``skip`` (0-based) on."""
    columns, source = list(plan.columns), str(plan.path)
    rows = iter_rows(plan.path, plan.fmt)
    header = next(rows)[1] if plan.fmt in TABLE_FORMATS else None
    for number, row, _ in itertools.islice(rows, skip, None):
        values = row if header is None else dict(zip(header, row, strict=True))
        yield text_row(values, plan.text_column, columns, source, number)
