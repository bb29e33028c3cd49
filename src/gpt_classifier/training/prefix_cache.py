"""Frozen-prefix cache: run the frozen blocks once per example, train only the rest.

With dropout off and only the last blocks (or the head) trained, ``trf_blocks[:start]`` give the
same states every epoch: computed once, in length-sorted batches, then training and evaluation
run ``trf_blocks[start:]`` on them. Under the causal mask a real token's state ignores the
padding after it, so states are kept unpadded; with a fixed pad length the padded rows are
cached whole (the book's ``last`` pooling reads a pad).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sized
from dataclasses import dataclass

import torch
from torch import nn

from ..classifier import GPTClassifier, first_trainable_block
from ..classifier.pooling import padding_reads
from ..data.batching import plan_batches
from ..data.encoding import Batch, EncodedDataset, pad_token_ids
from ..precision import autocast

DEFAULT_CACHE_BUDGET_BYTES = 4 << 30


@dataclass(frozen=True)
class CachePlan:
    """Whether the cache applies, and from which block training runs when it does."""

    start_block: int
    reason: str = ""  # why the plain path is used, when start_block == 0

    @property
    def enabled(self) -> bool:
        return self.start_block > 0


def plan_prefix_cache(
    model: GPTClassifier, pad_length: int | None, *, never_padded: bool = False
) -> CachePlan:
    """The first block trained (after ``apply_trainable``), or 0 with the reason the cache cannot
    be used. ``never_padded``: no batch is ever padded, every position read is a real token's."""
    start = first_trainable_block(model)
    if start == 0:
        return CachePlan(0, "every block (or the embeddings) is trained")
    if model.cfg.drop_rate > 0:
        return CachePlan(0, f"dropout ({model.cfg.drop_rate}) changes the frozen states each step")
    if never_padded:
        return CachePlan(start)
    why = padding_reads(model.pooling, model.cfg.causal, pad_length).why
    return CachePlan(0, why) if why else CachePlan(start)


class SuffixClassifier(nn.Module):
    """``model`` from ``start_block`` on: its inputs are cached hidden states, not token ids."""

    def __init__(self, model: GPTClassifier, start_block: int) -> None:
        super().__init__()
        self.model = model
        self.start_block = start_block

    def forward(
        self,
        hidden: torch.Tensor,
        lengths: torch.Tensor | None = None,
        owners: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.model.forward_from_hidden(hidden, self.start_block, lengths, owners)


class HiddenStateCache:
    """States entering ``trf_blocks[start_block]`` for every example of one dataset, in one
    ``(total tokens, emb_dim)`` tensor (one allocation, no fragmentation)."""

    def __init__(self, storage: torch.Tensor, offsets: list[int], lengths: list[int]) -> None:
        self.storage = storage
        self.offsets = offsets
        self.lengths = lengths
        self.emb_dim = storage.shape[-1]

    @classmethod
    def packed(cls, storage: torch.Tensor, lengths: list[int]) -> HiddenStateCache:
        """Examples' rows back to back in ``storage``: offsets from the lengths."""
        return cls(storage, [0, *itertools.accumulate(lengths)][: len(lengths)], lengths)

    def state(self, index: int) -> torch.Tensor:
        start = self.offsets[index]
        return self.storage[start : start + self.lengths[index]]

    def batch(self, indices: torch.Tensor, width: int) -> torch.Tensor:
        """``(len(indices), width, emb_dim)``; rows shorter than ``width`` end in zeros (never
        read: pooling uses real positions and causal attention never looks ahead)."""
        out = torch.zeros(len(indices), width, self.emb_dim, dtype=self.storage.dtype)
        for row, index in enumerate(indices.tolist()):
            state = self.state(index)
            out[row, : state.shape[0]] = state[:width]
        return out


@torch.inference_mode()
def build_cache(
    model: GPTClassifier,
    dataset: EncodedDataset,
    start_block: int,
    pad_length: int | None,
    device: torch.device,
    precision: str = "fp32",
    progress: object | None = None,
    *,
    source: HiddenStateCache | None = None,
    source_block: int = 0,
    share: tuple[int, int] | None = None,
) -> HiddenStateCache:
    """``trf_blocks[:start_block]`` once over ``dataset`` (longest first, ~1k tokens a forward),
    each example's states kept (float32, CPU). ``source``: the states after ``source_block``
    blocks, only the later blocks run (bit for bit the same). ``share=(rank, world)``: every
    ``world``-th batch from the ``rank``-th; the other rows stay zero."""
    was_training = model.training
    model.eval()
    lengths = dataset.lengths
    cache = empty_cache(dataset, pad_length, model.cfg.emb_dim)
    storage, offsets, kept = cache.storage, cache.offsets, cache.lengths
    # A real token that sees the padding of its batch: batch equal lengths.
    equal_lengths = padding_reads(model.pooling, model.cfg.causal, pad_length).attended
    batches = plan_batches(lengths, pad_to=pad_length, equal_lengths=equal_lengths)
    for batch_number, chunk in enumerate(batches):
        if share is not None and batch_number % share[1] != share[0]:
            continue  # another rank's batch
        width = pad_length or max(lengths[chunk[0]], 1)
        if source is None:
            inputs = pad_token_ids([dataset.input_ids[index] for index in chunk], width)
        else:
            inputs = source.batch(torch.tensor(chunk), width)
        with autocast(device, precision):
            hidden = model.gpt.hidden_states(inputs.to(device), source_block, start_block)
        hidden = hidden.float().cpu()
        for row, index in enumerate(chunk):
            storage[offsets[index] : offsets[index] + kept[index]] = hidden[row, : kept[index]]
        if progress is not None:
            progress.update(sum(kept[i] for i in chunk))  # type: ignore[attr-defined]
    model.train(was_training)
    return cache


def empty_cache(dataset: EncodedDataset, pad_length: int | None, emb_dim: int) -> HiddenStateCache:
    """A cache of ``dataset``'s layout holding zeros (each example's rows, back to back)."""
    kept = [pad_length if pad_length else length for length in dataset.lengths]
    return HiddenStateCache.packed(torch.zeros(sum(kept), emb_dim), kept)


class CachedLoader:
    """``token_loader``'s batches (same sampler: same examples, order and steps) with the token
    ids swapped for the cached states of their rows."""

    def __init__(self, token_loader: Sized, cache: HiddenStateCache) -> None:
        self.token_loader = token_loader
        self.cache = cache

    def __len__(self) -> int:
        return len(self.token_loader)

    def __iter__(self) -> Iterator[Batch]:
        for batch in self.token_loader:  # type: ignore[attr-defined]
            hidden = self.cache.batch(batch.indices, batch.input_ids.shape[1])
            yield Batch(hidden, batch.labels, batch.lengths, batch.indices, batch.owners)


def cached_positions(dataset: EncodedDataset, pad_length: int | None) -> int:
    """Positions the cache keeps: every padded one under a fixed pad length (the book's ``last``
    pooling reads one), else each text's real tokens."""
    return pad_length * len(dataset) if pad_length else sum(dataset.lengths)
