"""Texts packed end to end in rows, without padding, a block-diagonal mask keeping each text to
itself: the states are those of the texts run alone, to float rounding."""

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import torch

from ..data.batching import plan_batches
from ..model import Packing


@dataclass(frozen=True)
class PackedBatch:
    """``(rows, width)`` ids, positions in each token's text and its text (-1: the row's tail)."""

    input_ids: torch.Tensor
    positions: torch.Tensor
    segments: torch.Tensor
    lengths: torch.Tensor

    def tokens(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The real tokens' ids and positions ``(tokens,)``."""
        real = self.segments >= 0
        return self.input_ids[real], self.positions[real]

    def unpack(self, hidden: torch.Tensor) -> torch.Tensor:
        """Packed states ``(tokens, D)`` -> right-padded ``(texts, longest, D)``, zeros after."""
        padded = hidden.new_zeros(len(self.lengths), int(self.lengths.max()), hidden.shape[-1])
        real = self.segments >= 0
        padded[self.segments[real], self.positions[real]] = hidden
        return padded


def packing_of(segments: torch.Tensor, causal: bool = True) -> Packing:
    """A token sees its own text (its past if ``causal``); a row's tail (-1) too: no empty row."""
    same = segments[:, :, None] == segments[:, None, :]
    if causal:
        same &= torch.ones(same.shape[1:], dtype=torch.bool, device=same.device).tril()
    cells = (segments >= 0).flatten().nonzero()[:, 0]
    return Packing(cells, same[:, None])


def layout(lengths: Sequence[int], row_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``positions`` and ``segments`` of texts packed in order in rows of ``row_tokens`` at most."""
    rows = plan_batches(lengths, row_tokens, packed=True, sort=False)
    width = max(sum(lengths[i] for i in row) for row in rows)
    positions = torch.zeros(len(rows), width, dtype=torch.long)
    segments = torch.full((len(rows), width), -1, dtype=torch.long)
    for row, members in enumerate(rows):
        sizes = [lengths[text] for text in members]
        positions[row, : sum(sizes)] = torch.cat([torch.arange(size) for size in sizes])
        segments[row, : sum(sizes)] = torch.tensor(members).repeat_interleave(torch.tensor(sizes))
    return positions, segments


def pack(encoded: Sequence[Sequence[int]], row_tokens: int, pad_token_id: int) -> PackedBatch:
    """Token ids of several texts packed into rows of at most ``row_tokens`` tokens."""
    if not encoded or any(len(ids) == 0 for ids in encoded):
        raise ValueError("packing needs at least one text and no empty text")
    lengths = [len(ids) for ids in encoded]
    positions, segments = layout(lengths, row_tokens)
    input_ids = torch.full(segments.shape, pad_token_id, dtype=torch.long)
    input_ids[segments >= 0] = torch.tensor(list(chain.from_iterable(encoded)), dtype=torch.long)
    return PackedBatch(input_ids, positions, segments, torch.tensor(lengths))
