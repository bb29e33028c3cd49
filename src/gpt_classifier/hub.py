"""Downloading OpenAI's GPT-2 weights from the Hugging Face Hub (``openai-community/<size>``).

All the caching, resuming, progress bar and ``HF_HUB_OFFLINE`` handling is huggingface_hub's own,
so the files land where every Hugging Face user expects them (``$HF_HUB_CACHE``, by default
``~/.cache/huggingface/hub``). This module only picks the repository and turns the hub's
exceptions into one-line ``GPTClassifierError`` messages.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .config import canonical_model_name
from .errors import GPTClassifierError

logger = logging.getLogger(__name__)

HUB_ORGANIZATION = "openai-community"
WEIGHTS_FILENAME = "model.safetensors"
_ALTERNATIVES = "pass --weights PATH (a .safetensors file or model directory) or use --init random"


def repo_id_for(name: str) -> str:
    """``"gpt2-small (124M)"`` -> ``"openai-community/gpt2"``; raises listing the valid names."""
    return f"{HUB_ORGANIZATION}/{canonical_model_name(name)}"


def download_weights(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Path of ``model.safetensors`` for a GPT-2 size, downloading it into the HF cache if needed.

    Honours ``HF_HUB_OFFLINE=1`` (cache only), ``HF_HUB_CACHE``/``HF_HOME``, ``HF_ENDPOINT`` and
    resumes an interrupted download, all through ``huggingface_hub.hf_hub_download``.
    """
    repo_id = repo_id_for(name)  # validate the name before importing the hub client
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{WEIGHTS_FILENAME} of {repo_id}"
    cache = f" (cache: {cache_dir})" if cache_dir else ""
    logger.info("fetching %s from the Hugging Face Hub%s", where, cache)
    try:
        path = hf_hub_download(
            repo_id=repo_id,
            filename=WEIGHTS_FILENAME,
            cache_dir=str(cache_dir) if cache_dir is not None else None,
        )
    # Order matters: LocalEntryNotFoundError is also an EntryNotFoundError, and the "not found"
    # errors are also HfHubHTTPErrors.
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        raise GPTClassifierError(
            f"cannot get {where}: offline or no connection to the Hugging Face Hub, and it is "
            f"not in the local cache{cache}; {_ALTERNATIVES}"
        ) from None
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError):
        raise GPTClassifierError(
            f"cannot get {where}: not found on the Hugging Face Hub; {_ALTERNATIVES}"
        ) from None
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        raise GPTClassifierError(
            f"cannot get {where}: the Hugging Face Hub answered with HTTP error {status}; "
            f"{_ALTERNATIVES}"
        ) from None
    except Exception as exc:
        # A failure in the middle of the transfer surfaces as the HTTP client's own exception
        # (httpx in huggingface_hub 1.x/2.x, requests before); older versions raise plain
        # ConnectionError/TimeoutError. Anything else is a bug and keeps its traceback.
        module = type(exc).__module__.split(".")[0]
        if not isinstance(exc, (ConnectionError, TimeoutError)) and module not in (
            "httpx",
            "httpx2",
            "httpcore",
            "requests",
            "urllib3",
        ):
            raise
        raise GPTClassifierError(
            f"cannot get {where}: network error ({type(exc).__name__}); the download resumes "
            f"when run again, or {_ALTERNATIVES}"
        ) from None
    return Path(path)
