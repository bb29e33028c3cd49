"""The book's zero-shot baseline (chapter 6): the base model's greedy yes/no answers, scored."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import tiktoken
import torch

from ..data.readers import Record
from ..errors import GPTClassifierError
from ..generation import generate
from ..model import GPTModel
from ..precision import autocast
from ..tokenizer import EOT_TEXT, encode

BOOK_PROMPT = "Is the following text '{positive}'? Answer with 'yes' or 'no': '{text}'"
_ANSWER = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


@dataclass
class ZeroShotResult:
    """Its fields in the order of the JSON that ``--output`` writes."""

    positive_label: str
    negative_label: str
    accuracy: float
    answers: dict[str, int]  # yes / no / unparsed
    num_examples: int
    examples: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_answer(generated: str) -> str | None:
    """``"yes"``, ``"no"`` or ``None``: the first yes/no word of the answer."""
    match = _ANSWER.search(generated)
    return match.group(1).lower() if match else None


def zero_shot(
    model: GPTModel,
    tokenizer: tiktoken.Encoding,
    records: Sequence[Record],
    positive: str,
    negative: str,
    *,
    prompt: str = BOOK_PROMPT,
    max_new_tokens: int = 5,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    on_example: Callable[[], None] | None = None,
) -> ZeroShotResult:
    """Greedy answers to ``prompt``: "yes" predicts ``positive``, "no" ``negative``."""
    if "{text}" not in prompt:
        raise GPTClassifierError("the prompt template must contain {text}")
    context = model.cfg.context_length
    if not 1 <= max_new_tokens < context:
        raise GPTClassifierError(
            f"max_new_tokens must be between 1 and {context - 1}, leaving room for the prompt "
            f"in the model's context of {context} tokens (got {max_new_tokens})"
        )
    device = torch.device(device)
    eos_id = encode(tokenizer, EOT_TEXT)[0]
    meaning = {"yes": positive, "no": negative}
    answers: Counter = Counter()
    examples = []
    for record in records:
        if record.label not in (positive, negative):
            raise GPTClassifierError(
                f"{record.where}: label {record.label!r} is neither {positive!r} nor {negative!r}"
            )
        ids = encode(tokenizer, prompt.format(positive=positive, text=record.text))
        ids = ids[-(context - max_new_tokens) :]  # keep the question's end: it holds the ask
        idx = torch.tensor([ids], device=device)
        with autocast(device, precision):
            out = generate(model, idx, max_new_tokens, context, eos_id=eos_id)
        generated = tokenizer.decode(out[0, len(ids) :].tolist())
        answer = parse_answer(generated) or "unparsed"
        answers[answer] += 1
        example = {"text": record.text, "label": record.label, "generated": generated}
        examples.append({**example, "predicted": meaning.get(answer)})
        if on_example is not None:
            on_example()
    correct = sum(example["predicted"] == example["label"] for example in examples)
    accuracy = correct / len(records) if records else float("nan")
    return ZeroShotResult(positive, negative, accuracy, dict(answers), len(examples), examples)
