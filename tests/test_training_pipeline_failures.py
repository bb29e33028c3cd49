"""Issue 12's training cases: overwrite, the output folder checked first, divergence, zero steps,
Ctrl-C, checkpoints and exact resume, runs as transactions."""

from __future__ import annotations

import json
import signal

import pytest
import torch
from click.testing import CliRunner
from conftest import micro_options
from safetensors.torch import load_file

from gpt_classifier.cli.main import cli
from gpt_classifier.errors import GPTClassifierError
from gpt_classifier.inference import load_run
from gpt_classifier.runs import checkpoint as checkpoint_module
from gpt_classifier.runs.transaction import (
    MARKER_FILE,
    StagedRun,
    backup_dir,
    commit_staged,
    write_marker,
)
from gpt_classifier.training import pipeline
from gpt_classifier.training.pipeline import FinetuneOptions, run_finetune


@pytest.fixture
def files(micro_files):
    return micro_files


def _options(files, tokenizer_dir, output_dir, **overrides) -> FinetuneOptions:
    return micro_options(files["data"], files["config"], tokenizer_dir, output_dir, **overrides)


def _quiet(message: str) -> None:
    pass


def _cli_train(files, tokenizer_dir, output_dir, *extra):
    args = [
        "train",
        "--data-file",
        files["data"],
        "--model",
        files["config"],
        "--init",
        "random",
        "--tokenizer-dir",
        tokenizer_dir,
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--no-progress",
        "--output-dir",
        output_dir,
        *extra,
    ]
    return CliRunner().invoke(cli, [str(a) for a in args])


def _weights(run_dir) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "model.safetensors"))


# --- 2, 3: never overwrite silently; check the output folder before any work -------------------


def test_train_refuses_an_existing_run_before_any_work(files, tokenizer_dir, tmp_path):
    out = tmp_path / "run"
    first = _cli_train(files, tokenizer_dir, out)
    assert first.exit_code == 0, first.output
    before = (out / "model.safetensors").read_bytes()
    again = _cli_train(files, tokenizer_dir, out)
    assert again.exit_code == 2
    assert "is a gpt-classifier run; pass --overwrite" in again.output
    assert "training:" not in again.output  # refused before the data or the model
    assert (out / "model.safetensors").read_bytes() == before


def test_overwrite_replaces_the_whole_run_without_stale_files(files, tokenizer_dir, tmp_path):
    out = tmp_path / "run"
    assert _cli_train(files, tokenizer_dir, out).exit_code == 0
    assert (out / "loss.png").is_file()
    result = _cli_train(files, tokenizer_dir, out, "--overwrite", "--no-plots")
    assert result.exit_code == 0, result.output
    assert not (out / "loss.png").exists()  # the old run's plots went with it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging or backup left
    load_run(out)


def test_a_non_empty_folder_is_not_a_run_and_is_refused(files, tokenizer_dir, tmp_path):
    (tmp_path / "mine.txt").write_text("precious")
    result = _cli_train(files, tokenizer_dir, tmp_path)
    assert result.exit_code == 2 and "is not empty; pass --overwrite" in result.output
    assert (tmp_path / "mine.txt").read_text() == "precious"


@pytest.mark.parametrize("where", ["file", "under-file", "unwritable"])
def test_a_bad_output_place_fails_before_training(files, tokenizer_dir, tmp_path, where):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = {
        "file": blocker,
        "under-file": blocker / "run",
        "unwritable": "/proc/gpt-classifier-test/run",
    }[where]
    result = _cli_train(files, tokenizer_dir, out)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and "training:" not in result.output
    assert result.output.count("\n") == 1


# --- 4: a diverged run stops at once with one line ----------------------------------------------


def test_diverged_training_stops_with_one_line_and_keeps_the_checkpoint(
    files, tokenizer_dir, tmp_path
):
    out = tmp_path / "run"
    result = _cli_train(files, tokenizer_dir, out, "--lr", "1e30", "--checkpoint-every", "1")
    assert result.exit_code == 2, result.output
    error = result.output.strip().splitlines()[-1]
    assert error.startswith("error: training diverged: the loss became nan at step 2 (epoch 1)")
    assert "the learning rate (1e+30) is probably too high" in error
    assert not out.exists()  # nothing saved as a run
    assert "checkpoint is kept" in error  # the one after step 1, whose weights were finite
    assert checkpoint_module.has_checkpoint(StagedRun(out).checkpoint_dir)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--lr", "inf"], "lr must be a positive finite number"),
        (["--lr", "nan"], "lr must be a positive finite number"),
        (["--weight-decay", "nan"], "weight_decay must be a finite number"),
        (["--lora-alpha", "nan", "--trainable", "lora"], "lora_alpha must be a positive finite"),
        (["--seed", str(2**64)], "--seed"),
    ],
)
def test_non_finite_settings_are_refused_up_front(files, tokenizer_dir, tmp_path, flags, message):
    result = _cli_train(files, tokenizer_dir, tmp_path / "run", *flags)
    assert result.exit_code == 2, result.output
    assert message in result.output and "training:" not in result.output
    assert not (tmp_path / "run").exists()


# --- 8: zero training steps are an error -----------------------------------------------------


def test_a_batch_larger_than_the_training_split_is_an_error(files, tokenizer_dir, tmp_path):
    result = _cli_train(files, tokenizer_dir, tmp_path / "run", "--batch-size", "64")
    assert result.exit_code == 2
    assert "no training step possible: the training split has 32 example(s)" in result.output
    assert not (tmp_path / "run").exists()
    assert list(tmp_path.iterdir()) == []  # no staging folder left either


# --- 9: Ctrl-C saves an interrupted run and exits 130 ----------------------------------------


def test_ctrl_c_during_training_saves_an_interrupted_run(
    files, tokenizer_dir, tmp_path, monkeypatch
):
    calls = {"n": 0}
    original = pipeline.train_classifier.__globals__["calc_loss_batch"]

    def interrupting(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            signal.raise_signal(signal.SIGINT)
        return original(*args, **kwargs)

    monkeypatch.setitem(pipeline.train_classifier.__globals__, "calc_loss_batch", interrupting)
    out = tmp_path / "run"
    result = _cli_train(files, tokenizer_dir, out, "--epochs", "3")
    assert result.exit_code == 130, result.output
    assert "interrupted" in result.output
    assert json.loads((out / "run.json").read_text())["interrupted"] is True
    load_run(out)


def test_ctrl_c_after_the_last_step_still_saves(files, tokenizer_dir, tmp_path, monkeypatch):
    original = pipeline.evaluate_splits

    def interrupted_evaluation(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)  # before this change: "Aborted!", exit 1, no run
        return original(*args, **kwargs)

    monkeypatch.setattr(pipeline, "evaluate_splits", interrupted_evaluation)
    out = tmp_path / "run"
    result = _cli_train(files, tokenizer_dir, out)
    assert result.exit_code == 130, result.output
    assert (out / MARKER_FILE).is_file() and (out / "metrics.json").is_file()
    load_run(out)


# --- checkpoints: a killed run resumes to the same final weights ------------------------------


class _Killed(BaseException):
    """Stands in for SIGKILL in-process (test_runs_transaction.py kills real processes)."""


@pytest.mark.parametrize(
    "kill_after, checkpoint_every, extra",
    [
        (1, None, {}),  # after epoch 1's checkpoint: resume at an epoch boundary
        (2, 5, {}),  # mid-epoch, after evaluations consumed the loader's generator
        (3, 3, {"grad_accum_steps": 2, "select_best": True}),
    ],
)
def test_resume_after_a_kill_gives_the_same_final_weights(
    files, tokenizer_dir, tmp_path, monkeypatch, kill_after, checkpoint_every, extra
):
    whole = run_finetune(
        _options(files, tokenizer_dir, tmp_path / "whole", epochs=3, **extra), log=_quiet
    )
    saves = {"n": 0}
    original = checkpoint_module.save_checkpoint

    def save_then_die(*args, **kwargs):
        original(*args, **kwargs)
        saves["n"] += 1
        if saves["n"] == kill_after:
            raise _Killed

    monkeypatch.setattr(checkpoint_module, "save_checkpoint", save_then_die)
    options = _options(
        files, tokenizer_dir, tmp_path / "cut", epochs=3, checkpoint_every=checkpoint_every, **extra
    )
    with pytest.raises(_Killed):
        run_finetune(options, log=_quiet)
    assert not (tmp_path / "cut").exists()
    monkeypatch.setattr(checkpoint_module, "save_checkpoint", original)

    messages: list[str] = []
    resumed = CliRunner().invoke(cli, ["train", "--resume", str(tmp_path / "cut"), "--no-plots"])
    assert resumed.exit_code == 0, resumed.output
    assert "resuming from the checkpoint after step" in resumed.output
    assert not messages
    a, b = _weights(whole.run_dir), _weights(tmp_path / "cut")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    history_a = json.loads((whole.run_dir / "history.json").read_text())
    history_b = json.loads((tmp_path / "cut" / "history.json").read_text())
    assert history_a == history_b
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut", "whole"]


def test_resume_refuses_other_options_and_a_missing_checkpoint(files, tokenizer_dir, tmp_path):
    result = CliRunner().invoke(cli, ["train", "--resume", str(tmp_path / "none")])
    assert result.exit_code == 2 and "no interrupted run to resume" in result.output
    result = CliRunner().invoke(cli, ["train", "--resume", str(tmp_path), "--lr", "1e-3"])
    assert result.exit_code == 2 and "drop --lr" in result.output


def test_an_interrupted_run_must_be_resumed_or_overwritten(files, tokenizer_dir, tmp_path):
    out = tmp_path / "run"
    staged = StagedRun(out).start()
    staged.checkpoint_dir.mkdir()
    checkpoint_module.save_options(staged.checkpoint_dir, {})
    with pytest.raises(GPTClassifierError, match="can be resumed: gpt-classifier train --resume"):
        run_finetune(_options(files, tokenizer_dir, out), log=_quiet)
    run_finetune(_options(files, tokenizer_dir, out, overwrite=True, epochs=1), log=_quiet)
    load_run(out)


# --- 1: runs are transactions -----------------------------------------------------------------


def test_a_folder_without_the_marker_is_never_loaded(saved_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(saved_run, copy)
    (copy / MARKER_FILE).unlink()
    with pytest.raises(GPTClassifierError, match="not a complete gpt-classifier run"):
        load_run(copy)


def test_weights_from_another_run_are_detected(saved_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(saved_run, copy)
    weights = load_file(str(copy / "model.safetensors"))
    weights["gpt.out_head.weight"] = weights["gpt.out_head.weight"].flip(0)  # classes swapped
    from safetensors.torch import save_file

    save_file(weights, str(copy / "model.safetensors"))
    with pytest.raises(GPTClassifierError, match="does not match its digest"):
        load_run(copy)


def test_a_commit_cut_between_its_renames_is_finished_later(saved_run, tmp_path):
    import shutil

    target = tmp_path / "run"
    shutil.copytree(saved_run, target)
    staged = StagedRun(target).start()
    shutil.copytree(saved_run, staged.folder, dirs_exist_ok=True)
    (staged.folder / "note.txt").write_text("new")
    write_marker(staged.folder)
    target.rename(backup_dir(target))  # the crash: old run moved aside, new one not yet in
    with pytest.raises(GPTClassifierError, match="train --resume"):
        load_run(target)
    commit_staged(staged.folder, target, cleanup=staged.root)
    assert (target / "note.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    load_run(target)


def test_non_finite_outputs_are_an_error_not_nan_probabilities(saved_run, tmp_path, tokenizer_dir):
    """Finite but huge weights (a byte flip can make them) overflow to NaN logits."""
    import shutil

    from safetensors.torch import save_file

    from gpt_classifier.inference import TextClassifier

    copy = tmp_path / "copy"
    shutil.copytree(saved_run, copy)
    weights = load_file(str(copy / "model.safetensors"))
    weights["gpt.trf_blocks.0.ff.layers.0.weight"].fill_(1e38)
    save_file(weights, str(copy / "model.safetensors"))
    write_marker(copy)
    classifier = TextClassifier.from_run(copy, tokenizer_dir=tokenizer_dir)
    with pytest.raises(GPTClassifierError, match="outputs are not finite"):
        classifier.classify(["hello there"])


def test_padding_with_a_non_ascii_digit_is_a_one_line_error():
    from gpt_classifier.data import parse_padding

    with pytest.raises(GPTClassifierError):
        parse_padding("fixed:²")


def test_ctrl_c_before_training_leaves_nothing_and_exits_130(
    files, tokenizer_dir, tmp_path, monkeypatch
):
    original = pipeline.prepare_data

    def interrupted_data(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)
        return original(*args, **kwargs)

    monkeypatch.setattr(pipeline, "prepare_data", interrupted_data)
    result = _cli_train(files, tokenizer_dir, tmp_path / "run")
    assert result.exit_code == 130, result.output
    assert result.output.strip().endswith("interrupted")
    assert list(tmp_path.iterdir()) == []  # no run, no staging folder


# --- one writer at a time -----------------------------------------------------------------------


def test_a_second_writer_is_refused_and_touches_nothing(
    files, tokenizer_dir, saved_run, tmp_path, hold_lock
):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(saved_run, out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    holder = hold_lock(out)
    result = _cli_train(files, tokenizer_dir, out, "--overwrite")
    assert result.exit_code == 2
    assert result.output == (
        f"error: {out} is being written by another process (pid {holder.pid}); wait for it or "
        "choose another --output-dir\n"
    )
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run.lock", "run"]
    holder.kill()  # a killed holder leaves its lock file, but not its lock
    holder.wait()
    result = _cli_train(files, tokenizer_dir, out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    load_run(out)


def test_resume_takes_the_lock_too(files, tokenizer_dir, tmp_path, hold_lock):
    from gpt_classifier.fileio import writer_lock

    out = tmp_path / "run"
    staged = StagedRun(out).start()
    staged.checkpoint_dir.mkdir()
    checkpoint_module.save_options(
        staged.checkpoint_dir, _options(files, tokenizer_dir, out).to_dict()
    )
    holder = hold_lock(out)
    result = CliRunner().invoke(cli, ["train", "--resume", str(out)])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {out} is being written by another process (pid ")
    assert (staged.checkpoint_dir / checkpoint_module.OPTIONS_FILE).is_file()
    holder.kill()
    holder.wait()
    writer_lock(out, "--output-dir").close()  # free again
    assert not (tmp_path / ".run.lock").exists()


def test_saved_options_hold_absolute_paths(files, tokenizer_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(files["config"].parent)
    options = _options(
        files,
        tokenizer_dir,
        "out",
        model=files["config"].name,
        weights="w.safetensors",
        data_file=files["data"].name,
        cache_dir="cache",
    )
    options = FinetuneOptions(**{**options.__dict__, "tokenizer_dir": "tok"})
    saved = options.to_dict()
    for key in ("model", "weights", "data_file", "cache_dir", "tokenizer_dir", "output_dir"):
        assert saved[key].startswith("/") and saved[key].endswith(getattr(options, key)), key
    assert FinetuneOptions(**{**saved, "model": "gpt2"}).to_dict()["model"] == "gpt2"


def test_resume_refuses_options_without_the_fields_a_run_writes(tmp_path):
    staged = StagedRun(tmp_path / "run").start()
    staged.checkpoint_dir.mkdir()
    checkpoint_module.save_options(staged.checkpoint_dir, {})
    result = CliRunner().invoke(cli, ["train", "--resume", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert "options.json lacks options every run writes" in result.output
    assert "data_file" in result.output and "Traceback" not in result.output


def test_the_log_counts_true_optimizer_steps_and_effective_batch(files, tokenizer_dir, tmp_path):
    messages: list[str] = []
    options = _options(files, tokenizer_dir, tmp_path / "run", epochs=1, grad_accum_steps=1000)
    run_finetune(options, log=messages.append)
    line = next(m for m in messages if m.startswith("training:"))
    batches = int(line.split(" epochs of ")[1].split()[0])
    assert f"of {batches} steps = 1 optimizer step(s)" in line, line
    assert f"x {batches} accumulated = effective batch {4 * batches})" in line, line
    assert load_run(tmp_path / "run").info.extra["effective_batch_size"] == 4 * batches


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fractions", "empty", "reported"),
    [("0.98,0.01,0.01", "validation", ["train", "test"]), ("0.75,0.25,0", "test", None)],
)
def test_fractions_that_empty_a_split_train_without_it(
    files, tokenizer_dir, tmp_path, fractions, empty, reported
):
    """48 rows: 0.01 of a class of 24 is no row. The frozen prefix is cached (empty split too)."""
    result = _cli_train(files, tokenizer_dir, tmp_path / "run", "--fractions", fractions)
    assert result.exit_code == 0, result.output
    assert f"note: the {empty} split is empty" in result.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert empty not in metrics and list(metrics) == (reported or ["train", "validation"])
    evaluated = CliRunner().invoke(
        cli, ["evaluate", str(tmp_path / "run"), "--tokenizer-dir", str(tokenizer_dir)]
    )
    assert evaluated.exit_code == 0 and f"{empty} " not in evaluated.output.split("==")[0]
