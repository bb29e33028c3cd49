"""``gpt-classifier data prepare``: split a labelled file (or sms-spam), report, write CSVs."""

from dataclasses import dataclass

import click

from .. import data
from ..config import GPT2_CONTEXT_LENGTH
from ..evaluation.report import format_table
from ..fileio import check_output_dir
from ..tokenizer import get_tokenizer
from ..training.settings import PaddingOptions, SplitOptions, TokenizerOptions, opt, over_preset
from .options import command


@click.group("data")
def data_group() -> None:
    """Prepare datasets: sms-spam or any labelled file."""


@dataclass(kw_only=True)
class PrepareOptions(TokenizerOptions, PaddingOptions, SplitOptions):
    context_length: int = opt(
        "Model context length: the truncation limit.", GPT2_CONTEXT_LENGTH, min=1
    )
    output_dir: str = opt(
        "Folder for train.csv, validation.csv, test.csv (columns Label,Text) and labels.json; it "
        "must be empty or new unless --overwrite.",
        path="dir",
        required=True,
    )
    overwrite: bool = opt("Replace the splits in a non-empty --output-dir.", False)


@command(PrepareOptions, "prepare", group=data_group)
def prepare(o: PrepareOptions) -> None:
    """Deduplicate, balance and split a dataset; print counts and token lengths; write splits."""
    check_output_dir(o.output_dir, overwrite=o.overwrite)  # before minutes of work, not after
    padding = data.parse_padding(over_preset(o, ["padding"])["padding"])  # before a download
    prepared = data.prepare_dataset(**o.dataset_args())
    tokenizer = get_tokenizer(o.tokenizer_dir)
    encoded = data.encode_splits(prepared, tokenizer, padding, o.context_length)
    written = data.write_splits(prepared, o.output_dir)
    counts = format_counts(prepared.summary, prepared.label_map)
    click.echo(f"{counts}\n\n{format_token_stats(encoded)}\n")
    click.echo(f"wrote {', '.join(p.name for p in written.values())} to {o.output_dir}")


def format_counts(summary: data.DataSummary, label_map: data.LabelMap) -> str:
    """Class counts as a table (one row per class) with notes on what was dropped."""
    columns = {"all": summary.raw}
    if split := summary.fractions is not None:
        columns = {"raw": summary.raw, "deduplicated": summary.deduplicated}
        columns["balanced"] = summary.balanced
    columns.update({name: summary.splits[name] for name in data.SPLIT_NAMES})
    classes = list(dict.fromkeys([*label_map.classes, *summary.raw]))
    rows = [[name, *(str(c.get(name, 0)) for c in columns.values())] for name in classes]
    rows.append(["total", *(str(sum(c.values())) for c in columns.values())])
    table = format_table(["class", *columns], rows, rule=False)
    names = ", ".join(label_map.classes)
    lines = [f"data: {summary.source}", f"classes ({len(label_map)}): {names}", "", table]
    if split:
        dropped = f"{summary.duplicates_dropped} repeated texts dropped (first occurrence kept), "
        dropped += f"{summary.label_conflicts} of them with a different label"
        kept = summary.keep_duplicates
        lines.append("duplicates: " + ("kept (--keep-duplicates)" if kept else dropped))
        balance = {
            "undersample": "undersampled to the smallest class",
            "weighted": "every row kept, the training loss weighted by class",
        }.get(summary.balance, "none")
        fractions = ",".join(f"{f:g}" for f in summary.fractions)
        lines.append(f"balance: {balance}; split: stratified {fractions}, seed {summary.seed}")
    if overlap := summary.overlap:
        lines.append(f"note: {overlap} validation/test texts also occur in the training split")
    return "\n".join(lines)


def format_token_stats(encoded: data.EncodedSplits) -> str:
    """Token lengths per split (before truncation), the truncation counts and the pad length."""
    rows, notes = [], []
    for name in data.SPLIT_NAMES:
        st = encoded.stats[name]
        cells = (st.count, st.min, st.median, st.max, st.max_length)
        cells = ["-" if c is None else f"{c:g}" if isinstance(c, float) else str(c) for c in cells]
        rows.append([name, *cells[:4], f"{st.truncated} ({st.share_truncated:.1%})", cells[4]])
        if st.truncated:
            notes.append(f"truncated: {st.truncated} {name} text(s) cut to {st.max_length} tokens")
    header = ["split", "examples", "min", "median", "max", "truncated", "limit"]
    lines = [f"tokens (padding {encoded.padding}, context length {encoded.context_length}):"]
    lines += [format_table(header, rows, rule=False)]
    lines.append(f"longest training example: {encoded.longest_train} tokens")
    pads = {encoded.pad_lengths[name] for name in data.SPLIT_NAMES}
    if pads == {None}:
        lines.append("padding: each batch to its longest example")
    elif len(pads) == 1:
        lines.append(f"padding: every example to {pads.pop()} tokens")
    return "\n".join(lines + notes)
