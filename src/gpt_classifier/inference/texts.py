"""Reading texts to classify: the labelled-data readers' parsers, so ``classify --file`` and
``train`` read a file the same way (formats, line breaks, quoting: see
:mod:`gpt_classifier.data.readers`)."""

from __future__ import annotations

import os

from ..data.streaming import read_unlabelled


def read_texts(
    path: str | os.PathLike[str],
    text_column: str | None = None,
    fmt: str | None = None,
    *,
    lenient: bool = False,
) -> tuple[list[dict[str, str]], list[str]]:
    """``(rows, texts)``: every row's fields (kept for the output CSV) and its text, in file order.

    ``.csv``/``.tsv`` need a header and ``.jsonl`` objects; the text column is ``text_column`` or
    the first of the usual names (text, sms, message, ...). A ``.txt`` (or suffix-less) file
    without a header row is one text per line, lines broken at ``\\n``, ``\\r\\n``, ``\\r`` only.
    """
    rows = read_unlabelled(path, fmt, text_column, lenient=lenient)
    return [row.fields for row in rows], [row.text for row in rows]
