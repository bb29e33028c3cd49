"""Reading texts to classify: a CSV/TSV/JSONL file with a text column, or plain lines."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from ..data.readers import TEXT_COLUMNS
from ..errors import GPTClassifierError


def read_texts(
    path: str | os.PathLike[str], text_column: str | None = None
) -> tuple[list[dict[str, str]], list[str]]:
    """``(rows, texts)``: every row as a dict (kept for the output CSV) and its text.

    ``.csv``/``.tsv`` need a header and ``.jsonl`` objects; the text column is ``text_column`` or
    the first of the usual names (text, sms, message, ...). Any other file is one text a line.
    """
    file = Path(path)
    if not file.is_file():
        raise GPTClassifierError(f"input file not found: {file}")
    try:
        content = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise GPTClassifierError(f"{file}: not UTF-8 text (byte {exc.start})") from None
    suffix = file.suffix.lower()
    if suffix in (".csv", ".tsv"):
        reader = csv.DictReader(content.splitlines(), delimiter="," if suffix == ".csv" else "\t")
        rows = [dict(row) for row in reader]
        columns = reader.fieldnames or []
    elif suffix in (".jsonl", ".ndjson"):
        rows = []
        for number, line in enumerate(content.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise GPTClassifierError(f"{file}:{number}: invalid JSON ({exc.msg})") from None
            if not isinstance(value, dict):
                raise GPTClassifierError(f"{file}:{number}: expected a JSON object")
            rows.append({k: "" if v is None else str(v) for k, v in value.items()})
        columns = list(rows[0]) if rows else []
    else:
        rows = [{"text": line} for line in content.splitlines() if line.strip()]
        columns = ["text"]
    if not rows:
        raise GPTClassifierError(f"{file}: no texts in the file")
    column = _text_column(columns, text_column, file)
    texts = []
    for number, row in enumerate(rows, start=1):
        text = row.get(column) or ""
        if not text.strip():
            raise GPTClassifierError(f"{file}: row {number} has an empty {column!r}")
        texts.append(text)
    return rows, texts


def _text_column(columns: list[str], wanted: str | None, file: Path) -> str:
    if wanted is not None:
        if wanted not in columns:
            raise GPTClassifierError(
                f"{file}: no column {wanted!r}; columns: {', '.join(columns) or '(none)'}"
            )
        return wanted
    lowered = {c.lower(): c for c in columns}
    for name in TEXT_COLUMNS:
        if name.lower() in lowered:
            return lowered[name.lower()]
    if len(columns) == 1:
        return columns[0]
    raise GPTClassifierError(
        f"{file}: which column holds the text? pass --text-column (columns: {', '.join(columns)})"
    )
