"""``gpt-classifier zero-shot``: the base model answering the book's yes/no question."""

from __future__ import annotations

import sys

import click

from ..errors import GPTClassifierError
from .options import (
    data_source_options,
    device_option,
    model_options,
    precision_option,
    split_options,
)


@click.command("zero-shot")
@data_source_options
@split_options
@model_options
@click.option(
    "--split", type=click.Choice(["train", "validation", "test"]), default="test", show_default=True
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="Score only the first N examples."
)
@click.option(
    "--positive-label", default="spam", show_default=True, help="The class a 'yes' answer means."
)
@click.option(
    "--prompt",
    default=None,
    help="Template with {text} (and {positive}); default: the book's question.",
)
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=5, show_default=True)
@device_option
@precision_option
@click.option(
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Write every answer as JSON here.",
)
@click.option("--progress/--no-progress", default=True, show_default=True)
def zero_shot(
    data_file,
    train_file,
    validation_file,
    test_file,
    fmt,
    text_column,
    label_column,
    lenient,
    preset,
    balance,
    keep_duplicates,
    fractions,
    seed,
    model,
    weights,
    init,
    tokenizer_dir,
    split,
    limit,
    positive_label,
    prompt,
    max_new_tokens,
    device,
    precision,
    output,
    progress,
) -> None:
    """Score the base model's yes/no answers (no fine-tuning).

    Asks the book's question (is this text spam? yes or no) for each text of a split. The split
    options are train's: with the same flags, the same test texts as a fine-tuned run.
    """
    from tqdm.auto import tqdm

    from ..data import prepare_dataset
    from ..evaluation.zero_shot import BOOK_PROMPT, zero_shot
    from ..fileio import write_json
    from ..precision import resolve_device, resolve_precision
    from ..tokenizer import get_tokenizer
    from ..training.settings import PRESETS
    from ..weights import build_model

    recipe = PRESETS[preset]
    seed = recipe.train.seed if seed is None else seed
    prepared = prepare_dataset(
        data_file=data_file,
        train_file=train_file,
        validation_file=validation_file,
        test_file=test_file,
        fmt=fmt,
        text_column=text_column,
        label_column=label_column,
        balance=recipe.balance if balance is None else balance,
        keep_duplicates=recipe.keep_duplicates if keep_duplicates is None else keep_duplicates,
        lenient=lenient,
        seed=seed,
        fractions=fractions,
        progress=progress,
    )
    classes = list(prepared.label_map.classes)
    if positive_label not in classes or len(classes) != 2:
        raise GPTClassifierError(
            f"zero-shot needs two classes including --positive-label {positive_label!r} "
            f"(the data has {', '.join(classes)})"
        )
    negative = next(c for c in classes if c != positive_label)
    records = prepared.split(split)[:limit]
    tokenizer = get_tokenizer(tokenizer_dir)
    resolved_device = resolve_device(device)
    gpt = build_model(model, weights, init, seed=seed).to(resolved_device)
    bar = tqdm(total=len(records), desc="zero-shot", disable=not progress, file=sys.stderr)
    result = zero_shot(
        gpt,
        tokenizer,
        records,
        positive_label,
        negative,
        prompt=prompt or BOOK_PROMPT,
        max_new_tokens=max_new_tokens,
        device=resolved_device,
        precision=resolve_precision(precision, resolved_device),
        on_example=lambda: bar.update(1),
    )
    bar.close()
    answers = ", ".join(f"{k} {v}" for k, v in sorted(result.answers.items()))
    click.echo(
        f"zero-shot accuracy on {len(records)} {split} texts: "
        f"{result.accuracy * 100:.2f} % (answers: {answers})"
    )
    if output:
        write_json(output, result.to_dict())


COMMANDS = [zero_shot]
