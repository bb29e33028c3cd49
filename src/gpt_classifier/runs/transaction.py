"""A run directory written as one transaction: staged in ``.<name>.partial/run``, marked
complete by ``run-complete.json``, renamed into place (see docs/design.md, Guarantees)."""

import json
import os
import shutil
from pathlib import Path

from ..errors import GPTClassifierError
from ..faults import crash_point
from ..fileio import cannot_write, fsync_directory, sha256_of, write_json

MARKER_FILE = "run-complete.json"
MARKER_FORMAT = "gpt-classifier-run-complete"


def backup_dir(target: Path) -> Path:
    return target.parent / f".{target.name}.backup"


class StagedRun:
    """The staging folder of one run directory, committed with :meth:`commit`."""

    def __init__(self, target: str | os.PathLike[str]) -> None:
        self.target = Path(target).expanduser()
        self.root = self.target.parent / f".{self.target.name}.partial"
        self.folder, self.checkpoint_dir = self.root / "run", self.root / "checkpoint"

    def start(self, *, keep_checkpoint: bool = False) -> "StagedRun":
        try:
            if (stale := self.folder if keep_checkpoint else self.root).exists():
                shutil.rmtree(stale)
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise cannot_write(self.root, exc, "--output-dir") from None
        return self

    def discard(self, *, keep_checkpoint: bool = False) -> None:
        shutil.rmtree(self.folder if keep_checkpoint else self.root, ignore_errors=True)

    def commit(self) -> Path:
        crash_point("staged")
        write_marker(self.folder)
        crash_point("marked")
        return commit_staged(self.folder, self.target, cleanup=self.root)


def commit_staged(staged: Path, target: Path, *, cleanup: Path) -> Path:
    backup = backup_dir(target)
    if backup.exists() and not target.exists():  # an earlier commit died between its renames
        os.rename(backup, target)
    shutil.rmtree(backup, ignore_errors=True)
    if target.exists():
        os.rename(target, backup)
        crash_point("backed-up")
    os.rename(staged, target)
    fsync_directory(target.parent)
    crash_point("renamed")
    shutil.rmtree(backup, ignore_errors=True)
    shutil.rmtree(cleanup, ignore_errors=True)
    return target


def finish_interrupted_commit(target: Path) -> bool:
    """Complete what a crash during a commit left; True if ``target`` is now the staged run."""
    staged = StagedRun(target)
    if (staged.folder / MARKER_FILE).is_file():  # staged and marked, not yet (all) renamed
        commit_staged(staged.folder, target, cleanup=staged.root)
        return True
    if staged.root.is_dir() and not staged.folder.exists() and (target / MARKER_FILE).is_file():
        shutil.rmtree(backup_dir(target), ignore_errors=True)  # renamed; clean-up was left
        shutil.rmtree(staged.root, ignore_errors=True)
        return True
    return False


def write_marker(folder: Path) -> None:
    files = (p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    names = sorted(p.relative_to(folder).as_posix() for p in files if p.name != MARKER_FILE)
    digests = {name: sha256_of(folder / name) for name in names}
    write_json(folder / MARKER_FILE, {"format": MARKER_FORMAT, "sha256": digests})


def verify_files(folder: Path, names: list[str]) -> None:
    """Check that the marker lists each of ``names`` with its digest."""
    marker = folder / MARKER_FILE
    if not marker.is_file():
        resumable = StagedRun(folder).checkpoint_dir.is_dir()
        hint = f"; an interrupted training can be resumed: gpt-classifier train --resume {folder}"
        raise GPTClassifierError(
            f"{folder} is not a complete gpt-classifier run (no {MARKER_FILE}: interrupted, "
            f"written by an older version, or not a run){hint if resumable else ''}"
        )
    try:
        values = json.loads(marker.read_text(encoding="utf-8"))
        digests = values["sha256"]
        if values.get("format") != MARKER_FORMAT or not isinstance(digests, dict):
            raise ValueError("unknown format")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise GPTClassifierError(f"{marker} is unreadable or malformed ({exc})") from None
    for name, path in ((name, folder / name) for name in names):
        if name not in digests:
            raise GPTClassifierError(f"{marker} does not list {name}")
        try:
            actual = sha256_of(path)
        except FileNotFoundError:
            raise GPTClassifierError(f"{folder} has no {name}") from None
        except OSError as exc:
            raise GPTClassifierError(f"cannot read {path}: {exc.strerror.lower()}") from None
        if actual != str(digests[name]):
            raise GPTClassifierError(
                f"{path} does not match its digest in {MARKER_FILE} "
                "(changed or mixed with another run's files)"
            )
