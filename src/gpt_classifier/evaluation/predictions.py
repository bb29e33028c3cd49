"""Predictions over a loader and the metrics of one split, for our classifier or the book's; and
the book's zero-shot baseline (chapter 6): the base model's greedy yes/no answers, scored."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import tiktoken
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.readers import Record
from ..distributed import DistContext
from ..errors import GPTClassifierError
from ..generation import generate
from ..model import GPTModel
from ..precision import autocast
from ..tokenizer import EOT_TEXT, encode
from .report import classification_metrics

# Rows per batch of the final report and of ``evaluate``: the same batches, the same numbers.
EVAL_BATCH_SIZE = 32


def unpack_batch(batch: Sequence[Any]) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """``(inputs, targets, lengths or None, owners or None)`` from a book batch or one of ours."""
    return batch[0], batch[1], *(batch[i] if len(batch) > i else None for i in (2, 4))


def classifier_logits(
    model: nn.Module, inputs: Tensor, lengths: Tensor | None = None, owners: Tensor | None = None
) -> Tensor:
    """Class logits ``(batch, num_classes)``, one row per text."""
    if isinstance(model, GPTModel):  # the book: logits of the last output token
        return model(inputs)[:, -1, :]
    windows = {} if owners is None else {"owners": owners}  # a cached-states suffix takes none
    return model(inputs, lengths, **windows)


def predict_loader(
    data_loader: Iterable, model: nn.Module, device: torch.device | str
) -> tuple[Tensor, Tensor, float]:
    """Targets ``(N,)``, class probabilities ``(N, C)`` and the mean loss over examples."""
    targets_all, probs_all, loss_sum = [], [], 0.0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for batch in data_loader:
            inputs, targets, lengths, owners = unpack_batch(batch)
            logits = classifier_logits(model, inputs.to(device), lengths, owners).float()
            loss_sum += F.cross_entropy(logits, targets.to(device), reduction="sum").item()
            targets_all.append(targets.cpu())
            probs_all.append(torch.softmax(logits, dim=-1).cpu())
    model.train(was_training)
    if not targets_all:
        return torch.empty(0, dtype=torch.long), torch.empty(0, 0), float("nan")
    targets = torch.cat(targets_all)
    return targets, torch.cat(probs_all), loss_sum / len(targets)


def evaluate_split(
    model: nn.Module,
    loader: Iterable,
    device: torch.device,
    precision: str,
    classes: Sequence[str],
    ctx: DistContext | None = None,
) -> dict[str, Any]:
    """The one path behind ``metrics.json`` and ``evaluate``; under torchrun, gathers all ranks'."""
    with autocast(device, precision):
        targets, probabilities, loss = predict_loader(loader, model, device)
    if ctx is not None and ctx.enabled:
        gathered = ctx.gather_objects((targets, probabilities, loss * len(targets)))
        parts = [part for part in gathered if len(part[0])]
        targets, probabilities = (torch.cat([part[i] for part in parts]) for i in (0, 1))
        loss = sum(part[2] for part in parts) / len(targets)
    predicted = probabilities.argmax(dim=-1).numpy()
    return classification_metrics(targets.numpy(), predicted, classes, probabilities.numpy(), loss)


BOOK_PROMPT = "Is the following text '{positive}'? Answer with 'yes' or 'no': '{text}'"
_ANSWER = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


@dataclass
class ZeroShotResult:  # its fields in the order of the JSON that ``--output`` writes
    positive_label: str
    negative_label: str
    accuracy: float
    answers: dict[str, int]  # yes / no / unparsed
    num_examples: int
    examples: list[dict[str, Any]]


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
    device, eos_id = torch.device(device), encode(tokenizer, EOT_TEXT)[0]
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
