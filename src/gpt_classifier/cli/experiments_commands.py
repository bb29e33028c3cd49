"""``gpt-classifier experiments``: a grid of fine-tuning runs and the table comparing them."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from ..errors import INTERRUPTED_EXIT, GPTClassifierError
from ..precision import PRECISIONS
from .options import data_source_options, device_option, model_options

# Flags forwarded to every row's `train` when given on the command line (rows override them).
FORWARDED = (
    "data_file", "train_file", "validation_file", "test_file", "fmt", "text_column",
    "label_column", "lenient", "model", "weights", "init", "tokenizer_dir", "epochs",
    "batch_size", "device", "precision", "cache_dir",
)  # fmt: skip


@click.command()
@click.option(
    "--grid",
    default="book",
    show_default=True,
    help="'book' (the book's 19 design-choice rows, on its chapter-6 recipe) or a TOML/JSON "
    "file: optional [base] options and [[rows]] with a name and any train options.",
)
@click.option("--rows", "rows_spec", default=None, help="Rows to run, e.g. 1-4,14-19 (all).")
@click.option(
    "--seeds",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Repeats of each row with seeds 123, 124, ...; the table shows mean ± std.",
)
@click.option("--seed", type=click.IntRange(min=0), default=123, show_default=True)
@click.option(
    "--baseline",
    type=click.Choice(["none", "tfidf"]),
    default="none",
    show_default=True,
    help="tfidf: add TF-IDF + logistic regression trained and tested on the same splits.",
)
@data_source_options
@model_options
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="For every row.")
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=None, help="Unless a row sets it."
)
@device_option
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Frozen-prefix disk cache shared by the rows (default: the user's).",
)
@click.option(
    "--plots/--no-plots",
    default=False,
    show_default=True,
    help="Each row's own plots (the grid's chart is always drawn).",
)
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.option(
    "--resume", is_flag=True, help="Keep finished rows, resume killed ones, run the rest."
)
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
@click.option("--output-dir", type=click.Path(file_okay=False), required=True)
def experiments(**kwargs: Any) -> None:
    """Run a grid of fine-tunings and compare them in one table (experiments.md/.csv/.json/.png).

    Each row is a full `train` run in OUTPUT_DIR/row-NN; rows that share a base model and data
    share the frozen-prefix states through the disk cache.
    """
    from ..experiments import book_grid, load_grid, parse_rows, run_grid, summarize, write_outputs

    ctx = click.get_current_context()
    base, rows = book_grid() if kwargs["grid"] == "book" else load_grid(kwargs["grid"])
    rows = parse_rows(kwargs["rows_spec"], rows)
    given = {
        name: kwargs[name]
        for name in FORWARDED
        if name in kwargs and ctx.get_parameter_source(name) != ParameterSource.DEFAULT
    }
    base = {**base, **given, "plots": kwargs["plots"]}
    # each row carries the options it really runs with, so the table describes them
    rows = [dataclasses.replace(row, options={**base, **row.options}) for row in rows]
    seeds = [kwargs["seed"] + i for i in range(kwargs["seeds"])]
    output_dir = Path(kwargs["output_dir"])

    def log(message: str) -> None:
        click.echo(message, err=True)

    started = time.perf_counter()
    try:
        outcomes = run_grid(
            base,
            rows,
            seeds,
            output_dir,
            resume=kwargs["resume"],
            overwrite=kwargs["overwrite"],
            progress=kwargs["progress"],
            log=log,
        )
    except KeyboardInterrupt:
        log(f"interrupted: continue with the same command and --resume ({output_dir})")
        sys.exit(INTERRUPTED_EXIT)
    if kwargs["baseline"] == "tfidf":
        outcomes.append(_baseline(outcomes, kwargs["seed"]))
    header = _header(base, kwargs, time.perf_counter() - started)
    written = write_outputs(summarize(outcomes), output_dir, header)
    click.echo((output_dir / "experiments.md").read_text(encoding="utf-8"), nl=False)
    log("wrote " + ", ".join(str(path) for path in written))
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise GPTClassifierError(f"{len(failed)} of {len(outcomes)} runs failed (see the notes)")


def _baseline(outcomes: list, seed: int):
    from ..experiments.baseline import tfidf_baseline

    finished = [o for o in outcomes if o.ok]
    if not finished:
        raise GPTClassifierError("--baseline tfidf needs the splits of at least one finished row")
    return tfidf_baseline(finished[0].run_dir / "data", seed=seed)


def _header(base: dict[str, Any], kwargs: dict[str, Any], seconds: float) -> str:
    import torch

    from .. import __version__
    from ..precision import describe_cpu

    shown = ", ".join(f"{k}={v}" for k, v in base.items() if v is not None) or "defaults"
    return (
        f"# Experiments: grid {kwargs['grid']}\n\n"
        f"Base options: {shown}. Seeds: {kwargs['seeds']} from {kwargs['seed']}. "
        f"Wall time {seconds / 60:.1f} min on {describe_cpu()}, {torch.get_num_threads()} "
        f"threads, torch {torch.__version__}, gpt-classifier {__version__}, "
        f"{time.strftime('%Y-%m-%d')}."
    )


COMMANDS = [experiments]
