"""Run a grid: one ``train`` per row and seed, each in its own run directory, whose results are
read back (so ``--resume`` reports finished rows without running them)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..classifier import TrainableKind, parse_trainable
from ..errors import GPTClassifierError
from ..fileio import check_output_dir
from ..runs.checkpoint import OPTIONS_FILE
from ..runs.run_dir import wilson_interval as share_interval
from ..runs.transaction import MARKER_FILE, StagedRun
from ..training.memory import reset_peak_rss
from ..training.pipeline import run_finetune
from ..training.recipe import FinetuneOptions
from .grid import Row, row_values


@dataclass
class RunOutcome:  # one row and seed: its figures, or why it has none
    row: Row
    seed: int
    run_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None
    peak_rss_mb: float | None = None
    device: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def run_grid(
    base: dict[str, Any],
    rows: list[Row],
    seeds: list[int],
    output_dir: Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None],
) -> list[RunOutcome]:
    if not resume:
        check_output_dir(output_dir, overwrite=overwrite)
    output_dir.mkdir(parents=True, exist_ok=True)
    order = execution_order(base, rows)
    if order != rows:
        log(
            f"running rows in the order {', '.join(str(row.number) for row in order)}: shallower "
            "frozen prefixes first, so deeper ones only run the blocks they add"
        )
    outcomes: dict[tuple[int, int], RunOutcome] = {}
    for row in order:
        for seed in seeds:
            suffix = f"-seed-{seed}" if len(seeds) > 1 else ""
            run_dir = output_dir / f"row-{row.number:02d}{suffix}"
            outcome = outcomes[row.number, seed] = RunOutcome(row, seed, run_dir)
            title = f"row {row.number} ({row.name}), seed {seed}"
            if resume and (run_dir / MARKER_FILE).is_file() and not _interrupted(run_dir):
                log(f"{title}: finished earlier, read from {run_dir}")
                _read_outcome(outcome)
                continue
            # a row keeps only the trained tensors, unless the grid says --save full
            values = {"save": "trainable", **base, **row.options, "seed": seed}
            values.update(output_dir=str(run_dir), progress=progress, overwrite=True)
            if resume and (StagedRun(run_dir).checkpoint_dir / OPTIONS_FILE).is_file():
                values.update(resume=True, overwrite=False)
            log(f"{title}: training into {run_dir}")
            reset_peak_rss()  # each row's peak, not the grid's so far
            try:
                options = FinetuneOptions.from_dict(values)
                result = run_finetune(options, log=lambda m: log(f"  {m}"))
            except GPTClassifierError as exc:
                log(f"{title}: failed: {exc}")
                outcome.error = str(exc)
                continue
            if result.interrupted:  # Ctrl-C: the row was saved as it stood; stop the grid here
                raise KeyboardInterrupt
            _read_outcome(outcome)
    return [outcomes[row.number, seed] for row in rows for seed in seeds]


def execution_order(base: dict[str, Any], rows: list[Row]) -> list[Row]:
    """Shallowest frozen prefix first, ties in grid order: a run starts from the cached states of
    a shallower prefix (the book's rows 4, 1, 3 freeze 10, 11, 12 blocks: each adds one)."""

    def depth(row: Row) -> float:
        try:
            spec = parse_trainable(str(row_values({**base, **row.options})["trainable"]))
        except GPTClassifierError:
            return math.inf  # the row reports its own error when it runs
        if spec.kind == TrainableKind.LAST_BLOCKS:
            return -float(spec.num_blocks or 1)
        return 0.0 if spec.kind == TrainableKind.HEAD else math.inf

    return sorted(rows, key=depth)


def _read_json(run_dir: Path, name: str) -> Any:
    return json.loads((run_dir / name).read_text(encoding="utf-8"))


def _interrupted(run_dir: Path) -> bool:
    try:
        return bool(_read_json(run_dir, "run.json")["interrupted"])
    except (OSError, ValueError, KeyError, TypeError):
        return True  # unreadable: run it again


def _read_outcome(outcome: RunOutcome) -> None:
    try:
        outcome.metrics = _read_json(outcome.run_dir, "metrics.json")
        timings = _read_json(outcome.run_dir, "timings.json")
    except (OSError, ValueError) as exc:
        outcome.error = f"unreadable results in {outcome.run_dir} ({exc})"
        return
    outcome.seconds = timings.get("seconds", {}).get("total")
    outcome.peak_rss_mb = timings.get("peak_rss_mb")
    outcome.device = str(timings.get("device", ""))


def wilson_interval(correct: int, total: int) -> tuple[float, float]:
    """95 % Wilson score interval of ``correct`` out of ``total`` (NaN for no trials)."""
    return share_interval(correct / total, total) if total > 0 else (math.nan, math.nan)
