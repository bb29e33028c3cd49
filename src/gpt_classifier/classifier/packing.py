"""Texts of different lengths in one forward pass without padding: packed end to end in rows.

A batch padded to its longest text spends most of its work on padding when the lengths differ,
as they do in a server's batch of whatever requests arrived together (32 SMS texts average 23
tokens, the longest of them often 60-100). Packed, the texts sit one after another in rows of
at most ``row_tokens`` tokens, each token gets its position within its own text, and a
block-diagonal causal mask lets each text attend only to itself: the hidden states are those
of the texts run alone, up to float rounding, for the price of attention over whole rows
(small next to the matmuls at these sizes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..data.batching import plan_batches


@dataclass(frozen=True)
class PackedBatch:
    """Texts packed into rows: ``input_ids``, ``positions`` (each token's position in its own
    text) and ``segments`` (the index of its text) are ``(rows, width)``; a row's unused tail
    holds ``pad_token_id`` at position 0 in segment -1. ``lengths`` ``(texts,)``."""

    input_ids: torch.Tensor
    positions: torch.Tensor
    segments: torch.Tensor
    lengths: torch.Tensor

    def attention_mask(self) -> torch.Tensor:
        """``(rows, 1, width, width)``, True where a token may attend: earlier tokens of its
        own text. The padding tail forms a "text" of its own, so no query row is empty."""
        width = self.segments.shape[1]
        same = self.segments[:, :, None] == self.segments[:, None, :]
        causal = torch.ones(width, width, dtype=torch.bool, device=same.device).tril()
        return (same & causal)[:, None]

    def unpack(self, hidden: torch.Tensor) -> torch.Tensor:
        """Packed states ``(rows, width, D)`` -> right-padded ``(texts, longest, D)`` (zeros
        after each text's end)."""
        texts, longest = len(self.lengths), int(self.lengths.max())
        padded = hidden.new_zeros(texts, longest, hidden.shape[-1])
        real = self.segments >= 0  # each real token lands at (its text, its position)
        padded[self.segments[real], self.positions[real]] = hidden[real.to(hidden.device)]
        return padded


def pack_rows(lengths: Sequence[int], row_tokens: int) -> list[list[int]]:
    """Texts (by index, in order) per row of at most ``row_tokens`` tokens; a longer text gets a
    row of its own."""
    return plan_batches(lengths, row_tokens, packed=True, sort=False)


def pack(encoded: Sequence[Sequence[int]], row_tokens: int, pad_token_id: int) -> PackedBatch:
    """Token ids of several texts packed into rows of at most ``row_tokens`` tokens."""
    if not encoded or any(len(ids) == 0 for ids in encoded):
        raise ValueError("packing needs at least one text and no empty text")
    lengths = [len(ids) for ids in encoded]
    rows = pack_rows(lengths, row_tokens)
    width = max(sum(lengths[i] for i in row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    positions = torch.zeros(len(rows), width, dtype=torch.long)
    segments = torch.full((len(rows), width), -1, dtype=torch.long)
    for row, members in enumerate(rows):
        column = 0
        for text in members:
            length = lengths[text]
            span = slice(column, column + length)
            input_ids[row, span] = torch.as_tensor(encoded[text], dtype=torch.long)
            positions[row, span] = torch.arange(length)
            segments[row, span] = text
            column += length
    return PackedBatch(input_ids, positions, segments, torch.tensor(lengths))
