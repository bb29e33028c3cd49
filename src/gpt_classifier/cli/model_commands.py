"""``gpt-classifier download`` and ``gpt-classifier generate``: GPT-2 itself, before fine-tuning."""

from __future__ import annotations

import click

from ..config import EOT_TOKEN_ID
from ..errors import GPTClassifierError
from .options import device_option, model_options, precision_option


@click.command()
@click.argument("model_name", metavar="MODEL")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Hugging Face cache folder (default: $HF_HUB_CACHE, ~/.cache/huggingface/hub).",
)
def download(model_name: str, cache_dir: str | None) -> None:
    """Download OpenAI's GPT-2 weights into the cache.

    MODEL is gpt2, gpt2-medium, gpt2-large, gpt2-xl or one of the book's names; prints the path
    of the cached file.
    """
    from ..hub import download_weights

    click.echo(str(download_weights(model_name, cache_dir=cache_dir)))


@click.command()
@click.option("--prompt", required=True, help="Text to continue.")
@click.option(
    "--max-new-tokens",
    type=click.IntRange(min=0),
    default=23,
    show_default=True,
    help="Tokens to generate (the book's 'Every effort moves you' example uses 23).",
)
@click.option(
    "--temperature",
    type=click.FloatRange(min=0.0),
    default=0.0,
    show_default=True,
    help="0: greedy decoding; > 0: sample from softmax(logits / temperature).",
)
@click.option(
    "--top-k", type=click.IntRange(min=1), default=None, help="Sample only the k likeliest tokens."
)
@click.option(
    "--seed",
    type=int,
    default=123,
    show_default=True,
    help="Seed for sampling and for --init random.",
)
@model_options
@device_option
@precision_option
def generate(
    prompt: str,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    seed: int,
    model: str,
    weights: str | None,
    init: str,
    tokenizer_dir: str | None,
    device: str,
    precision: str,
) -> None:
    """Continue a prompt with GPT-2.

    Prints the text (prompt included) on stdout; logs go to stderr.
    """
    import torch

    from ..generation import generate as generate_ids
    from ..generation import text_to_token_ids, token_ids_to_text
    from ..precision import autocast, resolve_device, resolve_precision
    from ..tokenizer import get_tokenizer
    from ..weights import build_model

    tokenizer = get_tokenizer(tokenizer_dir)
    idx = text_to_token_ids(prompt, tokenizer)
    if idx.shape[1] == 0:
        raise GPTClassifierError("--prompt is empty")
    gpt = build_model(model, weights=weights, init=init, seed=seed)
    context = gpt.cfg.context_length
    if idx.shape[1] > context:
        raise GPTClassifierError(
            f"--prompt has {idx.shape[1]} tokens but the model's context length is {context}"
        )
    resolved = resolve_device(device)
    gpt.to(resolved)
    torch.manual_seed(seed)
    try:
        with autocast(resolved, resolve_precision(precision, resolved)):
            out = generate_ids(
                gpt,
                idx.to(resolved),
                max_new_tokens=max_new_tokens,
                context_size=context,
                temperature=temperature,
                top_k=top_k,
                eos_id=EOT_TOKEN_ID,
            )
    except ValueError as exc:
        raise GPTClassifierError(f"cannot generate: {exc}") from None
    click.echo(token_ids_to_text(out[0].cpu(), tokenizer))


COMMANDS = [download, generate]
