"""``gpt-classifier data prepare`` through click's CliRunner (stdout and stderr kept apart)."""

from __future__ import annotations

import csv

import pytest
from click.testing import CliRunner

from gpt_classifier.cli.main import cli
from gpt_classifier.data import read_splits


def _run(*args: str):
    return CliRunner().invoke(cli, ["data", "prepare", *args])


# The class table's rows: the full collection's, and the 400-row fixture's (every row kept).
TABLE = {
    True: (
        "ham    4827          4518      4518   3162         451   905",
        "spam    747           653       653    457          65   131",
    ),
    False: (
        "ham    174           172       172    120          17    35",
        "spam   226           212       212    148          21    43",
    ),
}


def test_prepare_real_file(tmp_path, sms_spam_file, sms_spam, tokenizer_dir):
    out = tmp_path / "splits"
    result = _run(
        "--data-file",
        str(sms_spam_file),
        "--tokenizer-dir",
        str(tokenizer_dir),
        "--output-dir",
        str(out),
    )
    assert result.exit_code == 0, result.output
    text = result.stdout
    ham, spam = TABLE[sms_spam.full]
    assert ham in text and spam in text
    assert f"{sms_spam.duplicates_dropped} repeated texts dropped" in text
    assert "longest training example:" in text and "median" in text
    assert sorted(p.name for p in out.iterdir()) == [
        "labels.json",
        "test.csv",
        "train.csv",
        "validation.csv",
    ]
    assert len(read_splits(out).train) == sum(sms_spam.unbalanced_splits["train"].values())


def test_prepare_multiclass_file_with_options(tmp_path, tokenizer_dir):
    path = tmp_path / "reviews.jsonl"
    rows = [f'{{"body": "review {i} " , "stars": {i % 3 + 1}}}' for i in range(30)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    result = _run(
        "--data-file",
        str(path),
        "--text-column",
        "body",
        "--label-column",
        "stars",
        "--balance",
        "none",
        "--fractions",
        "0.6,0.2,0.2",
        "--padding",
        "fixed:2",
        "--tokenizer-dir",
        str(tokenizer_dir),
        "--output-dir",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert "classes (3): 1, 2, 3" in result.stdout
    assert "truncated: 18 train text(s) cut to 2 tokens" in result.stdout
    with (out / "train.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["Label", "Text"] and len(rows) == 19


def test_errors_are_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("label,text\nham,hello\nspam,\n", encoding="utf-8")
    result = _run("--data-file", str(bad), "--output-dir", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error: ")
    assert "bad.csv:3: empty text" in result.stderr and result.stderr.count("\n") == 1
    assert result.stdout == ""
    result = _run("--padding", "wide", "--output-dir", str(tmp_path / "o"))
    assert result.exit_code == 2 and "invalid padding 'wide'" in result.stderr


@pytest.mark.parametrize("flag", ["--balance", "--format"])
def test_choices_are_checked_by_click(tmp_path, flag):
    result = _run(flag, "bogus", "--output-dir", str(tmp_path))
    assert result.exit_code == 2 and "Invalid value" in result.stderr
