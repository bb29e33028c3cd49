"""OpenAI's GPT-2 weights from the Hugging Face Hub (``openai-community/<size>``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .config import canonical_model_name
from .errors import GPTClassifierError

logger = logging.getLogger(__name__)

WEIGHTS_FILENAME = "model.safetensors"
_ALTERNATIVES = "pass --weights PATH (a .safetensors file or model directory) or use --init random"


def download_weights(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Path of ``model.safetensors`` for a GPT-2 size, downloaded into the HF cache if needed."""
    repo_id = f"openai-community/{canonical_model_name(name)}"  # checked before the import
    from huggingface_hub import errors as hub
    from huggingface_hub import hf_hub_download

    where = f"{WEIGHTS_FILENAME} of {repo_id}"
    cache = f" (cache: {cache_dir})" if cache_dir else ""
    logger.info("fetching %s from the Hugging Face Hub%s", where, cache)
    try:
        return Path(
            hf_hub_download(repo_id=repo_id, filename=WEIGHTS_FILENAME, cache_dir=cache_dir)
        )
    # order matters: LocalEntryNotFoundError is an EntryNotFoundError, all are HfHubHTTPErrors
    except (hub.LocalEntryNotFoundError, hub.OfflineModeIsEnabled):
        why = "offline or no connection to the Hugging Face Hub, and it is not in the local cache"
        why += cache
    except (hub.RepositoryNotFoundError, hub.RevisionNotFoundError, hub.EntryNotFoundError):
        why = "not found on the Hugging Face Hub"
    except hub.HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        why = f"the Hugging Face Hub answered with HTTP error {status}"
    except Exception as exc:
        # a failure mid-transfer is the HTTP client's exception; anything else is a bug
        module = type(exc).__module__.split(".")[0]
        clients = ("httpx", "httpx2", "httpcore", "requests", "urllib3")
        if not isinstance(exc, (ConnectionError, TimeoutError)) and module not in clients:
            raise
        why = f"network error ({type(exc).__name__}); the download resumes when run again, or"
        raise GPTClassifierError(f"cannot get {where}: {why} {_ALTERNATIVES}") from None
    raise GPTClassifierError(f"cannot get {where}: {why}; {_ALTERNATIVES}")
