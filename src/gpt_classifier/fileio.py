"""Files written whole or not at all, output checks, writer locks and the cache folder."""

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import GPTClassifierError

CACHE_ENV = "GPT_CLASSIFIER_CACHE"


def cache_dir(*subfolders: str) -> Path:
    """The cache folder: ``$GPT_CLASSIFIER_CACHE``, else ``$XDG_CACHE_HOME/gpt-classifier``."""
    if root := os.environ.get(CACHE_ENV):
        return Path(root).expanduser().joinpath(*subfolders)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return base.joinpath("gpt-classifier", *subfolders)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target`` that replaces it on success, else is removed."""
    target = Path(target)
    refuse_special(target, directory=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.parent / f".{target.name}.{os.urandom(6).hex()}.tmp"
    partial.touch(exist_ok=False)  # created by open(), so with the umask's permissions
    try:
        yield partial
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def cannot_write(path: str | os.PathLike[str], exc: OSError, flag: str) -> GPTClassifierError:
    """An OSError writing ``path`` as one line that says what to do."""
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    remedy = "free space or choose another" if full else "choose a writable place with"
    why = (exc.strerror or str(exc)).lower()
    return GPTClassifierError(f"cannot write {path}: {why}; {remedy} {flag}")


@contextlib.contextmanager
def writing(path: str | os.PathLike[str], flag: str) -> Iterator[None]:
    """Any OSError inside becomes :func:`cannot_write`'s one-line error."""
    try:
        yield
    except OSError as exc:
        raise cannot_write(path, exc, flag) from None


def write_text(path: str | os.PathLike[str], text: str | bytes) -> None:
    """``text`` as UTF-8 (bytes as they are) into ``path``, whole or not at all."""
    with atomic_path(path) as partial:
        partial.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)


def write_json(path: str | os.PathLike[str], values: Any) -> None:
    """Indented JSON, atomically (non-finite floats as ``NaN``/``Infinity``)."""
    write_text(path, json.dumps(values, indent=2) + "\n")


def read_json(path: str | os.PathLike[str], what: str) -> Any:
    """``path``'s JSON; a missing, unreadable or invalid file: a one-line error naming ``what``."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GPTClassifierError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise GPTClassifierError(f"cannot read {what} {path} ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise GPTClassifierError(f"{what} {path} is not valid UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise GPTClassifierError(f"{what} {path} is not valid JSON ({exc})") from None


def sha256_of(path: str | os.PathLike[str]) -> str:
    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def fsync_directory(folder: str | os.PathLike[str]) -> None:
    """Make a rename inside ``folder`` durable (a no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_KINDS = dict(d="a directory", p="a FIFO", c="a character device", b="a block device", s="a socket")


def refuse_special(target: Path, *, directory: bool, flag: str = "output") -> None:
    """Only regular files (or, with ``directory``, folders) are replaced: never ``/dev/null``."""
    with contextlib.suppress(OSError):  # nothing there yet
        mode = os.stat(target).st_mode
        if not (stat.S_ISDIR if directory else stat.S_ISREG)(mode):
            kind = _KINDS.get(stat.filemode(mode)[0], "a file")
            not_a = "directory" if directory else "regular file"
            raise GPTClassifierError(f"{flag} {target} is {kind}, not a {not_a}")


def check_output_dir(target: str | Path, *, overwrite: bool, file: bool = False) -> Path:
    """Fail before any work if ``target`` cannot become an output folder (``file``: a file)."""
    target = Path(target) if file else Path(target).expanduser()
    refuse_special(target, directory=not file, flag="--output" if file else "output directory")
    if file and target.exists() and not overwrite:
        raise GPTClassifierError(f"--output {target} exists; pass --overwrite to replace it")
    if not file and target.is_dir() and any(target.iterdir()) and not overwrite:
        what = "a gpt-classifier run" if (target / "run.json").exists() else "not empty"
        raise GPTClassifierError(
            f"output directory {target} is {what}; pass --overwrite to replace it, "
            "or choose another --output-dir"
        )
    parent = next(p for p in [target.parent, *target.parent.parents] if p.exists())
    if not parent.is_dir():
        raise GPTClassifierError(f"cannot create {target}: {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise GPTClassifierError(f"cannot create {target}: {parent} is not writable")
    return target


def writer_lock(target: str | os.PathLike[str], flag: str) -> contextlib.ExitStack:
    """Be ``target``'s one writer until the returned stack closes (``flock`` on ``.NAME.lock``)."""
    target = Path(target).expanduser()
    lock = target.parent / f".{target.name}.lock"
    while True:
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise GPTClassifierError(f"cannot create {lock}: {exc.strerror.lower()}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 20, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if not isinstance(exc, BlockingIOError):
                raise GPTClassifierError(f"cannot lock {lock}: {exc.strerror.lower()}") from None
            raise GPTClassifierError(
                f"{target} is being written by another process (pid {holder}); wait for it or "
                f"choose another {flag}"
            ) from None
        with contextlib.suppress(FileNotFoundError):
            if os.path.samestat(os.fstat(fd), os.stat(lock)):
                break
        os.close(fd)  # the holder removed the file as we locked it: lock the new one
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    stack = contextlib.ExitStack()
    stack.callback(os.close, fd)
    stack.callback(lock.unlink, missing_ok=True)  # runs first, while the lock is still held
    return stack
