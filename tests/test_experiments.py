"""`gpt-classifier experiments`: the book's rows, grids of your own, the table, resume, the
TF-IDF baseline."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from gpt_classifier.cli.main import cli
from gpt_classifier.errors import GPTClassifierError
from gpt_classifier.experiments.grid import (
    BOOK_ROWS,
    Row,
    execution_order,
    load_grid,
    parse_rows,
    wilson_interval,
)


@pytest.fixture
def files(micro_files):
    return micro_files


def _experiments(files, tokenizer_dir, output_dir, *extra):
    args = [
        "experiments", "--data-file", files["data"], "--model", files["config"],
        "--init", "random", "--tokenizer-dir", tokenizer_dir, "--epochs", "1",
        "--batch-size", "4", "--no-progress", "--output-dir", output_dir, *extra,
    ]  # fmt: skip
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_the_book_grid_has_its_19_rows_numbered_as_in_the_book():
    assert [row.number for row in BOOK_ROWS] == list(range(1, 20))
    assert BOOK_ROWS[16].options == {"causal_mask": False}  # row 17
    assert "nothing to ignore" in BOOK_ROWS[17].note  # row 18 runs, and says why it equals 1
    assert [r.number for r in parse_rows("1-4,14-19", BOOK_ROWS)] == [1, 2, 3, 4, *range(14, 20)]
    with pytest.raises(GPTClassifierError, match="no row 20"):
        parse_rows("19-20", BOOK_ROWS)
    assert [r.number for r in parse_rows(" 2 ", BOOK_ROWS)] == [2]
    for spec, part in (("1,x", "x"), ("3-", "3-"), ("-3", "-3")):
        with pytest.raises(GPTClassifierError, match=f"'{part}' is not a row"):
            parse_rows(spec, BOOK_ROWS)


def test_wilson_interval():
    low, high = wilson_interval(250, 262)
    assert 0.92 < low < 0.954 < high < 0.98
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0) and wilson_interval(0, 10)[0] == 0.0


def test_book_rows_run_and_the_table_is_written(files, tokenizer_dir, tmp_path):
    out = tmp_path / "grid"
    result = _experiments(files, tokenizer_dir, out, "--rows", "1,2,17,18", "--baseline", "tfidf")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "experiments.json").read_text())
    assert [row["row"] for row in summary] == [1, 2, 17, 18, 0]
    for row in summary:
        assert row["runs"] == 1 and row["failed"] == []
        low, high = row["test_accuracy_ci95"]
        assert low <= row["test_accuracy_mean"] <= high
    by_row = {row["row"]: row for row in summary}
    for number in (1, 2, 17, 18):  # the table's figures are the rows' own, read back
        metrics = json.loads((out / f"row-{number:02d}" / "metrics.json").read_text())
        row = by_row[number]
        for split in ("train", "validation", "test"):
            assert row[f"{split}_accuracy_mean"] == metrics[split]["accuracy"]
        assert row["test_macro_f1_mean"] == metrics["test"]["macro_avg"]["f1"]
        assert row["test_roc_auc_mean"] == metrics["test"]["roc_auc"]
        assert row["test_examples"] == metrics["test"]["num_examples"]
        correct = round(metrics["test"]["accuracy"] * metrics["test"]["num_examples"])
        assert row["test_accuracy_ci95"] == list(
            wilson_interval(correct, metrics["test"]["num_examples"])
        )
        timings = json.loads((out / f"row-{number:02d}" / "timings.json").read_text())
        assert row["seconds_mean"] == timings["seconds"]["total"]
        markdown_accuracy = f"{100 * metrics['test']['accuracy']:.2f} %"
        assert markdown_accuracy in (out / "experiments.md").read_text()
    # row 18 is row 1 with an ignore index that has nothing to ignore: the very same numbers
    for key in ("train_accuracy_mean", "validation_accuracy_mean", "test_accuracy_mean"):
        assert by_row[18][key] == by_row[1][key]
    assert (
        json.loads((out / "row-17" / "run.json").read_text())["model"]["gpt_config"]["causal"]
        is False
    )
    assert by_row[0]["name"] == "TF-IDF + logistic regression"
    markdown = (out / "experiments.md").read_text()
    assert "| 17 | no causal mask |" in markdown and "Row 18: same as row 1" in markdown
    assert (out / "experiments.csv").read_text().startswith("#,name,model,weights")
    assert (out / "experiments.png").stat().st_size > 1000


def test_resume_keeps_finished_rows(files, tokenizer_dir, tmp_path):
    out = tmp_path / "grid"
    assert _experiments(files, tokenizer_dir, out, "--rows", "1").exit_code == 0
    before = (out / "row-01" / "trained.safetensors").stat().st_mtime_ns  # rows save trainable
    again = _experiments(files, tokenizer_dir, out, "--rows", "1,16", "--resume")
    assert again.exit_code == 0, again.output
    assert "row 1 (book's recipe (chapter 6)), seed 123: finished earlier" in again.output
    assert (out / "row-01" / "trained.safetensors").stat().st_mtime_ns == before
    assert (out / "row-16" / "run.json").is_file()
    refused = _experiments(files, tokenizer_dir, out, "--rows", "1")
    assert refused.exit_code == 2 and "--overwrite" in refused.output


def test_a_grid_of_your_own_with_seeds(files, tokenizer_dir, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(
        '[base]\npooling = "last-real"\npadding = "batch"\n\n'
        '[[rows]]\nname = "lr 5e-5"\n\n[[rows]]\nname = "lr 1e-3"\nlr = 1e-3\n'
    )
    out = tmp_path / "mine"
    result = _experiments(files, tokenizer_dir, out, "--grid", grid, "--seeds", "2")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("row-*")) == [
        "row-01-seed-123", "row-01-seed-124", "row-02-seed-123", "row-02-seed-124",
    ]  # fmt: skip
    summary = json.loads((out / "experiments.json").read_text())
    assert [row["runs"] for row in summary] == [2, 2]
    assert all(row["test_accuracy_std"] is not None for row in summary)
    assert " ± " in (out / "experiments.md").read_text()


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"rows": [{"name": "a", "learning_rate": 1}]}', "unknown train options"),
        ('{"rows": [{"name": "a", "output_dir": "x"}]}', "set by the grid"),
        ('{"rows": []}', "has no rows"),
        ("{not json", "not a valid grid file"),
    ],
)
def test_bad_grid_files_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "grid.json"
    path.write_text(text)
    with pytest.raises(GPTClassifierError, match=message):
        load_grid(path)


def test_a_failing_row_is_reported_and_the_others_still_run(files, tokenizer_dir, tmp_path):
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"rows": [{"name": "ok"}, {"name": "bad", "padding": "fixed:999"}]}))
    out = tmp_path / "grid"
    result = _experiments(files, tokenizer_dir, out, "--grid", grid)
    assert result.exit_code == 2
    assert "1 of 2 runs failed" in result.output
    assert "Row 2 failed: seed 123: padding fixed:999" in (out / "experiments.md").read_text()


def test_each_row_reports_its_own_peak_memory():
    import torch

    from gpt_classifier.training.memory import peak_rss_mb, reset_peak_rss

    block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    before = peak_rss_mb()
    del block
    if not reset_peak_rss():
        pytest.skip("no /proc/self/clear_refs on this system")
    assert peak_rss_mb() < before - 32  # the 64 MiB are no longer in the new peak


def test_the_table_describes_each_row_with_its_real_options():
    from gpt_classifier.experiments.grid import Row

    described = Row(14, "x", {"preset": "book", "padding": "batch", "batch_size": 1}).describe()
    assert described["context"] == "no padding" and described["token position"] == "last"
    assert Row(1, "y", {"model": "/tmp/tiny.json", "init": "random"}).describe()["model"] == (
        "tiny.json"
    )
    assert Row(2, "z", {}).describe()["token position"] == "last-real"  # the default preset's


def test_rows_run_shallow_prefixes_first_and_report_in_grid_order():
    rows = parse_rows("1-4,11,14-19", BOOK_ROWS)
    order = execution_order({"preset": "book"}, rows)
    assert [row.number for row in order] == [4, 1, 2, 14, 15, 16, 17, 18, 19, 3, 11]
    mine = [Row(1, "all", {"trainable": "all"}), Row(2, "head", {"trainable": "head"})]
    assert [row.number for row in execution_order({}, mine)] == [2, 1]


def test_a_second_writer_of_the_grid_is_refused(files, tokenizer_dir, tmp_path, hold_lock):
    out = tmp_path / "grid"
    assert _experiments(files, tokenizer_dir, out, "--rows", "1").exit_code == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    holder = hold_lock(out)
    refused = _experiments(files, tokenizer_dir, out, "--rows", "1", "--overwrite")
    assert refused.exit_code == 2
    assert refused.output == (
        f"error: {out} is being written by another process (pid {holder.pid}); wait for it or "
        "choose another --output-dir\n"
    )
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    holder.kill()
    holder.wait()
    again = _experiments(files, tokenizer_dir, out, "--rows", "1", "--resume")
    assert again.exit_code == 0, again.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid"]
