"""The train / evaluate / classify / zero-shot commands, their output format and their errors."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from gpt_classifier.cli.main import cli
from gpt_classifier.runs.transaction import write_marker


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
def config_file(saved_config_file):
    return saved_config_file  # context length 32


@pytest.fixture(scope="module")
def run_dir(workdir, data_file, config_file, tokenizer_dir):
    out = workdir / "run"
    result = CliRunner().invoke(
        cli,
        [
            "train",
            "--data-file",
            str(data_file),
            "--model",
            str(config_file),
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
    from gpt_classifier.inference import TextClassifier

    texts = ["win a prize", "lunch?"]
    predictions = TextClassifier.from_run(run_dir, tokenizer_dir=tokenizer_dir).classify(texts)
    assert result.stdout.splitlines() == [
        f"{p.label}\t{p.probability:.4f}\t{text}"
        for p, text in zip(predictions, texts, strict=True)
    ]


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


def _zero_shot(data_file, config_file, tokenizer_dir, output, *flags):
    return _invoke(
        "zero-shot",
        "--data-file",
        data_file,
        "--model",
        config_file,
        "--init",
        "random",
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--no-progress",
        "--output",
        output,
        *flags,
        tokenizer_dir=tokenizer_dir,
    )


def test_zero_shot_scores_the_answers(tmp_path, data_file, config_file, tokenizer_dir):
    output = tmp_path / "zs.json"
    result = _zero_shot(data_file, config_file, tokenizer_dir, output, "--limit", "3")
    assert result.exit_code == 0, result.output
    answers = json.loads(output.read_text())
    assert answers["num_examples"] == 3 and answers["positive_label"] == "spam"
    correct = sum(e["predicted"] == e["label"] for e in answers["examples"])
    assert answers["accuracy"] == correct / 3
    assert result.stdout == (
        f"zero-shot accuracy on 3 test texts: {100 * correct / 3:.2f} % "
        f"(answers: {', '.join(f'{k} {v}' for k, v in sorted(answers['answers'].items()))})\n"
    )


def test_zero_shot_scores_the_test_split_of_a_run_with_the_same_flags(
    run_dir, tmp_path, data_file, config_file, tokenizer_dir
):
    output = tmp_path / "zs.json"
    result = _zero_shot(data_file, config_file, tokenizer_dir, output, "--max-new-tokens", "1")
    assert result.exit_code == 0, result.output
    with (run_dir / "data" / "test.csv").open(encoding="utf-8") as handle:
        rows = list(csv.reader(handle))[1:]
    scored = json.loads(output.read_text())["examples"]
    assert [(e["label"], e["text"]) for e in scored] == [tuple(row) for row in rows]
    kept = _zero_shot(
        data_file, config_file, tokenizer_dir, output, "--balance", "none", "--seed", "7"
    )
    assert kept.exit_code == 0, kept.output
    assert [e["text"] for e in json.loads(output.read_text())["examples"]] != [
        e["text"] for e in scored
    ]


def test_zero_shot_rejects_an_answer_longer_than_the_context(
    tmp_path, data_file, config_file, tokenizer_dir
):
    result = _zero_shot(
        data_file, config_file, tokenizer_dir, tmp_path / "zs.json", "--max-new-tokens", "32"
    )
    _error(result, "max_new_tokens must be between 1 and 31")


# --- the run itself, output details, and the errors a user meets with a bad run --------------


def test_train_writes_a_complete_run(run_dir):
    names = {p.name for p in run_dir.iterdir()}
    expected = {"run.json", "model.safetensors", "metrics.json", "report.txt", "history.json"}
    assert expected | {"README.md", "tokenizer"} <= names  # the model card; the tokenizer's files
    assert not {"loss.png", "accuracy.png", "confusion_matrix.png"} & names  # --no-plots
    assert {p.name for p in (run_dir / "data").iterdir()} >= {"train.csv", "test.csv"}
    run = json.loads((run_dir / "run.json").read_text())
    assert run["classifier"]["classes"] == ["ham", "spam"]
    assert run["training"]["epochs"] == 1


def test_classify_flattens_whitespace_and_notes_truncation(run_dir, tokenizer_dir):
    long_text = " ".join(["word"] * 100)  # 100 tokens, the run reads at most 32
    result = _invoke(
        "classify", run_dir, "two\tlines\nhere", long_text, tokenizer_dir=tokenizer_dir
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].split("\t")[2] == "two lines here"
    assert lines[1].split("\t")[2] == long_text
    assert "note: 1 text(s) longer than 32 tokens were truncated" in result.stderr
    short = _invoke("classify", run_dir, "hello", tokenizer_dir=tokenizer_dir)
    assert "note:" not in short.stderr and len(short.stdout.splitlines()) == 1


def test_classify_json_lines_one_per_text_in_order(run_dir, tokenizer_dir):
    texts = ["first text", "second", "a third, longer text than the others"]
    result = _invoke("classify", run_dir, "--json", *texts, tokenizer_dir=tokenizer_dir)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["text"] for row in rows] == texts
    for row in rows:
        assert row["label"] in ("ham", "spam") and set(row["probabilities"]) == {"ham", "spam"}
        assert row["probability"] == row["probabilities"][row["label"]]
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)


def test_classify_file_output_matches_argument_output(run_dir, tokenizer_dir, workdir):
    source, target = workdir / "in2.csv", workdir / "out2.csv"
    texts = ["free prize, call now", "see you at lunch", "ok"]
    _write_csv(source, [(str(i), t, "x") for i, t in enumerate(texts)], ("id", "message", "note"))
    result = _invoke(
        "classify", run_dir, "--file", source, "--output", target, tokenizer_dir=tokenizer_dir
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # the predictions went to the file
    rows = list(csv.DictReader(target.open(encoding="utf-8")))
    per_class = ["probability_ham", "probability_spam"]
    assert list(rows[0]) == ["id", "message", "note", "predicted_label", "probability", *per_class]
    assert [r["message"] for r in rows] == texts and {r["note"] for r in rows} == {"x"}
    for r in rows:
        assert r["probability"] == r[f"probability_{r['predicted_label']}"]
        assert sum(float(r[c]) for c in per_class) == pytest.approx(1.0, abs=1e-5)
    assert "in2.csv, 3 rows, texts from column 'message'" in result.stderr
    assert "\r" not in result.stderr  # no bar redraws where stderr is not a terminal
    direct = _invoke("classify", run_dir, *texts, tokenizer_dir=tokenizer_dir)
    labels = [line.split("\t")[0] for line in direct.stdout.splitlines()]
    assert [r["predicted_label"] for r in rows] == labels


def test_evaluate_on_a_file_counts_its_rows(run_dir, tokenizer_dir, data_file):
    result = _invoke("evaluate", run_dir, "--data", data_file, tokenizer_dir=tokenizer_dir)
    assert result.exit_code == 0, result.output
    summary = result.stdout.split("\n\n")[1].splitlines()
    assert summary[0].split()[:4] == ["split", "n", "loss", "accuracy"]
    data_row = [line.split() for line in summary if line.split()[:1] == ["data"]]
    assert data_row and data_row[0][1] == "40"


def _broken_copy(run_dir, tmp_path, change):
    import shutil

    copy = tmp_path / "broken"
    shutil.copytree(run_dir, copy)
    values = json.loads((copy / "run.json").read_text())
    change(values)
    (copy / "run.json").write_text(json.dumps(values))
    write_marker(copy)  # consistent digests: the check under test is run.json's content
    return copy


def test_bad_run_directories_exit_2(run_dir, tokenizer_dir, tmp_path):
    old = _broken_copy(run_dir, tmp_path / "a", lambda v: v.update(format_version=999))
    _error(_invoke("classify", old, "hi", tokenizer_dir=tokenizer_dir), "another version")
    _error(_invoke("evaluate", old, tokenizer_dir=tokenizer_dir), "another version")

    def three_classes(values):
        values["classifier"].update(classes=["ham", "spam", "eggs"], num_classes=3)

    mismatch = _broken_copy(run_dir, tmp_path / "b", three_classes)
    _error(
        _invoke("classify", mismatch, "hi", tokenizer_dir=tokenizer_dir),
        "head for 2 classes",
        "lists 3",
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    _error(_invoke("classify", empty, "hi", tokenizer_dir=tokenizer_dir), "no run.json")
    _error(_invoke("evaluate", tmp_path / "missing", tokenizer_dir=tokenizer_dir), "not found")


def test_classify_usage_errors_exit_2(run_dir, tokenizer_dir, workdir):
    _error(_invoke("classify", run_dir, tokenizer_dir=tokenizer_dir), "nothing to classify")
    _error(_invoke("classify", run_dir, "ok", "", tokenizer_dir=tokenizer_dir), "text 2 is empty")
    _error(
        _invoke("classify", run_dir, "x", "--output", workdir / "o.csv"),
        "--output needs --file",
    )
    ambiguous = workdir / "ambiguous.csv"
    _write_csv(ambiguous, [("1", "x")], header=("id", "words"))
    _error(
        _invoke("classify", run_dir, "--file", ambiguous, tokenizer_dir=tokenizer_dir),
        "--text-column",
    )
    _error(
        _invoke("classify", run_dir, "--file", workdir / "nope.csv", tokenizer_dir=tokenizer_dir),
        "input file not found",
    )


def test_unknown_model_name_lists_the_valid_ones(data_file, workdir, tokenizer_dir):
    result = _invoke(
        "train",
        "--data-file",
        data_file,
        "--model",
        "gpt5",
        "--init",
        "random",
        "--output-dir",
        workdir / "bad-model",
        tokenizer_dir=tokenizer_dir,
    )
    _error(result, "'gpt5'", "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
    assert not (workdir / "bad-model").exists()  # nothing was written


def test_evaluate_reproduces_the_metrics_written_at_training_time(run_dir, tokenizer_dir, workdir):
    """One code path (``evaluate_split``) behind metrics.json and ``gpt-classifier evaluate``."""
    target = workdir / "again.json"
    result = _invoke("evaluate", run_dir, "--output", target, tokenizer_dir=tokenizer_dir)
    assert result.exit_code == 0, result.output
    assert "test" in result.stdout and "validation" in result.stdout
    written = json.loads((run_dir / "metrics.json").read_text())
    again = json.loads(target.read_text())
    assert list(written) == ["train", "validation", "test"]
    assert again == written  # loss, accuracy, F1, ROC-AUC of every split, to the last bit
