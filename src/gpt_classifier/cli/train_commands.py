"""``gpt-classifier train`` and ``gpt-classifier evaluate``."""

from __future__ import annotations

import sys
from typing import Any

import click
from click.core import ParameterSource

from ..classifier import POOLINGS
from ..data.readers import FORMATS
from ..distributed import DIST_TIMEOUT_ENV
from ..errors import INTERRUPTED_EXIT, GPTClassifierError
from ..fileio import CACHE_ENV
from ..precision import PRECISIONS
from ..runs.checkpoint import read_options
from ..runs.transaction import StagedRun
from ..training.recipe import FinetuneOptions
from .options import (
    data_source_options,
    device_option,
    model_options,
    precision_option,
    split_options,
    tokenizer_option,
)

# The option defaults are FinetuneOptions' (tests/test_training_options.py keeps them in step).
DEFAULTS = FinetuneOptions()


@click.command()
@data_source_options
@split_options
@model_options
@click.option(
    "--trainable",
    default=None,
    help="head | last-block | last-blocks:N | all | lora (default: last-block).",
)
@click.option(
    "--lora-rank", type=click.IntRange(min=1), default=DEFAULTS.lora_rank, show_default=True
)
@click.option("--lora-alpha", type=float, default=DEFAULTS.lora_alpha, show_default=True)
@click.option(
    "--causal-mask/--no-causal-mask",
    default=DEFAULTS.causal_mask,
    show_default=True,
    help="--no-causal-mask lets every token see every other (the book's bonus row 17).",
)
@click.option(
    "--pooling",
    type=click.Choice(POOLINGS),
    default=None,
    help="Which position feeds the head (default: last-real; the book: last).",
)
@click.option(
    "--padding",
    default=None,
    help="longest-train | batch | fixed:N | context (default: batch; the book: longest-train).",
)
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Default 5.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Default 8.")
@click.option("--lr", type=float, default=None, help="AdamW learning rate (default 5e-5).")
@click.option("--weight-decay", type=float, default=None, help="Default 0.1.")
@click.option(
    "--eval-freq",
    type=click.IntRange(min=1),
    default=None,
    help="Steps between loss evaluations (50).",
)
@click.option(
    "--eval-iter", type=click.IntRange(min=1), default=None, help="Batches per evaluation (5)."
)
@click.option(
    "--grad-accum",
    "grad_accum_steps",
    type=click.IntRange(min=1),
    default=None,
    help="Batches per optimizer step (default 1).",
)
@click.option(
    "--select-best/--last-epoch",
    "select_best",
    default=None,
    help="Keep the epoch with the best validation accuracy (default: the last).",
)
@device_option
@precision_option
@click.option(
    "--prefix-cache/--no-prefix-cache",
    default=DEFAULTS.prefix_cache,
    show_default=True,
    help="Run the frozen blocks once per example and train only the rest.",
)
@click.option(
    "--disk-cache/--no-disk-cache",
    default=DEFAULTS.disk_cache,
    show_default=True,
    help="Keep the frozen blocks' states on disk and reuse them in the next run on the same "
    "data and base model.",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    default=DEFAULTS.cache_dir,
    help=f"Folder of the disk cache (default: prefix-cache in ${CACHE_ENV} or ~/.cache/"
    "gpt-classifier). `gpt-classifier cache list|clear` shows and frees it.",
)
@click.option("--plots/--no-plots", default=DEFAULTS.plots, show_default=True)
@click.option("--progress/--no-progress", default=DEFAULTS.progress, show_default=True)
@click.option(
    "--checkpoint-every",
    type=click.IntRange(min=1),
    default=None,
    help="Also checkpoint every N optimizer steps (always: after every epoch).",
)
@click.option(
    "--overwrite",
    is_flag=True,
    default=DEFAULTS.overwrite,
    help="Replace an existing run (or non-empty folder) at --output-dir.",
)
@click.option("--output-dir", type=click.Path(), default=None, help="Run directory to create.")
@click.option(
    "--dist-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULTS.dist_timeout,
    help="Under torchrun: seconds to wait for a peer process (to join, or in a collective) "
    f"before stopping with an error (default: ${DIST_TIMEOUT_ENV} or 600).",
)
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Continue the killed or diverged run RUN_DIR from its last checkpoint, with its options.",
)
def train(resume_dir: str | None, **kwargs: Any) -> None:
    """Fine-tune GPT-2 as a classifier, evaluate it and save the run.

    Runs on several processes, GPUs or machines under torchrun (``torchrun --nproc-per-node N
    $(which gpt-classifier) train ...``): --batch-size is per process, only rank 0 writes.

    Exit status: 0 done, 2 bad input or diverged training, 130 interrupted (Ctrl-C; what was
    learnt so far is evaluated and saved, marked "interrupted" in run.json).
    """
    from ..evaluation import format_report
    from ..training.pipeline import run_finetune

    options = _resume_options(resume_dir, kwargs) if resume_dir else _new_options(kwargs)
    result = run_finetune(options)
    if not result.main_process:  # under torchrun rank 0 reports
        return
    classes = result.report[next(iter(result.report))]["per_class"].keys()
    click.echo(format_report(result.report, list(classes)), nl=False)
    click.echo(
        f"run saved to {result.run_dir} in {result.timings['total']:.1f} s "
        f"(training {result.timings['train']:.1f} s, peak memory "
        f"{result.peak_rss_mb:.0f} MiB)",
        err=True,
    )
    if result.interrupted:
        click.echo("interrupted: the run was saved as it stood (exit status 130)", err=True)
        sys.exit(INTERRUPTED_EXIT)


# Options that only change how a resumed run is shown, not what it computes.
RESUME_MAY_CHANGE = ("progress", "plots", "dist_timeout")


def _new_options(kwargs: dict[str, Any]) -> FinetuneOptions:
    if kwargs["output_dir"] is None:
        raise GPTClassifierError("missing --output-dir (the run directory to create)")
    return FinetuneOptions(**kwargs)


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
    saved = read_options(StagedRun(resume_dir).checkpoint_dir)
    keep = {name: kwargs[name] for name in RESUME_MAY_CHANGE}
    return FinetuneOptions.from_dict({**saved, **keep, "output_dir": resume_dir, "resume": True})


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option(
    "--data-file",
    "--data",
    "data_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Labelled file to evaluate on (default: the run's own splits); --data is its old name.",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None)
@click.option("--text-column", default=None)
@click.option("--label-column", default=None)
@click.option(
    "--lenient", is_flag=True, default=False, help="A runaway CSV quote is a warning, not an error."
)
@tokenizer_option
@device_option
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default=None,
    help="auto, fp32 or bf16 (default: the precision the run was trained with).",
)
@click.option("--output", default=None, help="Write the metrics JSON here too.")
def evaluate(
    run_dir,
    data_file,
    fmt,
    text_column,
    label_column,
    lenient,
    tokenizer_dir,
    device,
    precision,
    output,
):
    """Evaluate a saved run on its splits or on another labelled file."""
    from ..evaluation import format_report, write_report_json
    from ..inference.evaluate_run import evaluate_run

    report, classes = evaluate_run(
        run_dir,
        data_file=data_file,
        fmt=fmt,
        text_column=text_column,
        label_column=label_column,
        lenient=lenient,
        tokenizer_dir=tokenizer_dir,
        device=device,
        precision=precision,
    )
    click.echo(format_report(report, classes), nl=False)
    if output:
        write_report_json(report, output)


COMMANDS = [train, evaluate]
