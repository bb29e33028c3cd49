"""``gpt-classifier zero-shot``: the base model answering the book's yes/no question."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import click

from ..data import SPLIT_NAMES
from ..errors import GPTClassifierError
from ..training.settings import ModelOptions, PrecisionOptions, SplitOptions, opt
from .options import command


@dataclass(kw_only=True)
class ZeroShotOptions(PrecisionOptions, ModelOptions, SplitOptions):
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
    from tqdm.auto import tqdm

    from ..evaluation.zero_shot import BOOK_PROMPT, zero_shot
    from ..fileio import write_json
    from ..precision import resolve_device, resolve_precision
    from ..tokenizer import get_tokenizer
    from ..weights import build_model

    args = o.dataset_args()
    records, positive, negative = _split_records(o, args)
    tokenizer = get_tokenizer(o.tokenizer_dir)
    device = resolve_device(o.device)
    gpt = build_model(o.model, o.weights, o.init, seed=args["seed"])
    with tqdm(total=len(records), desc="zero-shot", disable=not o.progress, file=sys.stderr) as bar:
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


def _split_records(o: ZeroShotOptions, args: dict) -> tuple[list, str, str]:
    """The texts to score (the split train makes with these flags), the positive and negative
    class names."""
    from ..data import prepare_dataset

    prepared = prepare_dataset(**args, progress=o.progress)
    classes = list(prepared.label_map.classes)
    if o.positive_label not in classes or len(classes) != 2:
        raise GPTClassifierError(
            f"zero-shot needs two classes including --positive-label {o.positive_label!r} "
            f"(the data has {', '.join(classes)})"
        )
    negative = next(c for c in classes if c != o.positive_label)
    return prepared.split(o.split)[: o.limit], o.positive_label, negative


COMMANDS = [zero_shot]
