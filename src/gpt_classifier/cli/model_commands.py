"""Before fine-tuning: ``download``, ``generate`` and ``zero-shot`` (GPT-2 itself), ``data``."""

from dataclasses import asdict, dataclass
from typing import Any

import click
import torch

from .. import data
from ..config import EOT_TOKEN_ID, GPT2_CONTEXT_LENGTH
from ..errors import GPTClassifierError
from ..evaluation.report import format_table
from ..fileio import check_output_dir, write_json
from ..precision import autocast, resolve_device, resolve_precision
from ..progress import progress_bar
from ..tokenizer import get_tokenizer
from ..training import settings
from ..training.settings import InferencePrecisionOptions, ModelOptions, opt, over_preset
from ..weights import build_model
from .options import command


@dataclass(kw_only=True)
class DownloadOptions:
    model_name: str = opt(argument=True, metavar="MODEL")
    cache_dir: str | None = opt(
        "Hugging Face cache folder (default: $HF_HUB_CACHE, ~/.cache/huggingface/hub).", path="dir"
    )


@command(DownloadOptions)
def download(o: DownloadOptions) -> None:
    """Download OpenAI's GPT-2 weights into the cache.

    MODEL is gpt2, gpt2-medium, gpt2-large, gpt2-xl or one of the book's names; prints the path
    of the cached file.
    """
    from ..weights import download_weights

    click.echo(str(download_weights(o.model_name, cache_dir=o.cache_dir)))


def _load(o: "GenerateOptions | ZeroShotOptions", seed: int) -> tuple[Any, Any, str]:
    """The model on its device, the device and the resolved precision."""
    gpt = build_model(o.model, weights=o.weights, init=o.init, seed=seed)
    device = resolve_device(o.device)
    return gpt.to(device), device, resolve_precision(o.precision, device)


@dataclass(kw_only=True)
class GenerateOptions(InferencePrecisionOptions, ModelOptions):
    prompt: str = opt("Text to continue.", required=True)
    max_new_tokens: int = opt("Tokens to generate (the book's example's count).", 23, min=0)
    temperature: float = opt(
        "0: greedy decoding; > 0: sample from softmax(logits / temperature).", 0.0, min=0.0
    )
    top_k: int | None = opt("Sample only the k likeliest tokens.", min=1)
    seed: int = opt("Seed for sampling and for --init random.", data.DEFAULT_SEED)


@command(GenerateOptions)
def generate(o: GenerateOptions) -> None:
    """Continue a prompt with GPT-2.

    Prints the text (prompt included) on stdout; logs go to stderr.
    """
    from .. import generation

    tokenizer = get_tokenizer(o.tokenizer_dir)
    idx = generation.text_to_token_ids(o.prompt, tokenizer)
    if (size := idx.shape[1]) == 0:
        raise GPTClassifierError("--prompt is empty")
    gpt, device, precision = _load(o, o.seed)
    if size > (context := gpt.cfg.context_length):
        too_long = f"--prompt has {size} tokens but the model's context length is {context}"
        raise GPTClassifierError(too_long)
    torch.manual_seed(o.seed)
    # the book's order: max_new_tokens, context_size, temperature, top_k, eos_id
    args = (o.max_new_tokens, context, o.temperature, o.top_k, EOT_TOKEN_ID)
    try:
        with autocast(device, precision):
            out = generation.generate(gpt, idx.to(device), *args)
    except ValueError as exc:
        raise GPTClassifierError(f"cannot generate: {exc}") from None
    click.echo(generation.token_ids_to_text(out[0].cpu(), tokenizer))


@dataclass(kw_only=True)
class ZeroShotOptions(InferencePrecisionOptions, ModelOptions, settings.SplitOptions):
    split: str = opt("The split whose texts are scored.", "test", choices=data.SPLIT_NAMES)
    limit: int | None = opt("Score only the first N examples.", min=1)
    positive_label: str = opt("The class a 'yes' answer means.", "spam")
    prompt: str | None = opt("Template with {text} (and {positive}); default: the book's question.")
    max_new_tokens: int = opt("Tokens of the answer.", 5, min=1)
    output: str | None = opt("Write every answer as JSON here.", path="file", writable=True)
    progress: bool = opt("A progress bar on stderr.", True)


@command(ZeroShotOptions, "zero-shot")
def zero_shot(o: ZeroShotOptions) -> None:
    """Score the base model's yes/no answers (no fine-tuning).

    Asks the book's question (is this text spam? yes or no) for each text of a split. The split
    options are train's: with the same flags, the same test texts as a fine-tuned run.
    """
    from ..evaluation.predictions import BOOK_PROMPT, zero_shot

    prepared = data.prepare_dataset(**(args := o.dataset_args()), progress=o.progress)
    classes, positive = list(prepared.label_map.classes), o.positive_label
    if positive not in classes or len(classes) != 2:
        raise GPTClassifierError(
            f"zero-shot needs two classes including --positive-label {positive!r} "
            f"(the data has {', '.join(classes)})"
        )
    negative = next(c for c in classes if c != positive)
    records = prepared.split(o.split)[: o.limit]
    gpt, device, precision = _load(o, args["seed"])
    options = {"max_new_tokens": o.max_new_tokens, "device": device, "precision": precision}
    with progress_bar(len(records), "zero-shot", enabled=o.progress, unit="texts") as bar:
        inputs = (gpt, get_tokenizer(o.tokenizer_dir), records, positive, negative)
        options.update(prompt=o.prompt or BOOK_PROMPT, on_example=lambda: bar.update(1))
        result = zero_shot(*inputs, **options)
    answers = ", ".join(f"{k} {v}" for k, v in sorted(result.answers.items()))
    accuracy = f"{result.accuracy * 100:.2f} % (answers: {answers})"
    click.echo(f"zero-shot accuracy on {len(records)} {o.split} texts: {accuracy}")
    if o.output:
        write_json(o.output, asdict(result))


@click.group("data")
def data_group() -> None:
    """Prepare datasets: sms-spam or any labelled file."""


@dataclass(kw_only=True)
class PrepareOptions(settings.TokenizerOptions, settings.PaddingOptions, settings.SplitOptions):
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
    click.echo(f"{format_summary(prepared, encoded)}\n")
    click.echo(f"wrote {', '.join(p.name for p in written.values())} to {o.output_dir}")


def format_summary(prepared: data.PreparedData, encoded: data.EncodedSplits) -> str:
    """Class counts as a table (one row per class) with notes on what was dropped, then token
    lengths per split (before truncation), the truncation counts and the pad length."""
    summary, label_map = prepared.summary, prepared.label_map
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
    splits, notes = [], []
    for name in data.SPLIT_NAMES:
        st = encoded.stats[name]
        cells = (st.count, st.min, st.median, st.max, st.max_length)
        cells = ["-" if c is None else f"{c:g}" if isinstance(c, float) else str(c) for c in cells]
        splits.append([name, *cells[:4], f"{st.truncated} ({st.share_truncated:.1%})", cells[4]])
        if st.truncated:
            notes.append(f"truncated: {st.truncated} {name} text(s) cut to {st.max_length} tokens")
    header = ["split", "examples", "min", "median", "max", "truncated", "limit"]
    lines += ["", f"tokens (padding {encoded.padding}, context length {encoded.context_length}):"]
    lines += [format_table(header, splits, rule=False)]
    lines.append(f"longest training example: {encoded.longest_train} tokens")
    pads = {encoded.pad_lengths[name] for name in data.SPLIT_NAMES}
    if pads == {None}:
        lines.append("padding: each batch to its longest example")
    elif len(pads) == 1:
        lines.append(f"padding: every example to {pads.pop()} tokens")
    return "\n".join(lines + notes)
