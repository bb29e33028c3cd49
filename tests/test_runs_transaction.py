"""SIGKILL `gpt-classifier train` at the moments that matter, and at random moments: what is on
disk afterwards is the old run, a resumable checkpoint, or the new run — never a mix — and
`train --resume` then ends with the same weights as a run that was never killed."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from gpt_classifier.errors import GPTClassifierError
from gpt_classifier.faults import KILL_AT_ENV
from gpt_classifier.inference import load_run
from gpt_classifier.runs.transaction import MARKER_FILE, StagedRun, backup_dir

# Every named crash point, in the order a run reaches them: after checkpoints (the file written
# but not yet renamed, and renamed), with the run staged but unmarked, marked but not moved, the
# old run moved aside, and the new one in place before the clean-up.
CRASH_POINTS = [
    "checkpoint-written:2",
    "checkpoint:3",
    "staged",
    "marked",
    "backed-up",
    "renamed",
]
RANDOM_KILLS = 3


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tokenizer_dir, micro_files):
    folder = tmp_path_factory.mktemp("faults")
    config, data = micro_files["config"], micro_files["data"]
    args = [
        "--data-file", data, "--model", config, "--init", "random",
        "--tokenizer-dir", tokenizer_dir, "--epochs", "2", "--batch-size", "4",
        "--checkpoint-every", "3", "--no-progress",
    ]  # fmt: skip
    reference = folder / "reference"
    assert _train(args, "--output-dir", reference).returncode == 0
    old = folder / "old"  # another model (other seed) that each killed run tries to replace
    assert _train(args, "--seed", "7", "--output-dir", old).returncode == 0
    return {"args": args, "reference": _weights(reference), "old": old}


def _train(args, *extra, env=None, kill_after=None):
    command = [sys.executable, "-m", "gpt_classifier.cli.main", "train", *map(str, args)]
    command += [str(e) for e in extra]
    process = subprocess.Popen(
        command,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if kill_after is not None:
        time.sleep(kill_after)
        process.send_signal(signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _weights(run_dir) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "model.safetensors"))


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _check_state(target, old_weights, new_weights) -> str:
    """Classify what is on disk; fail on anything that is not one of the three allowed states."""
    staged = StagedRun(target)
    if target.exists():
        load_run(target)  # complete and consistent, or this raises
        weights = _weights(target)
        if _same(weights, old_weights):
            return "old"
        assert _same(weights, new_weights), "a run that is neither the old nor the new one"
        return "new"
    # only for the instant between the two renames of a commit: both runs complete beside it
    assert (staged.folder / MARKER_FILE).is_file() and backup_dir(target).is_dir()
    with pytest.raises(GPTClassifierError, match="train --resume"):
        load_run(target)
    return "between-renames"


def _copy_old(setup, tmp_path):
    import shutil

    target = tmp_path / "run"
    shutil.copytree(setup["old"], target)
    return target


@pytest.mark.slow
@pytest.mark.parametrize("point", CRASH_POINTS)
def test_kill_at_each_crash_point_then_resume(setup, tmp_path, point):
    target = _copy_old(setup, tmp_path)
    old_weights = _weights(target)
    killed = _train(setup["args"], "--overwrite", "--output-dir", target, env={KILL_AT_ENV: point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    state = _check_state(target, old_weights, setup["reference"])
    expected = {"renamed": "new", "backed-up": "between-renames"}.get(point, "old")
    assert state == expected
    resumed = _train([], "--resume", target)  # after "renamed" it only cleans up
    assert resumed.returncode == 0, resumed.stderr
    assert _check_state(target, old_weights, setup["reference"]) == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging or backup left


@pytest.mark.slow
def test_kill_at_random_moments(setup, tmp_path):
    chooser = random.Random(20261125)
    for attempt in range(RANDOM_KILLS):
        folder = tmp_path / str(attempt)
        folder.mkdir()
        target = _copy_old(setup, folder)
        old_weights = _weights(target)
        delay = chooser.uniform(1.0, 6.0)
        killed = _train(setup["args"], "--overwrite", "--output-dir", target, kill_after=delay)
        if killed.returncode == 0:  # finished before the kill: it must be the new run
            assert _check_state(target, old_weights, setup["reference"]) == "new"
            continue
        assert killed.returncode == -signal.SIGKILL
        _check_state(target, old_weights, setup["reference"])
        if (StagedRun(target).checkpoint_dir / "options.json").is_file():
            resumed = _train([], "--resume", target)
            assert resumed.returncode == 0, resumed.stderr
            assert _check_state(target, old_weights, setup["reference"]) == "new"
