"""The built-in dataset ``sms-spam``: the UCI SMS Spam Collection, downloaded once (progress
on stderr), checked against its sha256 and cached."""

from __future__ import annotations

import hashlib
import io
import os
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from .. import fileio
from ..errors import GPTClassifierError
from ..fileio import CACHE_ENV, sha256_of, write_bytes
from ..progress import progress_bar

SMS_SPAM_NAME = "sms-spam"
SMS_SPAM_URL = "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip"
SMS_SPAM_MEMBER = "SMSSpamCollection"
SMS_SPAM_SHA256 = "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d"

_HINT = "pass --data-file PATH to a local copy of SMSSpamCollection"
_BAR = {"unit_scale": True, "unit_divisor": 1024, "leave": False}


def sms_spam_path(
    *,
    url: str = SMS_SPAM_URL,
    cache_dir: str | os.PathLike[str] | None = None,
    sha256: str = SMS_SPAM_SHA256,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """The cached ``SMSSpamCollection``, downloaded (again, if its checksum is wrong) first if
    needed; failures say to pass ``--data-file``."""
    folder = Path(cache_dir) if cache_dir is not None else fileio.cache_dir()
    target = folder / "sms_spam_collection" / SMS_SPAM_MEMBER
    if target.is_file() and sha256_of(target) == sha256:
        return target
    try:
        with zipfile.ZipFile(io.BytesIO(_download(url, progress, timeout))) as archive:
            names = [n for n in archive.namelist() if n.rsplit("/", 1)[-1] == SMS_SPAM_MEMBER]
            if not names:
                raise GPTClassifierError(
                    f"the zip from {url} holds no {SMS_SPAM_MEMBER} "
                    f"(it has {', '.join(archive.namelist()) or 'nothing'}); {_HINT}"
                )
            content = archive.read(names[0])
    except zipfile.BadZipFile:
        raise GPTClassifierError(f"the download from {url} is not a zip file; {_HINT}") from None
    actual = hashlib.sha256(content).hexdigest()
    if actual != sha256:
        raise GPTClassifierError(
            f"{SMS_SPAM_MEMBER} from {url} has sha256 {actual}, expected {sha256} "
            f"(corrupt or changed download); {_HINT}"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(target, content)
    except OSError as exc:
        raise GPTClassifierError(
            f"cannot write the dataset cache {target} ({exc.strerror or exc}); set {CACHE_ENV} "
            f"to a writable folder or {_HINT}"
        ) from None
    return target


def _download(url: str, progress: bool, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "gpt-classifier"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            size = response.headers.get("Content-Length")
            total = int(size) if size and size.isdigit() else None
            buffer = io.BytesIO()
            with progress_bar(total, "sms-spam", enabled=progress, unit="B", **_BAR) as bar:
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    buffer.write(chunk)
                    bar.update(len(chunk))
    except (OSError, ValueError) as exc:  # URLError (HTTPError), timeouts, resets, bad URLs
        if isinstance(exc, urllib.error.HTTPError):
            why = f"HTTP {exc.code} {exc.reason}"
        elif isinstance(exc, urllib.error.URLError):
            why = str(exc.reason)
        else:
            why = f"{type(exc).__name__}: {exc}"
        raise GPTClassifierError(
            f"cannot download the SMS Spam Collection from {url} ({why}); {_HINT}"
        ) from None
    return buffer.getvalue()
