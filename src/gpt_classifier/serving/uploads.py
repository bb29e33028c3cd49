"""An uploaded file of texts read as ``classify --file`` reads it (written under its base name
to a private temporary folder), bounded in rows and in decoded size before any text is built."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path, PurePath

from ..data.streaming import TooManyRows, iter_text_rows, scan_text_file
from ..errors import GPTClassifierError

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,99}")


def upload_name(filename: str | None) -> str:
    """The upload's base name if plain, else ``upload`` plus its suffix (the format)."""
    base = PurePath((filename or "").replace("\\", "/")).name
    if _SAFE_NAME.fullmatch(base):
        return base
    suffix = PurePath(base).suffix
    return "upload" + (suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,10}", suffix) else "")


def too_many_texts(count: int | str, what: str, max_texts: int) -> GPTClassifierError:
    return GPTClassifierError(
        f"{count} texts in {what}; the limit is {max_texts} "
        "(split it or start the server with a larger --max-texts)"
    )


def read_upload(
    name: str | None, data: bytes, column: str | None, fmt: str | None, limit: int, max_bytes: int
) -> tuple[str, list[dict[str, str]], list[str]]:
    """``(name, rows, texts)`` of an upload: at most ``limit`` rows, ``max_bytes`` decoded."""
    name = upload_name(name)
    with tempfile.TemporaryDirectory(prefix="gpt-classifier-upload-") as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        try:
            if data[:4] == b"PAR1":
                _check_parquet(path, name, limit, max_bytes)
            plan = scan_text_file(path, fmt or None, column or None, max_rows=limit)
            rows = list(iter_text_rows(plan))
        except TooManyRows:
            raise too_many_texts(f"more than {limit}", name, limit) from None
        except GPTClassifierError as exc:
            raise GPTClassifierError(str(exc).replace(str(path), name)) from None
    return name, [row.fields for row in rows], [row.text for row in rows]


def _check_parquet(path: Path, name: str, max_texts: int, max_bytes: int) -> None:
    """Rows and sizes from the footer, then the columns' decoded size read as dictionaries: a few
    hundred KB can hold millions of rows, or one text repeated to gigabytes."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        footer = pq.read_metadata(path)
        if footer.num_rows > max_texts:
            raise too_many_texts(footer.num_rows, name, max_texts)
        decoded = sum(footer.row_group(i).total_byte_size for i in range(footer.num_row_groups))
        if decoded <= max_bytes:  # uncompressed within the limit: now the columns decoded
            table = pq.read_table(path, read_dictionary=footer.schema.to_arrow_schema().names)
            decoded = 0
            for chunk in (chunk for column in table.columns for chunk in column.chunks):
                values = chunk.dictionary if pa.types.is_dictionary(chunk.type) else None
                if values is not None and values.type in (pa.string(), pa.binary()):
                    lengths = pc.take(pc.binary_length(values), chunk.indices)
                    decoded += pc.sum(lengths).as_py() or 0
                else:
                    decoded += chunk.nbytes
    except GPTClassifierError:
        raise
    except Exception:  # no pyarrow, or a broken file: the readers say why
        return
    if decoded > max_bytes:
        raise GPTClassifierError(
            f"{name} decodes to {decoded} bytes, over the {max_bytes} of --max-request-bytes "
            "that an upload is held to whatever its encoding (start the server with a larger "
            "--max-request-bytes)"
        )
