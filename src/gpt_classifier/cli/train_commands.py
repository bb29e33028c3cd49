"""``train``, ``evaluate``, ``cache list|clear`` and ``experiments`` (a grid of train runs)."""

import functools
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import click
import torch
from click.core import ParameterSource

from .. import __version__
from ..data import DEFAULT_SEED
from ..errors import INTERRUPTED_EXIT, GPTClassifierError
from ..evaluation import format_report, write_report_json
from ..fileio import writer_lock, writing
from ..precision import describe_cpu
from ..runs.checkpoint import OPTIONS_FILE, read_options
from ..runs.transaction import StagedRun
from ..training import settings
from ..training.cache_store import CacheStore, describe
from ..training.recipe import FinetuneOptions
from ..training.settings import DataOptions, ModelOptions, PrecisionOptions, ReadOptions, opt
from .options import BaseWeightsOptions, command, options_from

RESUME_MAY_CHANGE = ("progress", "plots", "dist_timeout")  # how it is shown, not what it computes
RESUME_HELP = "Continue the killed or diverged run RUN_DIR from its last checkpoint, with its "
RESUME_HELP += "options."


@click.command()
@options_from(FinetuneOptions)
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False), help=RESUME_HELP)
def train(resume_dir: str | None, **kwargs: Any) -> None:
    """Fine-tune GPT-2 as a classifier, evaluate it and save the run.

    Under torchrun (torchrun --nproc-per-node N $(which gpt-classifier) train ...) it runs on
    several processes, GPUs or machines: --batch-size is per process, only rank 0 writes.

    Exit status: 0 done, 2 bad input or diverged training, 130 interrupted (Ctrl-C; what was
    learnt so far is evaluated and saved, marked "interrupted" in run.json).
    """
    from ..training.pipeline import run_finetune

    if not resume_dir and kwargs["output_dir"] is None:
        raise GPTClassifierError("missing --output-dir (the run directory to create)")
    result = run_finetune(_resumed(resume_dir, kwargs) if resume_dir else FinetuneOptions(**kwargs))
    if not result.main_process:  # under torchrun rank 0 reports
        return
    classes = result.report[next(iter(result.report))]["per_class"].keys()
    click.echo(format_report(result.report, list(classes)), nl=False)
    total, training = result.timings["total"], result.timings["train"]
    saved = f"run saved to {result.run_dir} in {total:.1f} s (training {training:.1f} s, "
    click.echo(f"{saved}peak memory {result.peak_rss_mb:.0f} MiB)", err=True)
    if result.interrupted:
        click.echo("interrupted: the run was saved as it stood (exit status 130)", err=True)
        sys.exit(INTERRUPTED_EXIT)


def _resumed(resume_dir: str, kwargs: dict[str, Any]) -> FinetuneOptions:
    source = click.get_current_context().get_parameter_source
    given = [name for name in kwargs if source(name) == ParameterSource.COMMANDLINE]
    if given := [name for name in given if name not in RESUME_MAY_CHANGE]:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        drop = f"--resume continues with the interrupted run's own options; drop {flags}"
        raise GPTClassifierError(drop)
    saved = read_options(folder := StagedRun(resume_dir).checkpoint_dir)
    written = {f.name for f in fields(FinetuneOptions)} - {*RESUME_MAY_CHANGE, "resume"}
    if missing := sorted(written - set(saved)):
        lacks = f"{folder / OPTIONS_FILE} lacks options every run writes ({', '.join(missing)})"
        raise GPTClassifierError(lacks)
    keep = {name: kwargs[name] for name in RESUME_MAY_CHANGE}
    return FinetuneOptions.from_dict({**saved, **keep, "output_dir": resume_dir, "resume": True})


@dataclass(kw_only=True)
class EvaluateOptions(
    settings.InferencePrecisionOptions, BaseWeightsOptions, settings.TokenizerOptions, ReadOptions
):
    run_dir: str = opt(argument=True, path="dir")
    data_file: str | None = opt(
        "Labelled file to evaluate on (default: the run's own splits); --data is its old name.",
        flag=("--data-file", "--data"),
        path="file",
    )
    output: str | None = opt("Write the metrics JSON here too.")
    progress: bool = opt("Progress on stderr: a bar on a terminal, else a line every 30 s.", True)


@command(EvaluateOptions)
def evaluate(options: EvaluateOptions) -> None:
    """Evaluate a saved run on its splits or on another labelled file."""
    from ..inference.predict import evaluate_run

    values = asdict(options)
    run_dir, output = values.pop("run_dir"), values.pop("output")
    report, classes = evaluate_run(run_dir, **values)
    click.echo(format_report(report, classes), nl=False)
    if output:
        with writing(output, "--output"):
            write_report_json(report, output)


@click.group()
def cache() -> None:
    """Show or free the frozen-prefix cache that train keeps on disk."""


@command(settings.CacheOptions, "list", group=cache)
def list_entries(o: settings.CacheOptions) -> None:
    """One line per entry, least recently used first, then the total."""
    store = CacheStore(o.cache_dir)
    for entry in (entries := store.entries()):
        click.echo(describe(entry))
    total = sum(entry.size for entry in entries) / 2**20
    click.echo(f"{len(entries)} entries, {total:.1f} MiB in {store.folder}")


@command(settings.CacheOptions, "clear", group=cache)
def clear(o: settings.CacheOptions) -> None:
    """Delete every entry."""
    store = CacheStore(o.cache_dir)
    click.echo(f"removed {store.clear()} entries from {store.folder}")


_SHARED = (settings.CacheOptions, PrecisionOptions, ModelOptions, ReadOptions, DataOptions)


@dataclass(kw_only=True)
class ExperimentsOptions(*_SHARED):
    grid: str = opt(
        "'book' (the book's 19 design-choice rows, on its chapter-6 recipe) or a TOML/JSON file: "
        "optional [base] options and [[rows]] with a name and any train options.",
        "book",
    )
    rows_spec: str | None = opt("Rows to run, e.g. 1-4,14-19 (default: all).", flag="--rows")
    seeds: int = opt(
        "Repeats of each row with seeds --seed, --seed + 1, ...; the table shows mean ± std.",
        1,
        min=1,
    )
    seed: int = opt("The first seed.", DEFAULT_SEED, min=0, max=settings.MAX_SEED)
    baseline: str = opt(
        "tfidf: add TF-IDF + logistic regression trained and tested on the same splits.",
        "none",
        choices=("none", "tfidf"),
    )
    epochs: int | None = opt("For every row.", min=1)
    batch_size: int | None = opt("Unless a row sets it.", min=1)
    plots: bool = opt(
        "Each row's own plots (the grid's chart is always drawn).", False, flag="--plots/--no-plots"
    )
    progress: bool = opt("Progress bars on stderr.", True)
    resume: bool = opt("Keep finished rows, resume killed ones, run the rest.", False)
    overwrite: bool = opt("Replace an existing output folder.", False)
    output_dir: str = opt("Folder of the row runs and the table.", path="dir", required=True)


# Flags forwarded to every row's `train` when given on the command line (rows override them).
FORWARDED = (*(f.name for cls in _SHARED for f in fields(cls)), "epochs", "batch_size")


@command(ExperimentsOptions)
def experiments(o: ExperimentsOptions) -> None:
    """Run a grid of fine-tunings and compare them in one table (experiments.md/.csv/.json/.png).

    Each row is a full train run in OUTPUT_DIR/row-NN; rows that share a base model and data
    share the frozen-prefix states through the disk cache.
    """
    from ..experiments.grid import BOOK_ROWS, load_grid, parse_rows, run_grid, tfidf_baseline
    from ..experiments.table import summarize, write_outputs

    source = click.get_current_context().get_parameter_source
    base, rows = ({"preset": "book"}, BOOK_ROWS) if o.grid == "book" else load_grid(o.grid)
    given = [name for name in FORWARDED if source(name) != ParameterSource.DEFAULT]
    base = {**base, **{name: getattr(o, name) for name in given}, "plots": o.plots}
    # each row carries the options it really runs with, so the table describes them
    rows = [replace(row, options={**base, **row.options}) for row in parse_rows(o.rows_spec, rows)]
    output_dir, started = Path(o.output_dir), time.perf_counter()
    flags = {"resume": o.resume, "overwrite": o.overwrite, "progress": o.progress}
    log = functools.partial(click.echo, err=True)
    with writer_lock(output_dir, "--output-dir"):  # one writer per grid folder
        try:
            seeds = [o.seed + i for i in range(o.seeds)]
            outcomes = run_grid(base, rows, seeds, output_dir, **flags, log=log)
        except KeyboardInterrupt:
            log(f"interrupted: continue with the same command and --resume ({output_dir})")
            sys.exit(INTERRUPTED_EXIT)
        finished = [outcome.run_dir for outcome in outcomes if not outcome.error]
        if o.baseline == "tfidf" and not finished:
            needs = "--baseline tfidf needs the splits of at least one finished row"
            raise GPTClassifierError(needs)
        if o.baseline == "tfidf":
            outcomes.append(tfidf_baseline(finished[0] / "data", seed=o.seed))
        shown = ", ".join(f"{k}={v}" for k, v in base.items() if v is not None) or "defaults"
        minutes, threads = (time.perf_counter() - started) / 60, torch.get_num_threads()
        today = time.strftime("%Y-%m-%d")
        header = f"# Experiments: grid {o.grid}\n\nBase options: {shown}. Seeds: {o.seeds} from "
        header += f"{o.seed}. Wall time {minutes:.1f} min on {describe_cpu()}, {threads} threads, "
        header += f"torch {torch.__version__}, gpt-classifier {__version__}, {today}."
        with writing(output_dir, "--output-dir"):
            written = write_outputs(summarize(outcomes), output_dir, header)
        click.echo((output_dir / "experiments.md").read_text(encoding="utf-8"), nl=False)
        log("wrote " + ", ".join(str(path) for path in written))
    if failed := [outcome for outcome in outcomes if outcome.error]:
        raise GPTClassifierError(f"{len(failed)} of {len(outcomes)} runs failed (see the notes)")
