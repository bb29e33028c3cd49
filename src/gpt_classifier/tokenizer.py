"""GPT-2's byte-level BPE through tiktoken, online or from a local folder of OpenAI's two files."""

from __future__ import annotations

import hashlib
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import tiktoken

from .config import EOT_TOKEN_ID
from .errors import GPTClassifierError
from .fileio import sha256_of

TOKENIZER_DIR_ENV = "GPT_CLASSIFIER_TOKENIZER_DIR"
_OPENAI_URL = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/"
EOT_TEXT = "<|endoftext|>"
# sha256 of OpenAI's files, the same values tiktoken checks after a download.
TOKENIZER_FILES: dict[str, str] = {
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
}


def get_tokenizer(tokenizer_dir: str | os.PathLike[str] | None = None) -> tiktoken.Encoding:
    """GPT-2's encoding from ``tokenizer_dir`` or ``$GPT_CLASSIFIER_TOKENIZER_DIR``, else online."""
    if directory := tokenizer_dir or os.environ.get(TOKENIZER_DIR_ENV):
        return _local_encoding(str(Path(directory).expanduser().resolve()))
    try:
        return tiktoken.get_encoding("gpt2")
    except Exception as exc:  # tiktoken raises requests' errors, or ValueError on a bad hash
        raise GPTClassifierError(
            "cannot load the GPT-2 tokenizer: the download failed "
            f"({type(exc).__name__}) and no local files were given; pass --tokenizer-dir DIR or "
            f"set {TOKENIZER_DIR_ENV} to a folder holding vocab.bpe and encoder.json"
        ) from None


def tokenizer_files(tokenizer_dir: str | os.PathLike[str] | None = None) -> dict[str, Path] | None:
    """Where ``get_tokenizer(tokenizer_dir)`` reads GPT-2's two files; None if not on disk."""
    directory, names = tokenizer_dir or os.environ.get(TOKENIZER_DIR_ENV), {}
    folder = Path(directory).expanduser() if directory else None
    if folder is None:  # tiktoken's read_file_cached: the file named by the sha1 of its URL
        default = os.path.join(tempfile.gettempdir(), "data-gym-cache")
        cache = os.environ.get("TIKTOKEN_CACHE_DIR", os.environ.get("DATA_GYM_CACHE_DIR", default))
        if not cache:
            return None
        folder = Path(cache)
        names = {n: hashlib.sha1(f"{_OPENAI_URL}{n}".encode()).hexdigest() for n in TOKENIZER_FILES}
    paths = {name: folder / names.get(name, name) for name in TOKENIZER_FILES}
    found = all(p.is_file() and sha256_of(p) == TOKENIZER_FILES[n] for n, p in paths.items())
    return paths if found else None


def encode(tokenizer: tiktoken.Encoding, text: str) -> list[int]:
    """Token ids of ``text``; a literal ``<|endoftext|>`` becomes token 50256, as in the book."""
    return tokenizer.encode(text, allowed_special={EOT_TEXT})


@lru_cache(maxsize=4)
def _local_encoding(directory: str) -> tiktoken.Encoding:
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tiktoken_ext.openai_public import r50k_pat_str

    folder = Path(directory)
    if not folder.is_dir():
        raise GPTClassifierError(f"tokenizer directory not found: {folder}")
    for name, expected in TOKENIZER_FILES.items():
        path = folder / name
        if not path.is_file():
            raise GPTClassifierError(
                f"tokenizer directory {folder} has no {name} (it needs vocab.bpe and encoder.json)"
            )
        if (actual := sha256_of(path)) != expected:
            raise GPTClassifierError(
                f"{path}: sha256 {actual} does not match GPT-2's {expected} (corrupt or other file)"
            )
    ranks = data_gym_to_mergeable_bpe_ranks(str(folder / "vocab.bpe"), str(folder / "encoder.json"))
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=r50k_pat_str,
        mergeable_ranks=ranks,
        special_tokens={EOT_TEXT: EOT_TOKEN_ID},
        explicit_n_vocab=EOT_TOKEN_ID + 1,
    )
