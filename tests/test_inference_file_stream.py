"""``classify --file`` streams: chunked output == one-chunk output, an interrupted run (SIGKILL
at the crash points) leaves no file under the output's name and ``--resume`` finishes it as if
never killed, and a partial output is never continued from another input."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from gpt_classifier.cli.main import cli
from gpt_classifier.data import Record, read_records, write_split_file
from gpt_classifier.data.readers import iter_text_rows, read_unlabelled, scan_text_file
from gpt_classifier.errors import GPTClassifierError
from gpt_classifier.faults import KILL_AT_ENV
from gpt_classifier.inference.file_stream import partial_path, progress_path

ROWS = 23


@pytest.fixture
def texts_file(tmp_path):
    path = tmp_path / "in.csv"
    lines = ["id,text"] + [f'{i},"text {i} {"spam " * (i % 5)}\nline two"' for i in range(ROWS)]
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    return path


def _args(saved_run, tokenizer_dir, source, *extra):
    return ["classify", str(saved_run), "--tokenizer-dir", str(tokenizer_dir)] + [
        "--file",
        str(source),
        *map(str, extra),
    ]


def _classify(*args):
    return CliRunner().invoke(cli, list(args))


def _subprocess(args, env=None):
    command = [sys.executable, "-m", "gpt_classifier.cli.main", *args]
    env = {**os.environ, **(env or {})}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def test_chunked_output_is_the_one_chunk_output(saved_run, tokenizer_dir, texts_file, tmp_path):
    outputs = {}
    for rows in (1, 4, 10_000):
        target = tmp_path / f"out-{rows}.csv"
        done = _classify(
            *_args(saved_run, tokenizer_dir, texts_file, "--output", target, "--chunk-rows", rows)
        )
        assert done.exit_code == 0, done.output
        assert f"wrote {ROWS} predictions to {target}" in done.stderr
        outputs[rows] = target.read_text(encoding="utf-8")
        assert not partial_path(target).exists() and not progress_path(target).exists()
    # the same rows and labels; probabilities within float32's batch-shape rounding (~1e-6)
    tables = {n: list(csv.reader(out.splitlines(keepends=True))) for n, out in outputs.items()}
    for rows in (4, 10_000):
        _same_up_to_rounding(tables[1], tables[rows])
    assert outputs[1].count("\n") == 1 + 2 * ROWS  # each text keeps its line break
    printed = {
        rows: _classify(*_args(saved_run, tokenizer_dir, texts_file, "--chunk-rows", rows)).stdout
        for rows in (3, 10_000)
    }
    assert len(printed[3].splitlines()) == ROWS
    split = {rows: [line.split("\t") for line in out.splitlines()] for rows, out in printed.items()}
    _same_up_to_rounding(split[3], split[10_000])


def _same_up_to_rounding(rows: list[list[str]], others: list[list[str]]):
    """The same cells, but for probabilities, which may differ by float32's rounding (a text
    or label cell that differs is not a number: the float() fails the test)."""
    assert len(rows) == len(others)
    for row, other in zip(rows, others, strict=True):
        assert len(row) == len(other)
        for cell, other_cell in zip(row, other, strict=True):
            if cell != other_cell:
                assert abs(float(cell) - float(other_cell)) <= 1e-4


@pytest.mark.parametrize("point", ["classify-chunk:2", "classify-chunk-written:3"])
def test_a_killed_run_resumes_to_the_same_output(
    saved_run, tokenizer_dir, texts_file, tmp_path, point
):
    reference = tmp_path / "reference.csv"
    args = _args(saved_run, tokenizer_dir, texts_file, "--chunk-rows", 5, "--output")
    assert _classify(*args, reference).exit_code == 0
    target = tmp_path / "out.csv"
    killed = _subprocess([*args, target], env={KILL_AT_ENV: point})
    assert killed.returncode == -9, killed.stderr
    assert not target.exists()  # never half-written under its name
    assert partial_path(target).exists() and progress_path(target).exists()

    again = _classify(*args, target)
    assert again.exit_code != 0 and "add --resume" in again.stderr

    resumed = _classify(*args, target, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "done before the interruption" in resumed.stderr
    assert target.read_bytes() == reference.read_bytes()
    assert not partial_path(target).exists() and not progress_path(target).exists()


def test_resume_refuses_another_input_file(saved_run, tokenizer_dir, texts_file, tmp_path):
    target = tmp_path / "out.csv"
    args = _args(saved_run, tokenizer_dir, texts_file, "--chunk-rows", 5, "--output", target)
    assert _subprocess(args, env={KILL_AT_ENV: "classify-chunk:1"}).returncode == -9
    texts_file.write_text("id,text\n1,another file\n", encoding="utf-8")
    resumed = _classify(*args, "--resume")
    assert resumed.exit_code != 0
    assert "was made from another input file" in resumed.stderr
    assert partial_path(target).exists()  # kept: --overwrite starts again
    fresh = _classify(*args, "--overwrite")
    assert fresh.exit_code == 0, fresh.output
    assert "another file" in target.read_text(encoding="utf-8")
    assert not progress_path(target).exists()


def test_resume_needs_an_interrupted_run(saved_run, tokenizer_dir, texts_file, tmp_path):
    target = tmp_path / "out.csv"
    done = _classify(*_args(saved_run, tokenizer_dir, texts_file, "--output", target, "--resume"))
    assert done.exit_code != 0 and "no interrupted classify" in done.stderr
    done = _classify(*_args(saved_run, tokenizer_dir, texts_file, "--resume"))
    assert done.exit_code != 0 and "--resume needs --file and --output" in done.stderr


def test_errors_beyond_the_first_read_are_the_whole_file_readers(tmp_path):
    """Past the 1 MiB the checking pass reads at a time: a bad byte's line and column, and a
    \\r\\n split between two reads counted as one line break."""
    path = tmp_path / "big.txt"
    line = b"x" * 99 + b"\r\n"
    lines = (1 << 20) // len(line)
    pad = b"y" * ((1 << 20) - 1 - lines * len(line))  # the next \r ends the first read
    body = line * lines + pad + b"\r\n" + b"tail \xff here\r\n"
    assert body[(1 << 20) - 1 : (1 << 20) + 1] == b"\r\n"
    path.write_bytes(body)
    messages = []
    for read in (
        lambda: read_unlabelled(path, "lines"),
        lambda: list(iter_text_rows(scan_text_file(path, "lines"))),
    ):
        with pytest.raises(GPTClassifierError) as caught:
            read()
        messages.append(str(caught.value))
    assert messages[0] == messages[1]
    assert "not valid UTF-8 (byte 0xff" in messages[0]


@pytest.fixture
def odd_labels_run(saved_config, tmp_path):
    """A tiny run whose labels hold a line break and a tab and start like a formula."""
    from gpt_classifier.classifier import GPTClassifier
    from gpt_classifier.inference import RunInfo, save_run
    from gpt_classifier.model import GPTModel

    torch.manual_seed(7)
    model = GPTClassifier(GPTModel(saved_config), 2, pooling="last-real", head_seed=7)
    classes = ("=ham\nline two", "@spam\tcolumn")
    info = RunInfo(saved_config, classes, "last-real", "batch", max_length=12, pad_length=None)
    return save_run(model, info, tmp_path / "run")


def test_tsv_output_keeps_each_text_one_line_of_three_fields(odd_labels_run, tokenizer_dir):
    texts = [f"text {i} {'spam ' * i}\nmore" for i in range(8)]
    result = _classify(
        "classify", str(odd_labels_run), "--tokenizer-dir", str(tokenizer_dir), *texts
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == len(texts) and all(len(line.split("\t")) == 3 for line in lines)
    assert {line.split("\t")[0] for line in lines} <= {"=ham line two", "@spam column"}


def test_csv_output_cells_are_written_raw_even_when_they_look_like_formulas(
    odd_labels_run, tokenizer_dir, tmp_path
):
    """The documented choice: no ' prefix, so every input cell (and label) round-trips."""
    source, target = tmp_path / "in.csv", tmp_path / "out.csv"
    cells = [("=A1", "=1+1"), ("+33", "+33 612 345"), ("-1", "-5 degrees"), ("@x", "@home now")]
    with source.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([("id", "text"), *cells])
    args = _args(odd_labels_run, tokenizer_dir, source, "--output", target)
    assert _classify(*args).exit_code == 0
    with target.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["id"], row["text"]) for row in rows] == cells
    assert {row["predicted_label"] for row in rows} <= {"=ham\nline two", "@spam\tcolumn"}
    split = tmp_path / "split.csv"  # the splits' writer makes the same choice
    write_split_file([Record(text, label) for label, text in cells], split)
    assert [(r.label, r.text) for r in read_records(split)] == cells


def test_a_second_writer_of_the_output_is_refused(
    saved_run, tokenizer_dir, texts_file, tmp_path, hold_lock
):
    target = tmp_path / "out.csv"
    args = _args(saved_run, tokenizer_dir, texts_file, "--output", target, "--overwrite")
    assert _classify(*args).exit_code == 0
    before = target.read_bytes()
    holder = hold_lock(target)
    refused = _classify(*args)
    assert refused.exit_code == 2
    assert refused.stderr == (
        f"error: {target} is being written by another process (pid {holder.pid}); wait for it "
        "or choose another --output\n"
    )
    assert target.read_bytes() == before
    assert not partial_path(target).exists() and not progress_path(target).exists()
    holder.kill()
    holder.wait()
    assert _classify(*args).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv"]


def test_a_parquet_file_is_read_in_memory_that_does_not_grow_with_it(tmp_path):
    """50,000 rows of one 1,000-character text, dictionary-encoded: 50 MB decoded, of which
    the scan and the reading hold one batch of rows at a time."""
    pa = pytest.importorskip("pyarrow")
    import tracemalloc

    import pyarrow.parquet as pq

    rows = 50_000
    text = pa.DictionaryArray.from_arrays(pa.array([0] * rows, pa.int32()), pa.array(["x" * 1000]))
    path = tmp_path / "many.parquet"
    pq.write_table(pa.table({"text": text}), path, use_dictionary=True, row_group_size=rows)
    tracemalloc.start()
    try:
        plan = scan_text_file(path)
        skipped = sum(1 for _ in iter_text_rows(plan, skip=rows - 10))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (plan.rows, skipped) == (rows, 10)
    assert peak < 20_000_000, peak  # a 4,096-row batch is 4 MB of text; all of it was 50 MB
