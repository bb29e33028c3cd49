"""Class imbalance: the default keeps every row and weights the loss by class; every step that
drops rows says what it dropped per class; ``--preset book`` undersamples as the book does."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from click.testing import CliRunner
from conftest import micro_options
from safetensors.torch import load_file

from gpt_classifier.cli.main import cli
from gpt_classifier.data import prepare_dataset
from gpt_classifier.data.prepare import class_weights
from gpt_classifier.runs import checkpoint as checkpoint_module
from gpt_classifier.training.pipeline import FinetuneOptions, run_finetune

COUNTS = {"a": 40, "b": 20, "c": 10}  # unique texts per class
REPEATS = {"a": 4, "b": 2}  # rows that repeat an earlier text


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory):
    path = tmp_path_factory.mktemp("imbalanced") / "data.csv"
    words = {"a": "lunch at noon", "b": "win a prize", "c": "meeting moved"}
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for label, n in COUNTS.items():
            writer.writerows((f"{words[label]} {i}", label) for i in range(n))
            writer.writerows((f"{words[label]} {i}", label) for i in range(REPEATS.get(label, 0)))
    return path


def _options(data, micro_files, tokenizer_dir, output_dir, **overrides) -> FinetuneOptions:
    overrides = {"trainable": "all", **overrides}
    return micro_options(data, micro_files["config"], tokenizer_dir, output_dir, **overrides)


def test_class_weights_are_n_over_k_times_the_class_count():
    assert class_weights({"a": 6, "b": 2, "c": 4}, ["a", "b", "c"]) == [12 / 18, 12 / 6, 12 / 12]


def test_each_removal_step_is_one_line_per_class_counts(imbalanced):
    kept = prepare_dataset(data_file=imbalanced, balance="weighted").summary
    assert kept.removals() == ["dropped 6 repeated texts (a 4, b 2); --keep-duplicates keeps them"]
    assert kept.balanced == COUNTS
    cut = prepare_dataset(data_file=imbalanced, balance="undersample").summary
    assert cut.removals()[1] == (
        "dropped 40 rows by undersampling (a 30, b 10); --balance weighted keeps them"
    )
    both = prepare_dataset(data_file=imbalanced, balance="none", keep_duplicates=True).summary
    assert both.removals() == []


def test_the_default_keeps_every_row_and_weights_the_loss(
    imbalanced, micro_files, tokenizer_dir, tmp_path
):
    lines: list[str] = []
    options = _options(imbalanced, micro_files, tokenizer_dir, tmp_path / "run")
    result = run_finetune(options, log=lines.append)
    assert "dropped 6 repeated texts (a 4, b 2); --keep-duplicates keeps them" in lines
    assert not any("undersampling" in line for line in lines)
    info = json.loads((result.run_dir / "run.json").read_text())
    splits = info["data"]["splits"]
    assert sum(sum(counts.values()) for counts in splits.values()) == sum(COUNTS.values())
    assert info["balance"] == "weighted"
    assert info["class_weights"] == class_weights(splits["train"], ["a", "b", "c"])
    assert sum(split["num_examples"] for split in result.report.values()) == sum(COUNTS.values())


def test_undersampling_is_said_on_the_train_output(
    imbalanced, micro_files, tokenizer_dir, tmp_path
):
    args = ["train", "--data-file", imbalanced, "--model", micro_files["config"], "--init"]
    args += ["random", "--tokenizer-dir", tokenizer_dir, "--epochs", "1", "--batch-size", "4"]
    args += ["--balance", "undersample", "--no-progress", "--output-dir", tmp_path / "run"]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert "dropped 40 rows by undersampling (a 30, b 10); --balance weighted" in result.output
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["class_weights"] is None and info["data"]["balanced"] == {"a": 10, "b": 10, "c": 10}


def test_the_book_preset_undersamples_and_the_default_weights(tmp_path):
    assert FinetuneOptions(preset="book", output_dir=str(tmp_path)).resolved().balance == (
        "undersample"
    )
    assert FinetuneOptions(output_dir=str(tmp_path)).resolved().balance == "weighted"


class _Killed(BaseException):
    """Stands in for SIGKILL in-process."""


def test_a_weighted_run_resumes_to_the_same_weights(
    imbalanced, micro_files, tokenizer_dir, tmp_path, monkeypatch
):
    whole = run_finetune(
        _options(imbalanced, micro_files, tokenizer_dir, tmp_path / "whole"), log=print
    )
    original = checkpoint_module.save_checkpoint

    def save_then_die(*args, **kwargs):
        original(*args, **kwargs)
        raise _Killed

    monkeypatch.setattr(checkpoint_module, "save_checkpoint", save_then_die)
    with pytest.raises(_Killed):
        run_finetune(_options(imbalanced, micro_files, tokenizer_dir, tmp_path / "cut"), log=print)
    monkeypatch.setattr(checkpoint_module, "save_checkpoint", original)
    resumed = CliRunner().invoke(cli, ["train", "--resume", str(tmp_path / "cut")])
    assert resumed.exit_code == 0, resumed.output
    assert "class weights in the training loss: a 0.583, b 1.17, c 2.33" in resumed.output
    a = load_file(str(whole.run_dir / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model.safetensors"))
    assert all(torch.equal(a[name], b[name]) for name in a)
    runs = (whole.run_dir, tmp_path / "cut")
    history = [json.loads((run / "history.json").read_text()) for run in runs]
    assert history[0] == history[1]
