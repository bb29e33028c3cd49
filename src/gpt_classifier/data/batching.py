"""Texts grouped by length into forward passes under one token budget: every planner of the
package (loaders' buckets, prefix slabs, ``classify``, packed rows, the server) calls
:func:`plan_batches`."""

from __future__ import annotations

from collections.abc import Sequence

# Tokens per forward pass: ~1k-row matmuls suit the CPU (~90 % of fp32 peak on 2 cores already,
# cache-sized); larger passes only cost memory.
TOKENS_PER_PASS = 1024
# What one padded pass costs beyond its tokens, in tokens: for GPT-2 124M on a CPU core a
# one-token pass takes as long as ~75 tokens of a large one (every weight is read once a pass).
PASS_COST_TOKENS = 75


def plan_batches(
    lengths: Sequence[int],
    max_tokens: float = TOKENS_PER_PASS,
    *,
    max_texts: int | None = None,
    pad_to: int | None = None,
    packed: bool = False,
    equal_lengths: bool = False,
    sort: bool = True,
) -> list[list[int]]:
    """Text indices in batches under ``max_tokens`` (``packed``: real tokens, else rows padded to
    ``pad_to`` or the first text), longest first (ties by index; ``sort=False``: in order)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i]) if sort else range(len(lengths))
    batches: list[list[int]] = []
    tokens = 0
    for index in order:
        length = lengths[index]
        batch = batches[-1] if batches else []
        if packed:
            after = tokens + length
        else:
            after = (len(batch) + 1) * max(pad_to or (lengths[batch[0]] if batch else length), 1)
        room = max_texts is None or len(batch) < max_texts
        same = not equal_lengths or not batch or lengths[batch[0]] == length
        if batch and room and same and after <= max_tokens:
            batch.append(index)
            tokens = after
        else:
            batches.append([index])
            tokens = length
    return batches


def best_padded_batch(lengths: Sequence[int], max_texts: int, max_tokens: int) -> list[int]:
    """The padded batch with text 0 that does the most real tokens per unit of work (a pass costs
    its padded tokens plus ``PASS_COST_TOKENS``)."""
    order = sorted(range(len(lengths)), key=lambda row: lengths[row])
    best, best_score = [0], -1.0
    for width in sorted({n for n in lengths if n >= lengths[0]}):
        room = max(1, min(max_texts, max_tokens // width))
        fitting = [row for row in order if lengths[row] <= width][-room:]
        if 0 not in fitting:
            fitting = fitting[1:] + [0]  # the oldest text goes instead of the shortest
        padded = len(fitting) * max(lengths[row] for row in fitting)
        score = sum(lengths[row] for row in fitting) / (PASS_COST_TOKENS + padded)
        if score > best_score:
            best, best_score = fitting, score
    return best
