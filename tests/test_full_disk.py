"""A full disk (or quota, or a read-only folder) while writing: one `error:` line naming the path
and what to do, no partial files, the previous run untouched. ENOSPC is injected where files are
flushed (every atomic write and the classify output flush before they count); a real small
tmpfs is used where this process may mount one."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from gpt_classifier.cli.main import cli
from gpt_classifier.fileio import sha256_of

FULL = "no space left on device; free space or choose another"


@pytest.fixture
def full_disk(monkeypatch):
    """``full_disk(part)``: flushing a file whose path contains ``part`` fails with ENOSPC."""
    real_fsync = os.fsync

    def start(part: str) -> None:
        def fsync(fd: int) -> None:
            if part in os.readlink(f"/proc/self/fd/{fd}"):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)

    return start


def _invoke(*args) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args])


def _train_args(micro_files, tokenizer_dir, output_dir) -> list:
    return [
        "train", "--output-dir", output_dir, "--data-file", micro_files["data"],
        "--model", micro_files["config"], "--init", "random", "--tokenizer-dir", tokenizer_dir,
        "--epochs", "1", "--batch-size", "8", "--no-progress", "--no-plots",
    ]  # fmt: skip


def _one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.exception.__class__ is SystemExit
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    return errors[0]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".tmp" in p.name or ".partial" in p.name)


def test_train_on_a_full_disk_keeps_the_previous_run_and_only_the_checkpoint(
    micro_files, tokenizer_dir, tmp_path, full_disk
):
    run = tmp_path / "run"
    assert _invoke(*_train_args(micro_files, tokenizer_dir, run)).exit_code == 0
    before = {p.name: sha256_of(p) for p in run.rglob("*") if p.is_file()}
    full_disk("/.run.partial/run/")  # the new run's files; its checkpoint still fits
    result = _invoke(*_train_args(micro_files, tokenizer_dir, run), "--overwrite")
    line = _one_error_line(result)
    assert line.startswith(f"error: cannot write {run}: {FULL} --output-dir")
    assert f"train --resume {run}" in line
    assert {p.name: sha256_of(p) for p in run.rglob("*") if p.is_file()} == before
    partial = tmp_path / ".run.partial"
    assert sorted(p.name for p in partial.iterdir()) == ["checkpoint"]  # the run's files went
    assert not list(tmp_path.rglob("*.tmp"))


def test_evaluate_output_on_a_full_disk(micro_run, tokenizer_dir, tmp_path, full_disk):
    target = tmp_path / "report.json"
    full_disk("report.json")
    result = _invoke("evaluate", micro_run, "--tokenizer-dir", tokenizer_dir, "--output", target)
    assert _one_error_line(result) == f"error: cannot write {target}: {FULL} --output"
    assert list(tmp_path.iterdir()) == []


def test_classify_output_on_a_full_disk(saved_run, tokenizer_dir, tmp_path, full_disk):
    source, target = tmp_path / "in.csv", tmp_path / "out.csv"
    source.write_text("text\nhello\nworld\n", encoding="utf-8")
    full_disk("out.csv")
    args = ["classify", saved_run, "--tokenizer-dir", tokenizer_dir, "--file", source]
    result = _invoke(*args, "--output", target, "--no-progress")
    line = _one_error_line(result)
    assert line.startswith(f"error: cannot write {target}: {FULL} --output")
    assert list(tmp_path.iterdir()) == [source]  # not even the header fitted: nothing kept


def test_experiments_table_on_a_full_disk(micro_files, tokenizer_dir, tmp_path, full_disk):
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"rows": [{"name": "only"}]}))
    out = tmp_path / "grid"
    full_disk(f"{out}/.experiments.")
    args = _train_args(micro_files, tokenizer_dir, out)[1:]
    result = _invoke("experiments", "--grid", grid, *args[2:], "--output-dir", out)
    assert _one_error_line(result) == f"error: cannot write {out}: {FULL} --output-dir"
    assert (out / "row-01" / "metrics.json").is_file() and _leftovers(out) == []


def _mount_tmpfs(folder: Path, size: str) -> bool:
    if os.geteuid() != 0:
        return False
    folder.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]
    return subprocess.run(mount, capture_output=True).returncode == 0


@pytest.mark.slow
def test_train_into_a_real_full_tmpfs(micro_files, tokenizer_dir, tmp_path):
    small = tmp_path / "small"
    if not _mount_tmpfs(small, "100k"):  # the model's 200 kB cannot fit; its checkpoint can
        pytest.skip("cannot mount a tmpfs here (needs root and mount rights)")
    try:
        args = _train_args(micro_files, tokenizer_dir, small / "run")
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
        done = subprocess.run(
            [sys.executable, "-m", "gpt_classifier.cli.main", *map(str, args)],
            capture_output=True,
            text=True,
            env=env,
        )
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.splitlines()[-1].startswith(f"error: cannot write {small / 'run'}: ")
        assert FULL in done.stderr
        assert sorted(p.name for p in (small / ".run.partial").iterdir()) == ["checkpoint"]
    finally:
        subprocess.run(["umount", str(small)], check=False)
