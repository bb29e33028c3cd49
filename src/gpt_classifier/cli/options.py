"""Flags shared by every command that builds a model or a tokenizer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ..tokenizer import TOKENIZER_DIR_ENV


def model_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--model``, ``--weights``, ``--init``: which GPT-2 and where its weights come from."""
    decorators = [
        click.option(
            "--model",
            "model",
            default="gpt2",
            show_default=True,
            help="GPT-2 size (gpt2, gpt2-medium, gpt2-large, gpt2-xl, or the book's names) "
            "or a JSON config file with the book's keys.",
        ),
        click.option(
            "--weights",
            type=click.Path(dir_okay=True, file_okay=True),
            default=None,
            help="Local weights: a .safetensors file or a Hugging Face model directory "
            "(instead of downloading).",
        ),
        click.option(
            "--init",
            type=click.Choice(["pretrained", "random"]),
            default="pretrained",
            show_default=True,
            help="pretrained: OpenAI's weights (downloaded, or --weights); random: untrained.",
        ),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return tokenizer_option(func)


def tokenizer_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--tokenizer-dir",
        envvar=TOKENIZER_DIR_ENV,
        type=click.Path(file_okay=False),
        default=None,
        help=f"Folder with GPT-2's vocab.bpe and encoder.json for offline use "
        f"(env {TOKENIZER_DIR_ENV}).",
    )(func)
