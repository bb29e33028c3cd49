"""``gpt-classifier data prepare``: split a labelled file (or sms-spam), report, write CSVs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ..config import GPT2_CONTEXT_LENGTH
from ..data import (
    BALANCE_METHODS,
    SPLIT_NAMES,
    DataSummary,
    EncodedSplits,
    LabelMap,
    encode_splits,
    parse_padding,
    prepare_dataset,
    write_splits,
)
from ..data.splits import DEFAULT_SEED
from ..fileio import check_output_dir
from ..tokenizer import get_tokenizer
from ..training.settings import DEFAULT_RECIPE
from .options import data_source_options, tokenizer_option

# Keyword names of ``data_options`` that ``prepare_dataset`` takes as they are.
PREPARE_KEYS = (
    "data_file",
    "train_file",
    "validation_file",
    "test_file",
    "fmt",
    "text_column",
    "label_column",
    "balance",
    "keep_duplicates",
    "fractions",
    "lenient",
)


def data_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Where the examples come from and how they are split and padded. Adds the keyword
    arguments ``PREPARE_KEYS`` (for ``prepare_dataset``) and ``padding`` (for ``encode_splits``);
    the seed is left to the command."""
    decorators = [
        click.option(
            "--balance",
            type=click.Choice(BALANCE_METHODS),
            default=DEFAULT_RECIPE.balance,
            show_default=True,
            help="undersample: every class cut to the smallest one (the book); none: keep all.",
        ),
        click.option(
            "--keep-duplicates/--drop-duplicates",
            default=DEFAULT_RECIPE.keep_duplicates,
            show_default=True,
            help="Keep repeated texts (by default only the first occurrence is kept; the book "
            "keeps them).",
        ),
        click.option(
            "--fractions",
            default="0.7,0.1,0.2",
            show_default=True,
            help="Train,validation,test fractions of the stratified split.",
        ),
        click.option(
            "--padding",
            default=DEFAULT_RECIPE.padding,
            show_default=True,
            help="batch (train's default), longest-train (the book), fixed:N, or context.",
        ),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return data_source_options(func)


@click.group()
def data() -> None:
    """Prepare datasets: sms-spam or any labelled file."""


@data.command("prepare")
@data_options
@click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True, help="Split seed.")
@click.option(
    "--context-length",
    type=click.IntRange(min=1),
    default=GPT2_CONTEXT_LENGTH,
    show_default=True,
    help="Model context length: the truncation limit.",
)
@click.option(
    "--output-dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for train.csv, validation.csv, test.csv (columns Label,Text) and labels.json; "
    "it must be empty or new unless --overwrite.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    default=False,
    help="Replace the splits in a non-empty --output-dir.",
)
@tokenizer_option
def prepare(
    seed: int,
    context_length: int,
    output_dir: str,
    overwrite: bool,
    tokenizer_dir: str | None,
    padding: str,
    **options: Any,
) -> None:
    """Deduplicate, balance and split a dataset; print counts and token lengths; write splits."""
    check_output_dir(output_dir, overwrite=overwrite)  # before minutes of work, not after
    strategy = parse_padding(padding)  # fail before any download
    prepared = prepare_dataset(**{key: options[key] for key in PREPARE_KEYS}, seed=seed)
    encoded = encode_splits(prepared, get_tokenizer(tokenizer_dir), strategy, context_length)
    written = write_splits(prepared, output_dir)
    click.echo(format_counts(prepared.summary, prepared.label_map))
    click.echo()
    click.echo(format_token_stats(encoded))
    click.echo()
    click.echo(f"wrote {', '.join(p.name for p in written.values())} to {output_dir}")


COMMANDS = [data]


# --- report text ------------------------------------------------------------------------------


def format_counts(summary: DataSummary, label_map: LabelMap) -> str:
    """Class counts as a table (one row per class) with notes on what was dropped."""
    if summary.fractions is not None:
        columns = {"raw": summary.raw, "deduplicated": summary.deduplicated}
        columns["balanced"] = summary.balanced
    else:
        columns = {"all": summary.raw}
    columns.update({name: summary.splits[name] for name in SPLIT_NAMES})
    classes = list(dict.fromkeys([*label_map.classes, *summary.raw]))
    rows = [(name, [counts.get(name, 0) for counts in columns.values()]) for name in classes]
    rows.append(("total", [sum(counts.values()) for counts in columns.values()]))
    first = max(len("class"), *(len(name) for name, _ in rows))
    widths = [
        max(len(title), *(len(str(v[i])) for _, v in rows)) for i, title in enumerate(columns)
    ]
    lines = [
        f"data: {summary.source}",
        f"classes ({len(label_map)}): {', '.join(label_map.classes)}",
        "",
        "  ".join(
            ["class".ljust(first), *(t.rjust(w) for t, w in zip(columns, widths, strict=True))]
        ),
    ]
    for name, values in rows:
        cells = (str(v).rjust(w) for v, w in zip(values, widths, strict=True))
        lines.append("  ".join([name.ljust(first), *cells]))
    if summary.fractions is not None:
        if summary.keep_duplicates:
            lines.append("duplicates: kept (--keep-duplicates)")
        else:
            lines.append(
                f"duplicates: {summary.duplicates_dropped} repeated texts dropped "
                f"(first occurrence kept), {summary.label_conflicts} of them with a different label"
            )
        balance = (
            "undersampled to the smallest class" if summary.balance == "undersample" else "none"
        )
        fractions = ",".join(f"{f:g}" for f in summary.fractions)
        lines.append(f"balance: {balance}; split: stratified {fractions}, seed {summary.seed}")
    if summary.overlap:
        lines.append(
            f"note: {summary.overlap} validation/test texts also occur in the training split"
        )
    return "\n".join(lines)


def format_token_stats(encoded: EncodedSplits) -> str:
    """Token lengths per split (before truncation), the truncation counts and the pad length."""
    header = ("split", "examples", "min", "median", "max", "truncated", "limit")
    rows = []
    for name in SPLIT_NAMES:
        stats = encoded.stats[name]
        share = f"{stats.truncated} ({stats.share_truncated:.1%})"
        rows.append(
            (
                name,
                str(stats.count),
                _fmt(stats.min),
                _fmt(stats.median),
                _fmt(stats.max),
                share,
                _fmt(stats.max_length),
            )
        )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        f"tokens (padding {encoded.padding}, context length {encoded.context_length}):",
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w)
            for i, (h, w) in enumerate(zip(header, widths, strict=True))
        ),
    ]
    for row in rows:
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    lines.append(f"longest training example: {encoded.longest_train} tokens")
    pads = {encoded.pad_lengths[name] for name in SPLIT_NAMES}
    if pads == {None}:
        lines.append("padding: each batch to its longest example")
    elif len(pads) == 1:
        lines.append(f"padding: every example to {pads.pop()} tokens")
    for name in SPLIT_NAMES:
        stats = encoded.stats[name]
        if stats.truncated:
            lines.append(
                f"truncated: {stats.truncated} {name} text(s) cut to {stats.max_length} tokens"
            )
    return "\n".join(lines)


def _fmt(value: float | int | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
