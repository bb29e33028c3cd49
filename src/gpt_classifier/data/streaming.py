"""Files of texts to classify in memory that does not grow with the file: :func:`scan_text_file`
checks and counts every row, :func:`iter_text_rows` then gives them (from ``skip``: resumed)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from . import readers
from .readers import PathLike, TextFilePlan, TextRow
from .readers import TooManyRows as TooManyRows  # raised by scan_text_file


def read_unlabelled(
    path: PathLike, fmt: str | None = None, text_column: str | None = None, *, lenient: bool = False
) -> list[TextRow]:
    """Every text of a file to classify with its row's fields."""
    return list(iter_text_rows(scan_text_file(path, fmt, text_column, lenient=lenient)))


def scan_text_file(
    path: PathLike,
    fmt: str | None = None,
    text_column: str | None = None,
    *,
    lenient: bool = False,
    max_rows: int | None = None,
) -> TextFilePlan:
    """Check every row keeping only counts and column names (``max_rows``: at most, else
    ``TooManyRows``)."""
    return readers.check_rows(
        path, fmt, text_column, labelled=False, lenient=lenient, max_rows=max_rows
    )


def iter_text_rows(plan: TextFilePlan, skip: int = 0) -> Iterator[TextRow]:
    """The rows of a scanned file in file order, from row ``skip`` (0-based) on."""
    columns, source = list(plan.columns), str(plan.path)
    rows, table = readers.iter_rows(plan.path, plan.fmt), plan.fmt in readers.TABLE_FORMATS
    for number, row, _ in itertools.islice(rows, skip + table, None):  # a table: its header first
        values = dict(zip(columns, row, strict=True)) if table else row
        yield readers.text_row(values, [plan.text_column], source, number, columns)
