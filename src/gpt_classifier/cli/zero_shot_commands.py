"""``gpt-classifier zero-shot``: the base model answering the book's yes/no question."""

from __future__ import annotations

import sys
from typing import Any

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
def zero_shot(**options: Any) -> None:
    """Score the base model's yes/no answers (no fine-tuning).

    Asks the book's question (is this text spam? yes or no) for each text of a split. The split
    options are train's: with the same flags, the same test texts as a fine-tuned run.
    """
    from tqdm.auto import tqdm

    from ..evaluation.zero_shot import BOOK_PROMPT, zero_shot
    from ..fileio import write_json
    from ..precision import resolve_device, resolve_precision
    from ..tokenizer import get_tokenizer
    from ..weights import build_model

    records, positive, negative, seed = _split_records(options)
    tokenizer = get_tokenizer(options["tokenizer_dir"])
    device = resolve_device(options["device"])
    gpt = build_model(options["model"], options["weights"], options["init"], seed=seed)
    with tqdm(
        total=len(records), desc="zero-shot", disable=not options["progress"], file=sys.stderr
    ) as bar:
        result = zero_shot(
            gpt.to(device),
            tokenizer,
            records,
            positive,
            negative,
            prompt=options["prompt"] or BOOK_PROMPT,
            max_new_tokens=options["max_new_tokens"],
            device=device,
            precision=resolve_precision(options["precision"], device),
            on_example=lambda: bar.update(1),
        )
    answers = ", ".join(f"{k} {v}" for k, v in sorted(result.answers.items()))
    click.echo(
        f"zero-shot accuracy on {len(records)} {options['split']} texts: "
        f"{result.accuracy * 100:.2f} % (answers: {answers})"
    )
    if options["output"]:
        write_json(options["output"], result.to_dict())


def _split_records(options: dict[str, Any]) -> tuple[list, str, str, int]:
    """The texts to score (the split train would make with these flags), the positive and
    negative class names, and the seed."""
    from ..data import prepare_dataset
    from ..training.settings import PRESETS

    recipe = PRESETS[options["preset"]]
    seed = recipe.train.seed if options["seed"] is None else options["seed"]
    balance, keep = options["balance"], options["keep_duplicates"]
    prepared = prepare_dataset(
        data_file=options["data_file"],
        train_file=options["train_file"],
        validation_file=options["validation_file"],
        test_file=options["test_file"],
        fmt=options["fmt"],
        text_column=options["text_column"],
        label_column=options["label_column"],
        balance=recipe.balance if balance is None else balance,
        keep_duplicates=recipe.keep_duplicates if keep is None else keep,
        lenient=options["lenient"],
        seed=seed,
        fractions=options["fractions"],
        progress=options["progress"],
    )
    classes = list(prepared.label_map.classes)
    positive = options["positive_label"]
    if positive not in classes or len(classes) != 2:
        raise GPTClassifierError(
            f"zero-shot needs two classes including --positive-label {positive!r} "
            f"(the data has {', '.join(classes)})"
        )
    negative = next(c for c in classes if c != positive)
    return prepared.split(options["split"])[: options["limit"]], positive, negative, seed


COMMANDS = [zero_shot]
