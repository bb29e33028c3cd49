"""``gpt-classifier experiments``: a grid of fine-tuning runs and the table comparing them."""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from ..data import DEFAULT_SEED
from ..errors import INTERRUPTED_EXIT, GPTClassifierError
from ..fileio import writer_lock, writing
from ..training.settings import (
    MAX_SEED,
    CacheOptions,
    DataOptions,
    ModelOptions,
    PrecisionOptions,
    ReadOptions,
    opt,
)
from .options import command

_SHARED = (CacheOptions, PrecisionOptions, ModelOptions, ReadOptions, DataOptions)


@dataclass(kw_only=True)
class ExperimentsOptions(*_SHARED):
    grid: str = opt(
        "book",
        "'book' (the book's 19 design-choice rows, on its chapter-6 recipe) or a TOML/JSON file: "
        "optional [base] options and [[rows]] with a name and any train options.",
    )
    rows_spec: str | None = opt(None, "Rows to run, e.g. 1-4,14-19 (default: all).", flag="--rows")
    seeds: int = opt(
        1,
        "Repeats of each row with seeds --seed, --seed + 1, ...; the table shows mean ± std.",
        min=1,
    )
    seed: int = opt(DEFAULT_SEED, "The first seed.", min=0, max=MAX_SEED)
    baseline: str = opt(
        "none",
        "tfidf: add TF-IDF + logistic regression trained and tested on the same splits.",
        choices=("none", "tfidf"),
    )
    epochs: int | None = opt(None, "For every row.", min=1)
    batch_size: int | None = opt(None, "Unless a row sets it.", min=1)
    plots: bool = opt(
        False, "Each row's own plots (the grid's chart is always drawn).", flag="--plots/--no-plots"
    )
    progress: bool = opt(True, "Progress bars on stderr.")
    resume: bool = opt(False, "Keep finished rows, resume killed ones, run the rest.")
    overwrite: bool = opt(False, "Replace an existing output folder.")
    output_dir: str = opt(None, "Folder of the row runs and the table.", path="dir", required=True)


# Flags forwarded to every row's `train` when given on the command line (rows override them).
FORWARDED = (*(f.name for cls in _SHARED for f in dataclasses.fields(cls)), "epochs", "batch_size")


@command(ExperimentsOptions)
def experiments(o: ExperimentsOptions) -> None:
    """Run a grid of fine-tunings and compare them in one table (experiments.md/.csv/.json/.png).

    Each row is a full train run in OUTPUT_DIR/row-NN; rows that share a base model and data
    share the frozen-prefix states through the disk cache.
    """
    from ..experiments.baseline import tfidf_baseline
    from ..experiments.grid import BOOK_ROWS, load_grid, parse_rows
    from ..experiments.runner import run_grid
    from ..experiments.table import summarize, write_outputs

    ctx = click.get_current_context()
    base, rows = ({"preset": "book"}, BOOK_ROWS) if o.grid == "book" else load_grid(o.grid)
    given = {
        name: getattr(o, name)
        for name in FORWARDED
        if ctx.get_parameter_source(name) != ParameterSource.DEFAULT
    }
    base = {**base, **given, "plots": o.plots}
    # each row carries the options it really runs with, so the table describes them
    rows = [
        dataclasses.replace(row, options={**base, **row.options})
        for row in parse_rows(o.rows_spec, rows)
    ]
    output_dir = Path(o.output_dir)
    started = time.perf_counter()
    flags = {"resume": o.resume, "overwrite": o.overwrite, "progress": o.progress}
    seeds = [o.seed + i for i in range(o.seeds)]
    with writer_lock(output_dir, "--output-dir"):  # one writer per grid folder
        try:
            outcomes = run_grid(base, rows, seeds, output_dir, **flags, log=_log)
        except KeyboardInterrupt:
            _log(f"interrupted: continue with the same command and --resume ({output_dir})")
            sys.exit(INTERRUPTED_EXIT)
        if o.baseline == "tfidf":
            finished = [outcome for outcome in outcomes if outcome.ok]
            if not finished:
                message = "--baseline tfidf needs the splits of at least one finished row"
                raise GPTClassifierError(message)
            outcomes.append(tfidf_baseline(finished[0].run_dir / "data", seed=o.seed))
        header = _header(base, o, time.perf_counter() - started)
        with writing(output_dir, "--output-dir"):
            written = write_outputs(summarize(outcomes), output_dir, header)
        click.echo((output_dir / "experiments.md").read_text(encoding="utf-8"), nl=False)
        _log("wrote " + ", ".join(str(path) for path in written))
    failed = [outcome for outcome in outcomes if not outcome.ok]
    if failed:
        raise GPTClassifierError(f"{len(failed)} of {len(outcomes)} runs failed (see the notes)")


def _log(message: str) -> None:
    click.echo(message, err=True)


def _header(base: dict[str, Any], o: ExperimentsOptions, seconds: float) -> str:
    import torch

    from .. import __version__
    from ..precision import describe_cpu

    shown = ", ".join(f"{k}={v}" for k, v in base.items() if v is not None) or "defaults"
    return (
        f"# Experiments: grid {o.grid}\n\n"
        f"Base options: {shown}. Seeds: {o.seeds} from {o.seed}. "
        f"Wall time {seconds / 60:.1f} min on {describe_cpu()}, {torch.get_num_threads()} "
        f"threads, torch {torch.__version__}, gpt-classifier {__version__}, "
        f"{time.strftime('%Y-%m-%d')}."
    )
