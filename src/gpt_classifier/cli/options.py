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


def precision_option(func: Callable[..., Any]) -> Callable[..., Any]:
    from ..precision import PRECISIONS

    return click.option(
        "--precision",
        type=click.Choice(PRECISIONS),
        default="auto",
        show_default=True,
        help="bf16 autocast where the hardware runs it fast (auto), or force one.",
    )(func)


def split_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--preset``, ``--balance``, ``--keep-duplicates/--drop-duplicates``, ``--fractions``,
    ``--seed``: how one labelled file becomes train/validation/test. With the same flags every
    command that splits (train, zero-shot) gets the same splits. ``None``: the preset's value."""
    from ..data import BALANCE_METHODS
    from ..training.settings import PRESETS

    decorators = [
        click.option(
            "--preset",
            type=click.Choice(list(PRESETS)),
            default="default",
            show_default=True,
            help="'book' reproduces chapter 6 exactly; explicit flags still override it.",
        ),
        click.option(
            "--balance",
            type=click.Choice(BALANCE_METHODS),
            default=None,
            help="Undersample every class to the smallest (default) or keep all rows.",
        ),
        click.option(
            "--keep-duplicates/--drop-duplicates",
            default=None,
            help="Keep texts that repeat an earlier one (default: drop; the book keeps them).",
        ),
        click.option(
            "--fractions",
            default="0.7,0.1,0.2",
            show_default=True,
            help="Train,validation,test shares.",
        ),
        click.option(
            "--seed", type=click.IntRange(0, 2**63 - 1), default=None, help="Default 123."
        ),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func
