"""Frozen-prefix cache: with dropout off and only the last blocks trained, the frozen blocks give
the same states every epoch: computed once, block by block over ~1k-token slabs of whole texts
(one frozen block resident at a time), then training runs ``trf_blocks[start:]`` on them."""

from __future__ import annotations

import errno
import itertools
import tempfile
from collections.abc import Iterator, Sized
from dataclasses import dataclass
from typing import BinaryIO

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..classifier import GPTClassifier, first_trainable_block
from ..classifier.packing import layout, packing_of
from ..classifier.pooling import padding_reads
from ..data.batching import TOKENS_PER_PASS, plan_batches
from ..data.encoding import Batch, EncodedDataset, pad_token_ids
from ..errors import GPTClassifierError
from ..precision import autocast
from ..weights import lazy_weights_of
from .memory import release_free_memory

DEFAULT_CACHE_BUDGET_BYTES = 4 << 30


@dataclass(frozen=True)
class CachePlan:
    start_block: int  # the first block trained; 0: the cache does not apply
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
    why = "" if never_padded else padding_reads(model.pooling, model.cfg.causal, pad_length).why
    return CachePlan(0, why) if why else CachePlan(start)


class SuffixClassifier(nn.Module):
    """``model`` from ``start_block`` on: its inputs are cached hidden states, not token ids."""

    def __init__(self, model: GPTClassifier, start_block: int) -> None:
        super().__init__()
        self.model, self.start_block = model, start_block

    def forward(
        self, hidden: Tensor, lengths: Tensor | None = None, owners: Tensor | None = None
    ) -> Tensor:
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
        return self._transfer(row, torch.empty(count, self.emb_dim), read=True)

    def write(self, row: int, states: torch.Tensor) -> None:
        self._transfer(row, states.detach().float().contiguous(), read=False)

    def _transfer(self, row: int, states: torch.Tensor, *, read: bool) -> torch.Tensor:
        view = memoryview(states.numpy()).cast("B")
        position = self.start + row * self.emb_dim * 4
        try:
            while view:
                self.file.seek(position)
                done = self.file.readinto(view) if read else self.file.write(view)
                if not done:
                    raise OSError(errno.EIO, "the states file ended early")
                view, position = view[done:], position + done
        except OSError as exc:
            raise GPTClassifierError(
                f"cannot {'read' if read else 'write'} the frozen-prefix states in {self.where}: "
                f"{exc.strerror or exc}; set TMPDIR to a folder with room, or --no-prefix-cache"
            ) from None
        return states

    def all(self) -> torch.Tensor:
        return self.read(0, self.rows)

    def chunks(self, rows: int = 4096) -> Iterator[tuple[int, torch.Tensor]]:
        """``(first row, rows)`` pieces of the states, in order, ``rows`` at a time."""
        for row in range(0, self.rows, rows):
            yield row, self.read(row, min(rows, self.rows - row))

    def state(self, index: int) -> torch.Tensor:
        return self.read(self.offsets[index], self.lengths[index])

    def scatter(self, indices: list[int], states: torch.Tensor) -> None:
        """The examples' rows, one after another in ``states``, written back."""
        sizes = [self.lengths[index] for index in indices]
        for index, rows in zip(indices, states.split(sizes), strict=True):
            self.write(self.offsets[index], rows)


def _slabs(lengths: list[int], share: tuple[int, int]) -> list[tuple[list[int], Tensor, Tensor]]:
    """Whole texts (longest first) packed into ~1k tokens (``packing.layout``): the texts, each
    token's position in its text and the segments (the mask is made per pass, as it is width x
    width); ``share=(rank, world)``: every ``world``-th slab from the ``rank``-th."""
    slabs = []
    for texts in plan_batches(lengths, packed=True)[share[0] :: share[1]]:
        positions, segments = layout([lengths[text] for text in texts], lengths[texts[0]])
        slabs.append((texts, positions[segments >= 0], segments))
    return slabs


@torch.inference_mode()
def build_caches(
    model: GPTClassifier,
    datasets: dict[str, EncodedDataset],
    pad_lengths: dict[str, int | None],
    start_block: int,
    device: torch.device,
    precision: str = "fp32",
    *,
    progress: object | None = None,
    starting_states: dict[str, tuple[int, HiddenStateCache]] | None = None,
    share: tuple[int, int] = (0, 1),
) -> dict[str, HiddenStateCache]:
    """The states entering ``trf_blocks[start_block]`` for every text (float32, in files), one
    frozen block at a time: a lazy model's block is materialised, run over every text and
    released, so only one is ever resident. ``progress`` (tqdm) advances by tokens.
    ``starting_states[name]``, where given, is ``(j, states after j blocks)``: that dataset starts
    at block ``j``. ``share=(rank, world)``: this rank's slabs only, the other rows stay zero."""
    gpt, lazy = model.gpt, lazy_weights_of(model)
    was_training = model.training
    model.eval()
    emb_dim = gpt.cfg.emb_dim
    kept = {name: kept_lengths(datasets[name], pad_lengths[name]) for name in datasets}
    caches = {name: HiddenStateCache.zeros(lengths, emb_dim) for name, lengths in kept.items()}
    slabs = {name: _slabs(cache.lengths, share) for name, cache in caches.items()}
    first_block = dict.fromkeys(caches, 0)
    for name, cache in caches.items():
        found = (starting_states or {}).get(name)
        if found is not None and found[1].lengths == cache.lengths:
            first_block[name] = found[0]
            for row, states in found[1].chunks():
                cache.write(row, states)
    from_ids = [name for name in caches if first_block[name] == 0]
    _embed(model, {name: datasets[name] for name in from_ids}, caches, slabs, device)
    for index in range(min(first_block.values(), default=start_block), start_block):
        if lazy is not None:
            lazy.materialize(f"trf_blocks.{index}")
        block = gpt.trf_blocks[index]
        for name in [name for name in caches if index >= first_block[name]]:
            for texts, _, segments in slabs[name]:
                x = torch.cat([caches[name].state(text) for text in texts]).to(device)
                tokens = x.shape[0]
                # padded with zero rows to ~1k: every slab's matmuls have one shape (oneDNN
                # keeps a kernel, and memory, per shape)
                x = F.pad(x, (0, 0, 0, max(TOKENS_PER_PASS - tokens, 0)))
                with autocast(device, precision):
                    x = block(x, packing_of(segments.to(device), block.att.causal))
                caches[name].scatter(texts, x[:tokens].float().cpu())
                if progress is not None:
                    progress.update(tokens)  # type: ignore[attr-defined]
        if lazy is not None:
            del block
            lazy.release(f"trf_blocks.{index}")
            release_free_memory()  # the block's weights and activations: back to the OS now
    model.train(was_training)
    return caches


def _embed(
    model: GPTClassifier,
    datasets: dict[str, EncodedDataset],
    caches: dict[str, HiddenStateCache],
    slabs: dict[str, list[tuple[list[int], Tensor, Tensor]]],
    device: torch.device,
) -> None:
    """Each text's embeddings into its cache (a lazy model reads only the used tokens' rows)."""
    gpt, lazy = model.gpt, lazy_weights_of(model)

    def kept_ids(name: str, index: int) -> torch.Tensor:  # the ids of the positions kept
        return pad_token_ids([datasets[name].input_ids[index]], caches[name].lengths[index])[0]

    every = [kept_ids(name, i) for name, dataset in datasets.items() for i in range(len(dataset))]
    if not every:
        return
    used = torch.unique(torch.cat(every))
    del every
    if lazy is not None:
        rows = lazy.embedding_rows("tok_emb", used)
        lazy.materialize("pos_emb")
    else:
        rows = gpt.tok_emb(used.to(device))
    row_of = torch.zeros(gpt.cfg.vocab_size, dtype=torch.long)
    row_of[used] = torch.arange(len(used))
    for name in datasets:
        for texts, positions, _ in slabs[name]:
            tokens = torch.cat([kept_ids(name, text) for text in texts])
            states = rows[row_of[tokens].to(rows.device)] + gpt.pos_emb(positions.to(device))
            caches[name].scatter(texts, states.float().cpu())
    if lazy is not None:
        lazy.release("pos_emb")
    del rows, row_of
    release_free_memory()


@dataclass
class CachedLoader:
    """``token_loader``'s batches (same sampler: same examples, order and steps) with the token
    ids swapped for the cached states of their rows."""

    token_loader: Sized
    cache: HiddenStateCache

    def __len__(self) -> int:
        return len(self.token_loader)

    def __iter__(self) -> Iterator[Batch]:
        cache = self.cache
        for batch in self.token_loader:  # type: ignore[attr-defined]
            # rows shorter than the batch's end in zeros (never read: pooling uses real positions
            # and causal attention never looks ahead)
            hidden = torch.zeros(*batch.input_ids.shape, cache.emb_dim)
            for row, index in enumerate(batch.indices.tolist()):
                kept = min(cache.lengths[index], hidden.shape[1])
                hidden[row, :kept] = cache.read(cache.offsets[index], kept)
            yield Batch(hidden, batch.labels, batch.lengths, batch.indices, batch.owners)


def kept_lengths(dataset: EncodedDataset, pad_length: int | None) -> list[int]:
    """The positions of each text the cache keeps: every padded one under a fixed pad length
    (the book's ``last`` pooling reads one), else its real tokens."""
    return [pad_length or length for length in dataset.lengths]
