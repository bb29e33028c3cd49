"""``download``, ``generate`` and ``zero-shot``: GPT-2 itself, before fine-tuning."""

from __future__ import annotations

from dataclasses import dataclass

import click

from ..config import EOT_TOKEN_ID
from ..data import DEFAULT_SEED, SPLIT_NAMES
from ..errors import GPTClassifierError
from ..training.settings import InferencePrecisionOptions, ModelOptions, SplitOptions, opt
from .options import command


@dataclass(kw_only=True)
class DownloadOptions:
    model_name: str = opt(argument=True, metavar="MODEL")
    cache_dir: str | None = opt(
        None,
        "Hugging Face cache folder (default: $HF_HUB_CACHE, ~/.cache/huggingface/hub).",
        path="dir",
    )


@command(DownloadOptions)
def download(o: DownloadOptions) -> None:
    """Download OpenAI's GPT-2 weights into the cache.

    MODEL is gpt2, gpt2-medium, gpt2-large, gpt2-xl or one of the book's names; prints the path
    of the cached file.
    """
    from ..hub import download_weights

    click.echo(str(download_weights(o.model_name, cache_dir=o.cache_dir)))


@dataclass(kw_only=True)
class GenerateOptions(InferencePrecisionOptions, ModelOptions):
    prompt: str = opt(None, "Text to continue.", required=True)
    max_new_tokens: int = opt(23, "Tokens to generate (the book's example's count).", min=0)
    temperature: float = opt(
        0.0, "0: greedy decoding; > 0: sample from softmax(logits / temperature).", min=0.0
    )
    top_k: int | None = opt(None, "Sample only the k likeliest tokens.", min=1)
    seed: int = opt(DEFAULT_SEED, "Seed for sampling and for --init random.")


@command(GenerateOptions)
def generate(o: GenerateOptions) -> None:
    """Continue a prompt with GPT-2.

    Prints the text (prompt included) on stdout; logs go to stderr.
    """
    import torch

    from ..generation import generate as generate_ids
    from ..generation import text_to_token_ids, token_ids_to_text
    from ..precision import autocast, resolve_device, resolve_precision
    from ..tokenizer import get_tokenizer
    from ..weights import build_model

    tokenizer = get_tokenizer(o.tokenizer_dir)
    idx = text_to_token_ids(o.prompt, tokenizer)
    if idx.shape[1] == 0:
        raise GPTClassifierError("--prompt is empty")
    gpt = build_model(o.model, weights=o.weights, init=o.init, seed=o.seed)
    context = gpt.cfg.context_length
    if idx.shape[1] > context:
        raise GPTClassifierError(
            f"--prompt has {idx.shape[1]} tokens but the model's context length is {context}"
        )
    device = resolve_device(o.device)
    gpt.to(device)
    torch.manual_seed(o.seed)
    try:
        with autocast(device, resolve_precision(o.precision, device)):
            # the book's order: max_new_tokens, context_size, temperature, top_k, eos_id
            args = (o.max_new_tokens, context, o.temperature, o.top_k, EOT_TOKEN_ID)
            out = generate_ids(gpt, idx.to(device), *args)
    except ValueError as exc:
        raise GPTClassifierError(f"cannot generate: {exc}") from None
    click.echo(token_ids_to_text(out[0].cpu(), tokenizer))


@dataclass(kw_only=True)
class ZeroShotOptions(InferencePrecisionOptions, ModelOptions, SplitOptions):
    split: str = opt("test", "The split whose texts are scored.", choices=SPLIT_NAMES)
    limit: int | None = opt(None, "Score only the first N examples.", min=1)
    positive_label: str = opt("spam", "The class a 'yes' answer means.")
    prompt: str | None = opt(
        None, "Template with {text} (and {positive}); default: the book's question."
    )
    max_new_tokens: int = opt(5, "Tokens of the answer.", min=1)
    output: str | None = opt(None, "Write every answer as JSON here.", path="file", writable=True)
    progress: bool = opt(True, "A progress bar on stderr.")


@command(ZeroShotOptions, "zero-shot")
def zero_shot(o: ZeroShotOptions) -> None:
    """Score the base model's yes/no answers (no fine-tuning).

    Asks the book's question (is this text spam? yes or no) for each text of a split. The split
    options are train's: with the same flags, the same test texts as a fine-tuned run.
    """
    from ..data import prepare_dataset
    from ..evaluation.zero_shot import BOOK_PROMPT, zero_shot
    from ..fileio import write_json
    from ..precision import resolve_device, resolve_precision
    from ..progress import progress_bar
    from ..tokenizer import get_tokenizer
    from ..weights import build_model

    args = o.dataset_args()
    prepared = prepare_dataset(**args, progress=o.progress)
    classes, positive = list(prepared.label_map.classes), o.positive_label
    if positive not in classes or len(classes) != 2:
        raise GPTClassifierError(
            f"zero-shot needs two classes including --positive-label {positive!r} "
            f"(the data has {', '.join(classes)})"
        )
    negative = next(c for c in classes if c != positive)
    records = prepared.split(o.split)[: o.limit]
    tokenizer = get_tokenizer(o.tokenizer_dir)
    device = resolve_device(o.device)
    gpt = build_model(o.model, o.weights, o.init, seed=args["seed"])
    with progress_bar(len(records), "zero-shot", enabled=o.progress, unit="texts") as bar:
        result = zero_shot(
            gpt.to(device),
            tokenizer,
            records,
            positive,
            negative,
            prompt=o.prompt or BOOK_PROMPT,
            max_new_tokens=o.max_new_tokens,
            device=device,
            precision=resolve_precision(o.precision, device),
            on_example=lambda: bar.update(1),
        )
    answers = ", ".join(f"{k} {v}" for k, v in sorted(result.answers.items()))
    click.echo(
        f"zero-shot accuracy on {len(records)} {o.split} texts: "
        f"{result.accuracy * 100:.2f} % (answers: {answers})"
    )
    if o.output:
        write_json(o.output, result.to_dict())
