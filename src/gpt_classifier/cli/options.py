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


def device_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--device",
        default="auto",
        show_default=True,
        help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps.",
    )(func)


def tokenizer_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--tokenizer-dir",
        envvar=TOKENIZER_DIR_ENV,
        type=click.Path(file_okay=False),
        default=None,
        help=f"Folder with GPT-2's vocab.bpe and encoder.json for offline use "
        f"(env {TOKENIZER_DIR_ENV}).",
    )(func)


def data_source_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Where labelled texts come from and how they are read: ``data_file``, ``train_file``,
    ``validation_file``, ``test_file``, ``fmt``, ``text_column``, ``label_column``,
    ``lenient``."""
    from ..data import FORMATS

    path = click.Path(dir_okay=False)
    decorators = [
        click.option(
            "--data-file",
            type=path,
            default=None,
            help="One labelled file to deduplicate, balance and split (default: the built-in "
            "sms-spam dataset, downloaded and cached).",
        ),
        click.option("--train-file", type=path, default=None, help="Ready-made training split."),
        click.option(
            "--validation-file", type=path, default=None, help="Ready-made validation split."
        ),
        click.option("--test-file", type=path, default=None, help="Ready-made test split."),
        click.option(
            "--format",
            "fmt",
            type=click.Choice(FORMATS),
            default=None,
            help="File format (default: from the suffix: .csv, .tsv/.txt (header row, or "
            "headerless label<TAB>text = sms), .jsonl, .parquet).",
        ),
        click.option(
            "--text-column", default=None, help="Text column (default: text, sentence, ...)."
        ),
        click.option(
            "--label-column", default=None, help="Label column (default: label, class, ...)."
        ),
        click.option(
            "--lenient",
            is_flag=True,
            default=False,
            help="A quoted CSV field that runs over many lines (an unbalanced double quote "
            "swallowing the rows after it) is a warning with row counts, not an error.",
        ),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func
