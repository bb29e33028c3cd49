"""An uploaded file of texts read as ``classify --file`` reads it: the readers take the format
from the file name, so the upload is written under its base name into a private temporary
folder, and errors name the upload, not the folder."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path, PurePath

from ..errors import GPTClassifierError
from ..inference.texts import read_texts

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,99}")


def upload_name(filename: str | None) -> str:
    """The upload's base name if it is a plain file name, else ``upload`` plus its suffix (the
    format)."""
    base = PurePath((filename or "").replace("\\", "/")).name
    if _SAFE_NAME.fullmatch(base):
        return base
    suffix = PurePath(base).suffix
    return "upload" + (suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,10}", suffix) else "")


def read_upload(
    filename: str | None,
    data: bytes,
    text_column: str | None = None,
    fmt: str | None = None,
) -> tuple[str, list[dict[str, str]], list[str]]:
    """``(name, rows, texts)`` of an uploaded file, as ``classify --file`` would read it."""
    name = upload_name(filename)
    with tempfile.TemporaryDirectory(prefix="gpt-classifier-upload-") as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        try:
            rows, texts = read_texts(path, text_column or None, fmt or None)
        except GPTClassifierError as exc:
            raise GPTClassifierError(str(exc).replace(str(path), name)) from None
    return name, rows, texts
