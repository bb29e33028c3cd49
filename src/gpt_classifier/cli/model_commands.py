"""``gpt-classifier download`` and ``gpt-classifier generate``: GPT-2 itself, before fine-tuning."""

from __future__ import annotations

from dataclasses import dataclass

import click

from ..config import EOT_TOKEN_ID
from ..data import DEFAULT_SEED
from ..errors import GPTClassifierError
from ..training.settings import ModelOptions, PrecisionOptions, opt
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
class GenerateOptions(PrecisionOptions, ModelOptions):
    prompt: str = opt(None, "Text to continue.", required=True)
    max_new_tokens: int = opt(
        23, "Tokens to generate (the book's 'Every effort moves you' example uses 23).", min=0
    )
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
            out = generate_ids(
                gpt,
                idx.to(device),
                max_new_tokens=o.max_new_tokens,
                context_size=context,
                temperature=o.temperature,
                top_k=o.top_k,
                eos_id=EOT_TOKEN_ID,
            )
    except ValueError as exc:
        raise GPTClassifierError(f"cannot generate: {exc}") from None
    click.echo(token_ids_to_text(out[0].cpu(), tokenizer))


COMMANDS = [download, generate]
