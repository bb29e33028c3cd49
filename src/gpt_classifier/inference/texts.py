"""Reading texts to classify, as ``classify --file`` and ``train`` read files (same parsers)."""

from __future__ import annotations

import os

from ..data.readers import read_unlabelled


def read_texts(
    path: str | os.PathLike[str],
    text_column: str | None = None,
    fmt: str | None = None,
    *,
    lenient: bool = False,
) -> tuple[list[dict[str, str]], list[str]]:
    """``(rows, texts)``: every row's fields (for an output CSV) and its text, in file order."""
    rows = read_unlabelled(path, fmt, text_column, lenient=lenient)
    return [row.fields for row in rows], [row.text for row in rows]
