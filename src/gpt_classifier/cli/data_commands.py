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
from ..evaluation.report import format_table
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


def format_counts(summary: DataSummary, label_map: LabelMap) -> str:
    """Class counts as a table (one row per class) with notes on what was dropped."""
    split = summary.fractions is not None
    columns = {"raw": summary.raw, "deduplicated": summary.deduplicated} if split else {}
    columns = {**columns, "balanced": summary.balanced} if split else {"all": summary.raw}
    columns.update({name: summary.splits[name] for name in SPLIT_NAMES})
    classes = list(dict.fromkeys([*label_map.classes, *summary.raw]))
    rows = [[name, *(str(c.get(name, 0)) for c in columns.values())] for name in classes]
    rows.append(["total", *(str(sum(c.values())) for c in columns.values())])
    classes_line = f"classes ({len(label_map)}): {', '.join(label_map.classes)}"
    table = format_table(["class", *columns], rows, rule=False)
    lines = [f"data: {summary.source}", classes_line, "", table]
    if split:
        lines.append(
            "duplicates: kept (--keep-duplicates)"
            if summary.keep_duplicates
            else f"duplicates: {summary.duplicates_dropped} repeated texts dropped (first "
            f"occurrence kept), {summary.label_conflicts} of them with a different label"
        )
        balance = {
            "undersample": "undersampled to the smallest class",
            "weighted": "every row kept, the training loss weighted by class",
        }.get(summary.balance, "none")
        fractions = ",".join(f"{f:g}" for f in summary.fractions)
        lines.append(f"balance: {balance}; split: stratified {fractions}, seed {summary.seed}")
    if summary.overlap:
        lines.append(
            f"note: {summary.overlap} validation/test texts also occur in the training split"
        )
    return "\n".join(lines)


def format_token_stats(encoded: EncodedSplits) -> str:
    """Token lengths per split (before truncation), the truncation counts and the pad length."""
    header = ["split", "examples", "min", "median", "max", "truncated", "limit"]
    rows, notes = [], []
    for name in SPLIT_NAMES:
        st = encoded.stats[name]
        cells = (st.count, st.min, st.median, st.max)
        truncated = f"{st.truncated} ({st.share_truncated:.1%})"
        rows.append([name, *map(_fmt, cells), truncated, _fmt(st.max_length)])
        if st.truncated:
            notes.append(f"truncated: {st.truncated} {name} text(s) cut to {st.max_length} tokens")
    lines = [f"tokens (padding {encoded.padding}, context length {encoded.context_length}):"]
    lines.append(format_table(header, rows, rule=False))
    lines.append(f"longest training example: {encoded.longest_train} tokens")
    pads = {encoded.pad_lengths[name] for name in SPLIT_NAMES}
    if pads == {None}:
        lines.append("padding: each batch to its longest example")
    elif len(pads) == 1:
        lines.append(f"padding: every example to {pads.pop()} tokens")
    return "\n".join(lines + notes)


def _fmt(value: float | int | None) -> str:
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
