"""Frozen-prefix cache: run the frozen blocks once per example, train only the rest.

With dropout off and only the last blocks (or the head) trained, ``trf_blocks[:start]`` give the
same states every epoch: computed once, in length-sorted batches, then training and evaluation
run ``trf_blocks[start:]`` on them. Under the causal mask a real token's state ignores the
padding after it, so states are kept unpadded; with a fixed pad length the padded rows are
cached whole (the book's ``last`` pooling reads a pad).
"""

from __future__ import annotations

import errno
import itertools
import tempfile
from collections.abc import Iterator, Sized
from dataclasses import dataclass
from typing import BinaryIO

import torch
from torch import nn

from ..classifier import GPTClassifier, first_trainable_block
from ..classifier.pooling import padding_reads
from ..data.batching import plan_batches
from ..data.encoding import Batch, EncodedDataset, pad_token_ids
from ..errors import GPTClassifierError
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
    """States entering ``trf_blocks[start_block]`` for every example of one dataset: float32 rows
    of ``emb_dim``, each example's back to back, in a file (a temporary one, or a disk-cache entry
    read in place) rather than in memory: they would be most of a run's memory (GPT-2's 115k SMS
    positions are 355 MB) while a training step reads 8 texts' rows."""

    def __init__(
        self, file: BinaryIO, lengths: list[int], emb_dim: int, start: int = 0, where: str = ""
    ) -> None:
        self.file, self.lengths, self.emb_dim, self.start = file, lengths, emb_dim, start
        self.offsets = [0, *itertools.accumulate(lengths)][: len(lengths)]
        self.rows = sum(lengths)
        self.where = where or tempfile.gettempdir()

    @classmethod
    def zeros(cls, lengths: list[int], emb_dim: int) -> HiddenStateCache:
        """A temporary file of zero states (deleted when closed); ``TMPDIR`` chooses its folder."""
        cache = cls(tempfile.TemporaryFile(buffering=0), lengths, emb_dim)  # noqa: SIM115
        cache.file.truncate(cache.rows * emb_dim * 4)
        return cache

    @classmethod
    def of(cls, storage: torch.Tensor, lengths: list[int]) -> HiddenStateCache:
        cache = cls.zeros(lengths, storage.shape[-1])
        cache.write(0, storage)
        return cache

    def read(self, row: int, count: int) -> torch.Tensor:
        """Rows ``row`` to ``row + count`` as a ``(count, emb_dim)`` tensor."""
        states = torch.empty(count, self.emb_dim)
        self._transfer(row, states, write=False)
        return states

    def write(self, row: int, states: torch.Tensor) -> None:
        self._transfer(row, states.detach().float().contiguous(), write=True)

    def _transfer(self, row: int, states: torch.Tensor, *, write: bool) -> None:
        view = memoryview(states.numpy()).cast("B")
        position = self.start + row * self.emb_dim * 4
        try:
            while view:
                self.file.seek(position)
                done = self.file.write(view) if write else self.file.readinto(view)
                if not done:
                    raise OSError(errno.EIO, "the states file ended early")
                view, position = view[done:], position + done
        except OSError as exc:
            raise GPTClassifierError(
                f"cannot {'write' if write else 'read'} the frozen-prefix states in {self.where}: "
                f"{exc.strerror or exc}; set TMPDIR to a folder with room, or --no-prefix-cache"
            ) from None

    def all(self) -> torch.Tensor:
        return self.read(0, self.rows)

    def chunks(self, rows: int = 4096) -> Iterator[tuple[int, torch.Tensor]]:
        """``(first row, rows)`` pieces of the states, in order, ``rows`` at a time."""
        for row in range(0, self.rows, rows):
            yield row, self.read(row, min(rows, self.rows - row))

    def copy_from(self, other: HiddenStateCache) -> None:
        for row, states in other.chunks():
            self.write(row, states)

    def state(self, index: int) -> torch.Tensor:
        return self.read(self.offsets[index], self.lengths[index])

    def gather(self, indices: list[int]) -> torch.Tensor:
        """The examples' rows one after another ``(their tokens, emb_dim)``."""
        return torch.cat([self.state(index) for index in indices])

    def scatter(self, indices: list[int], states: torch.Tensor) -> None:
        """``gather``'s inverse: each example's rows written back."""
        sizes = [self.lengths[index] for index in indices]
        for index, rows in zip(indices, states.split(sizes), strict=True):
            self.write(self.offsets[index], rows)

    def batch(self, indices: torch.Tensor, width: int) -> torch.Tensor:
        """``(len(indices), width, emb_dim)``; rows shorter than ``width`` end in zeros (never
        read: pooling uses real positions and causal attention never looks ahead)."""
        out = torch.zeros(len(indices), width, self.emb_dim)
        for row, index in enumerate(indices.tolist()):
            kept = min(self.lengths[index], width)
            out[row, :kept] = self.read(self.offsets[index], kept)
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
    each example's states kept (float32, in a file). ``source``: the states after ``source_block``
    blocks, only the later blocks run (bit for bit the same). ``share=(rank, world)``: every
    ``world``-th batch from the ``rank``-th; the other rows stay zero."""
    was_training = model.training
    model.eval()
    lengths = dataset.lengths
    cache = empty_cache(dataset, pad_length, model.cfg.emb_dim)
    kept = cache.lengths
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
        cache.scatter(chunk, torch.cat([hidden[row, : kept[i]] for row, i in enumerate(chunk)]))
        if progress is not None:
            progress.update(sum(kept[i] for i in chunk))  # type: ignore[attr-defined]
    model.train(was_training)
    return cache


def empty_cache(dataset: EncodedDataset, pad_length: int | None, emb_dim: int) -> HiddenStateCache:
    """A cache of ``dataset``'s layout holding zeros (each example's rows, back to back)."""
    kept = [pad_length if pad_length else length for length in dataset.lengths]
    return HiddenStateCache.zeros(kept, emb_dim)


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
