"""Why this label: each token's log-odds lost when it is deleted (docs/design.md, Explanations)."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..classifier.pooling import combine_probabilities
from ..data.windows import chunk_window_starts, reads_all, text_windows
from ..tokenizer import encode
from .predict import TextClassifier, run_inputs


@dataclass(frozen=True)
class TokenScore:
    token: str  # the token's piece of the text; the pieces concatenate to the text (as read)
    token_id: int
    score: float  # log-odds of the predicted class lost when the token is deleted
    probability_without: float  # the predicted class's probability without this token


@dataclass(frozen=True)
class Explanation:
    label: str
    probability: float
    probabilities: dict[str, float]
    tokens: list[TokenScore]
    truncated: bool  # the text was cut to the model's max length: only the part read is scored
    method: str = "occlusion"


@dataclass(frozen=True)
class Faithfulness:
    texts: int  # those checked: with more than ``k`` tokens
    k: int
    top_drop: float  # mean fall of the predicted class's probability, top-k tokens deleted
    random_drop: float  # the same, k random tokens deleted (mean over ``draws`` per text)
    top_wins: float  # share of texts where deleting the top k lowers it more than random k
    draws: int


def occlusion_inputs(ids: Sequence[int], pad_token_id: int) -> list[list[int]]:
    """The text, then the text with each token deleted in turn (one token: ``[pad_token_id]``)."""
    ids = list(ids)
    return [ids] + [ids[:i] + ids[i + 1 :] or [pad_token_id] for i in range(len(ids))]


def log_odds(probability: float) -> float:
    p = min(max(probability, 1e-12), 1 - 1e-12)  # finite when a float32 rounds to 0 or 1
    return math.log(p) - math.log1p(-p)


def text_occlusion_inputs(classifier: TextClassifier, ids: Sequence[int]) -> list[list[int]]:
    """``occlusion_inputs`` of each window the run reads of a text's token ids, in order."""
    windows = text_windows(ids, classifier.max_tokens, classifier.long_text)
    return [x for window in windows for x in occlusion_inputs(window, classifier.info.pad_token_id)]


def explanation_from_probabilities(
    classifier: TextClassifier, ids: Sequence[int], probabilities: torch.Tensor, truncated: bool
) -> Explanation:
    """Scores from the probabilities of ``text_occlusion_inputs`` (a server batches them)."""
    ids, length, reading = list(ids), classifier.max_tokens, classifier.long_text
    if len(ids) > length and reading.mode == "chunks":
        # Row 0 the text, row 1 + i the text without the i-th position read: each window holding
        # it replaced by its variant without it (a window's rows: itself, then without each of
        # its `length` tokens).
        starts = chunk_window_starts(len(ids), length, reading)
        read = sorted({p for start in starts for p in range(start, start + length)})
        rows = [
            k * (length + 1) + (1 + t - start if start <= t < start + length else 0)
            for t in [-1, *read]
            for k, start in enumerate(starts)
        ]
        owners = torch.arange(len(read) + 1).repeat_interleave(len(starts))
        probabilities = combine_probabilities(probabilities[rows], owners)
    else:
        ids = text_windows(ids, length, reading)[0]
        read = list(range(len(ids)))
    full = classifier.predictions(probabilities[:1])[0]
    base = log_odds(full.probability)
    without = probabilities[1:, classifier.classes.index(full.label)].tolist()
    # Each token's piece of the decoded text: a character split across tokens (an emoji) goes
    # to the token that completes it, never shown twice or as a replacement character.
    text, offsets = classifier.tokenizer.decode_with_offsets(ids)
    ends = list(offsets[1:]) + [len(text)]
    tokens = [
        TokenScore(text[offsets[t] : ends[t]], ids[t], base - log_odds(p), p)
        for t, p in zip(read, without, strict=True)
    ]
    return Explanation(full.label, full.probability, full.probabilities, tokens, truncated)


def explain(
    classifier: TextClassifier, texts: str | Sequence[str], batch_size: int = 64
) -> Explanation | list[Explanation]:
    """One ``Explanation`` for one text, a list for a list; all the texts share the batches."""
    if isinstance(texts, str):
        return explain(classifier, [texts], batch_size)[0]
    classifier.encode_windows(texts)  # checks the texts
    # Each text's own ids: a chunks run's windows of it are recombined from them.
    encoded = [encode(classifier.tokenizer, text) for text in texts]
    inputs = [text_occlusion_inputs(classifier, ids) for ids in encoded]
    probabilities = run_inputs(classifier, [x for group in inputs for x in group], batch_size)
    groups = probabilities.split([len(group) for group in inputs])
    reading = (classifier.max_tokens, classifier.long_text)
    return [
        explanation_from_probabilities(classifier, ids, rows, not reads_all(len(ids), *reading))
        for ids, rows in zip(encoded, groups, strict=True)
    ]


def deletion_faithfulness(
    classifier: TextClassifier, texts: Sequence[str], *, k: int = 3, draws: int = 5, seed: int = 0
) -> Faithfulness:
    """How much deleting each text's ``k`` top-scored tokens lowers the predicted class's
    probability, against ``k`` random ones (``draws`` times): for a faithful explanation, more."""
    if k < 1 or draws < 1:
        raise ValueError("k and draws must be positive")
    rng = random.Random(seed)
    kept, inputs = [], []
    for explanation in explain(classifier, texts):
        ids = [token.token_id for token in explanation.tokens]
        if len(ids) <= k:
            continue
        by_score = sorted(range(len(ids)), key=lambda i: -explanation.tokens[i].score)
        deletions = [by_score[:k]] + [rng.sample(range(len(ids)), k) for _ in range(draws)]
        inputs += [[t for i, t in enumerate(ids) if i not in gone] for gone in deletions]
        kept.append(explanation)
    if not kept:
        raise ValueError(f"no text has more than {k} tokens")
    probabilities = run_inputs(classifier, inputs).view(len(kept), draws + 1, -1)
    top_drops, random_drops = [], []
    for explanation, rows in zip(kept, probabilities, strict=True):
        after = rows[:, classifier.classes.index(explanation.label)].tolist()
        top_drops.append(explanation.probability - after[0])
        random_drops.append(sum(explanation.probability - p for p in after[1:]) / draws)
    wins = sum(top > other for top, other in zip(top_drops, random_drops, strict=True))
    n = len(kept)
    return Faithfulness(n, k, sum(top_drops) / n, sum(random_drops) / n, wins / n, draws)
