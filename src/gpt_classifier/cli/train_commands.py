"""``train``, ``evaluate`` and ``cache list|clear`` (the frozen-prefix states train keeps)."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from typing import Any

import click
from click.core import ParameterSource

from ..errors import INTERRUPTED_EXIT, GPTClassifierError
from ..fileio import writing
from ..runs.checkpoint import OPTIONS_FILE, read_options
from ..runs.transaction import StagedRun
from ..training.cache_store import CacheStore, describe
from ..training.recipe import FinetuneOptions
from ..training.settings import (
    CacheOptions,
    InferencePrecisionOptions,
    ReadOptions,
    TokenizerOptions,
    opt,
)
from .options import BaseWeightsOptions, command, options_from

# Options that only change how a resumed run is shown, not what it computes.
RESUME_MAY_CHANGE = ("progress", "plots", "dist_timeout")


@click.command()
@options_from(FinetuneOptions)
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Continue the killed or diverged run RUN_DIR from its last checkpoint, with its options.",
)
def train(resume_dir: str | None, **kwargs: Any) -> None:
    """Fine-tune GPT-2 as a classifier, evaluate it and save the run.

    Under torchrun (torchrun --nproc-per-node N $(which gpt-classifier) train ...) it runs on
    several processes, GPUs or machines: --batch-size is per process, only rank 0 writes.

    Exit status: 0 done, 2 bad input or diverged training, 130 interrupted (Ctrl-C; what was
    learnt so far is evaluated and saved, marked "interrupted" in run.json).
    """
    from ..evaluation import format_report
    from ..training.pipeline import run_finetune

    if not resume_dir and kwargs["output_dir"] is None:
        raise GPTClassifierError("missing --output-dir (the run directory to create)")
    options = _resume_options(resume_dir, kwargs) if resume_dir else FinetuneOptions(**kwargs)
    result = run_finetune(options)
    if not result.main_process:  # under torchrun rank 0 reports
        return
    classes = result.report[next(iter(result.report))]["per_class"].keys()
    click.echo(format_report(result.report, list(classes)), nl=False)
    click.echo(
        f"run saved to {result.run_dir} in {result.timings['total']:.1f} s (training "
        f"{result.timings['train']:.1f} s, peak memory {result.peak_rss_mb:.0f} MiB)",
        err=True,
    )
    if result.interrupted:
        click.echo("interrupted: the run was saved as it stood (exit status 130)", err=True)
        sys.exit(INTERRUPTED_EXIT)


def _resume_options(resume_dir: str, kwargs: dict[str, Any]) -> FinetuneOptions:
    ctx = click.get_current_context()
    given = [
        name
        for name in kwargs
        if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE
        and name not in RESUME_MAY_CHANGE
    ]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise GPTClassifierError(
            f"--resume continues with the interrupted run's own options; drop {flags}"
        )
    folder = StagedRun(resume_dir).checkpoint_dir
    saved = read_options(folder)
    written = {f.name for f in dataclasses.fields(FinetuneOptions)} - {*RESUME_MAY_CHANGE, "resume"}
    if missing := sorted(written - set(saved)):
        raise GPTClassifierError(
            f"{folder / OPTIONS_FILE} lacks options every run writes ({', '.join(missing)})"
        )
    keep = {name: kwargs[name] for name in RESUME_MAY_CHANGE}
    return FinetuneOptions.from_dict({**saved, **keep, "output_dir": resume_dir, "resume": True})


@dataclass(kw_only=True)
class EvaluateOptions(InferencePrecisionOptions, BaseWeightsOptions, TokenizerOptions, ReadOptions):
    run_dir: str = opt(argument=True, path="dir")
    data_file: str | None = opt(
        None,
        "Labelled file to evaluate on (default: the run's own splits); --data is its old name.",
        flag=("--data-file", "--data"),
        path="file",
    )
    output: str | None = opt(None, "Write the metrics JSON here too.")
    progress: bool = opt(True, "Progress on stderr: a bar on a terminal, else a line every 30 s.")


@command(EvaluateOptions)
def evaluate(options: EvaluateOptions) -> None:
    """Evaluate a saved run on its splits or on another labelled file."""
    from ..evaluation import format_report, write_report_json
    from ..inference.evaluate_run import evaluate_run

    values = dataclasses.asdict(options)
    run_dir, output = values.pop("run_dir"), values.pop("output")
    report, classes = evaluate_run(run_dir, **values)
    click.echo(format_report(report, classes), nl=False)
    if output:
        with writing(output, "--output"):
            write_report_json(report, output)


@click.group()
def cache() -> None:
    """Show or free the frozen-prefix cache that train keeps on disk."""


@command(CacheOptions, "list", group=cache)
def list_entries(o: CacheOptions) -> None:
    """One line per entry, least recently used first, then the total."""
    store = CacheStore(o.cache_dir)
    entries = store.entries()
    for entry in entries:
        click.echo(describe(entry))
    total = sum(entry.size for entry in entries)
    click.echo(f"{len(entries)} entries, {total / 2**20:.1f} MiB in {store.folder}")


@command(CacheOptions, "clear", group=cache)
def clear(o: CacheOptions) -> None:
    """Delete every entry."""
    store = CacheStore(o.cache_dir)
    click.echo(f"removed {store.clear()} entries from {store.folder}")
