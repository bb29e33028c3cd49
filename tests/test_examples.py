"""The examples run as a user runs them: a fresh process, a tiny model, a few steps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_chapter6_runs_end_to_end(tiny_config_file, tokenizer_dir, sms_spam_file, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "chapter6.py"),
            "--model",
            str(tiny_config_file),
            "--data-file",
            str(sms_spam_file),
            "--tokenizer-dir",
            str(tokenizer_dir),
            "--epochs",
            "1",
            "--train-texts",
            "80",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # the example writes nothing, wherever it runs
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for split in ("train", "validation", "test"):
        assert any(line.startswith(f"{split} accuracy: ") for line in lines), result.stdout
    assert "epoch 1/1" in result.stderr  # the book's loop ran
    predictions = [line.split("\t") for line in lines if "\t" in line]
    assert len(predictions) == 2
    assert {label for label, _ in predictions} <= {"ham", "spam"}
    assert list(tmp_path.iterdir()) == []
