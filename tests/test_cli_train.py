"""The train / evaluate / classify / zero-shot commands, their output format and their errors."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from gpt_classifier.cli.main import cli

TINY = {
    "vocab_size": 50257,
    "context_length": 64,
    "emb_dim": 32,
    "n_heads": 4,
    "n_layers": 2,
    "drop_rate": 0.0,
    "qkv_bias": True,
}


def _write_csv(path, rows, header=("text", "label")) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def data_file(workdir):
    rows = [(f"win a free prize now {i}", "spam") for i in range(20)]
    rows += [(f"see you at lunch {i}", "ham") for i in range(20)]
    path = workdir / "sms.csv"
    _write_csv(path, rows)
    return path


@pytest.fixture(scope="module")
def run_dir(workdir, data_file, tokenizer_dir):
    config = workdir / "tiny.json"
    config.write_text(json.dumps(TINY))
    out = workdir / "run"
    result = CliRunner().invoke(
        cli,
        [
            "train",
            "--data-file",
            str(data_file),
            "--model",
            str(config),
            "--init",
            "random",
            "--tokenizer-dir",
            str(tokenizer_dir),
            "--epochs",
            "1",
            "--no-progress",
            "--no-plots",
            "--output-dir",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Summary" in result.stdout and "accuracy" in result.stdout
    return out


def _invoke(*args, tokenizer_dir=None):
    env = {"GPT_CLASSIFIER_TOKENIZER_DIR": str(tokenizer_dir)} if tokenizer_dir else {}
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def test_classify_prints_one_tab_separated_line_per_text(run_dir, tokenizer_dir):
    result = _invoke("classify", run_dir, "win a prize", "lunch?", tokenizer_dir=tokenizer_dir)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    for line, text in zip(lines, ["win a prize", "lunch?"], strict=True):
        label, probability, echoed = line.split("\t")
        assert label in ("ham", "spam") and 0.5 <= float(probability) <= 1.0
        assert echoed == text


def test_classify_json_lines(run_dir, tokenizer_dir):
    result = _invoke("classify", run_dir, "--json", "hello", tokenizer_dir=tokenizer_dir)
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    assert row["text"] == "hello" and set(row["probabilities"]) == {"ham", "spam"}


def test_classify_file_to_csv_keeps_the_columns(run_dir, tokenizer_dir, workdir):
    source, target = workdir / "in.csv", workdir / "out.csv"
    _write_csv(source, [("1", "free prize"), ("2", "see you")], header=("id", "message"))
    result = _invoke(
        "classify", run_dir, "--file", source, "--output", target, tokenizer_dir=tokenizer_dir
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(target.open(encoding="utf-8")))
    assert [r["id"] for r in rows] == ["1", "2"]
    assert {r["predicted_label"] for r in rows} <= {"ham", "spam"}


def test_evaluate_prints_the_report(run_dir, tokenizer_dir, data_file):
    result = _invoke("evaluate", run_dir, tokenizer_dir=tokenizer_dir)
    assert result.exit_code == 0, result.output
    assert "test" in result.stdout and "validation" in result.stdout
    result = _invoke("evaluate", run_dir, "--data", data_file, tokenizer_dir=tokenizer_dir)
    assert result.exit_code == 0, result.output
    assert "data" in result.stdout


def _error(result, *words):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_errors_are_one_line_and_exit_2(run_dir, tokenizer_dir, workdir, data_file):
    _error(_invoke("classify", workdir / "missing", "x"), "run directory not found")
    _error(_invoke("classify", run_dir, "", tokenizer_dir=tokenizer_dir), "empty")
    unknown = workdir / "unknown.csv"
    _write_csv(unknown, [("hello", "maybe")])
    _error(
        _invoke("evaluate", run_dir, "--data", unknown, tokenizer_dir=tokenizer_dir),
        "'maybe'",
        "ham, spam",
    )
    no_column = workdir / "nocol.csv"
    _write_csv(no_column, [("1", "x")], header=("id", "body"))
    _error(
        _invoke(
            "classify",
            run_dir,
            "--file",
            no_column,
            "--text-column",
            "text",
            tokenizer_dir=tokenizer_dir,
        ),
        "no column 'text'",
    )
    common = ["--init", "random", "--output-dir", workdir / "bad", "--no-progress"]
    _error(
        _invoke(
            "train",
            "--data-file",
            data_file,
            "--trainable",
            "some",
            *common,
            tokenizer_dir=tokenizer_dir,
        ),
        "some",
    )
    _error(
        _invoke(
            "train",
            "--data-file",
            data_file,
            "--padding",
            "wide",
            *common,
            tokenizer_dir=tokenizer_dir,
        ),
        "wide",
    )
    _error(
        _invoke(
            "train",
            "--data-file",
            data_file,
            "--model",
            "gpt5",
            *common,
            tokenizer_dir=tokenizer_dir,
        ),
        "gpt2-medium",
    )
    _error(
        _invoke(
            "train", "--data-file", workdir / "absent.csv", *common, tokenizer_dir=tokenizer_dir
        ),
        "absent.csv",
    )


def test_zero_shot_scores_the_answers(workdir, data_file, tokenizer_dir):
    config = workdir / "tiny.json"
    result = _invoke(
        "zero-shot",
        "--data-file",
        data_file,
        "--model",
        config,
        "--init",
        "random",
        "--limit",
        "3",
        "--no-progress",
        "--output",
        workdir / "zs.json",
        tokenizer_dir=tokenizer_dir,
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("zero-shot accuracy on 3 test texts:")
    answers = json.loads((workdir / "zs.json").read_text())
    assert answers["num_examples"] == 3 and answers["positive_label"] == "spam"
