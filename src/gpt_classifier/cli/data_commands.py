"""``gpt-classifier data prepare``: split a labelled file (or sms-spam), report, write CSVs."""

from __future__ import annotations

from dataclasses import dataclass

import click

from ..config import GPT2_CONTEXT_LENGTH
from ..data import (
    SPLIT_NAMES,
    DataSummary,
    EncodedSplits,
    LabelMap,
    encode_splits,
    parse_padding,
    prepare_dataset,
    write_splits,
)
from ..fileio import check_output_dir
from ..tokenizer import get_tokenizer
from ..training.settings import PaddingOptions, SplitOptions, TokenizerOptions, opt, over_preset
from .options import command


@click.group()
def data() -> None:
    """Prepare datasets: sms-spam or any labelled file."""


@dataclass(kw_only=True)
class PrepareOptions(TokenizerOptions, PaddingOptions, SplitOptions):
    context_length: int = opt(
        GPT2_CONTEXT_LENGTH, "Model context length: the truncation limit.", min=1
    )
    output_dir: str = opt(
        None,
        "Folder for train.csv, validation.csv, test.csv (columns Label,Text) and labels.json; it "
        "must be empty or new unless --overwrite.",
        path="dir",
        required=True,
    )
    overwrite: bool = opt(False, "Replace the splits in a non-empty --output-dir.")


@command(PrepareOptions, "prepare", group=data)
def prepare(o: PrepareOptions) -> None:
    """Deduplicate, balance and split a dataset; print counts and token lengths; write splits."""
    check_output_dir(o.output_dir, overwrite=o.overwrite)  # before minutes of work, not after
    strategy = parse_padding(over_preset(o, ["padding"])["padding"])  # fail before any download
    prepared = prepare_dataset(**o.dataset_args())
    encoded = encode_splits(prepared, get_tokenizer(o.tokenizer_dir), strategy, o.context_length)
    written = write_splits(prepared, o.output_dir)
    click.echo(format_counts(prepared.summary, prepared.label_map))
    click.echo()
    click.echo(format_token_stats(encoded))
    click.echo()
    click.echo(f"wrote {', '.join(p.name for p in written.values())} to {o.output_dir}")


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
