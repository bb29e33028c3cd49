"""``gpt-classifier train`` and ``gpt-classifier evaluate``."""

from __future__ import annotations

import click

from ..classifier import POOLINGS
from ..data.readers import FORMATS
from ..precision import PRECISIONS
from ..training.settings import PRESETS
from .options import data_source_options, device_option, model_options, tokenizer_option


@click.command()
@data_source_options
@click.option(
    "--balance",
    type=click.Choice(["undersample", "none"]),
    default=None,
    help="Undersample every class to the smallest (default) or keep all rows.",
)
@click.option(
    "--keep-duplicates/--drop-duplicates",
    default=None,
    help="Keep texts that repeat an earlier one (default: drop; the book keeps them).",
)
@click.option(
    "--fractions", default="0.7,0.1,0.2", show_default=True, help="Train,validation,test shares."
)
@model_options
@click.option(
    "--preset",
    type=click.Choice(list(PRESETS)),
    default="default",
    show_default=True,
    help="'book' reproduces chapter 6 exactly; explicit flags still override it.",
)
@click.option(
    "--trainable",
    default=None,
    help="head | last-block | last-blocks:N | all | lora (default: last-block).",
)
@click.option("--lora-rank", type=int, default=16, show_default=True)
@click.option("--lora-alpha", type=float, default=16.0, show_default=True)
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
@click.option("--epochs", type=int, default=None, help="Default 5.")
@click.option("--batch-size", type=int, default=None, help="Default 8.")
@click.option("--lr", type=float, default=None, help="AdamW learning rate (default 5e-5).")
@click.option("--weight-decay", type=float, default=None, help="Default 0.1.")
@click.option("--eval-freq", type=int, default=None, help="Steps between loss evaluations (50).")
@click.option("--eval-iter", type=int, default=None, help="Batches per evaluation (5).")
@click.option(
    "--grad-accum",
    "grad_accum_steps",
    type=int,
    default=None,
    help="Batches per optimizer step (default 1).",
)
@click.option("--seed", type=int, default=None, help="Default 123.")
@click.option(
    "--select-best/--last-epoch",
    "select_best",
    default=None,
    help="Keep the epoch with the best validation accuracy (default: the last).",
)
@device_option
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="auto",
    show_default=True,
    help="bf16 autocast where the hardware runs it fast (auto), or force one.",
)
@click.option(
    "--prefix-cache/--no-prefix-cache",
    default=True,
    show_default=True,
    help="Run the frozen blocks once per example and train only the rest.",
)
@click.option("--plots/--no-plots", default=True, show_default=True)
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.option("--output-dir", required=True, help="Run directory to create.")
def train(**kwargs) -> None:
    """Fine-tune GPT-2 as a classifier, evaluate it and save the run."""
    from ..evaluation import format_report
    from ..training.pipeline import FinetuneOptions, run_finetune

    result = run_finetune(FinetuneOptions(**kwargs))
    classes = result.report[next(iter(result.report))]["per_class"].keys()
    click.echo(format_report(result.report, list(classes)), nl=False)
    click.echo(
        f"run saved to {result.run_dir} in {result.timings['total']:.1f} s "
        f"(training {result.timings['train']:.1f} s, peak memory "
        f"{result.peak_rss_mb:.0f} MiB)",
        err=True,
    )


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option(
    "--data",
    "data_file",
    default=None,
    help="Labelled file to evaluate on (default: the run's own splits).",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None)
@click.option("--text-column", default=None)
@click.option("--label-column", default=None)
@tokenizer_option
@device_option
@click.option("--output", default=None, help="Write the metrics JSON here too.")
def evaluate(run_dir, data_file, fmt, text_column, label_column, tokenizer_dir, device, output):
    """Evaluate a saved run on its splits or on another labelled file."""
    from ..evaluation import format_report, write_report_json
    from ..inference.evaluate_run import evaluate_run

    report, classes = evaluate_run(
        run_dir,
        data_file=data_file,
        fmt=fmt,
        text_column=text_column,
        label_column=label_column,
        tokenizer_dir=tokenizer_dir,
        device=device,
    )
    click.echo(format_report(report, classes), nl=False)
    if output:
        write_report_json(report, output)


COMMANDS = [train, evaluate]
