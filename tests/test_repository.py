"""The repository itself: no unresolved merge left in a tracked file."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SIDES = ("<<<<<<< ", ">>>>>>> ")  # a conflict's two ends; "=======" alone splits them


def test_no_tracked_file_holds_merge_conflict_markers():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    conflicted = []
    for name in filter(None, listed):
        path = ROOT / name.decode()
        if not path.is_file() or path.suffix in {".png", ".ico"}:
            continue
        for number, line in enumerate(
            path.read_text(encoding="utf-8", errors="replace").splitlines(True), start=1
        ):
            if line.startswith(SIDES) or line.rstrip("\r\n") == "=======":
                conflicted.append(f"{name.decode()}:{number}")
    assert not conflicted, f"merge conflict markers in {', '.join(conflicted)}"
