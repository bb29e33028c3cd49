"""The frozen prefix one block at a time for a lazy model: every text is embedded, then each
frozen block is materialised, run over every text and released (peak: one block and one slab,
the states being in a file; ``build_cache`` holds every block). Texts are packed whole, longest
first, into ~1k-token slabs on the blocks' packed path: ``build_cache``'s states to float
rounding (a fixed pad length's padding computed like real tokens, as there).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..classifier import GPTClassifier
from ..classifier.packing import layout, packing_of
from ..classifier.pooling import padding_reads
from ..data.batching import TOKENS_PER_PASS, plan_batches
from ..data.encoding import EncodedDataset, pad_token_ids
from ..model import TransformerBlock
from ..precision import autocast
from ..weights import LazyWeights
from .memory import release_free_memory
from .prefix_cache import HiddenStateCache, empty_cache


def streaming_applies(model: GPTClassifier, pad_lengths: dict[str, int | None]) -> bool:
    """Zeros may stand in for padding states only where no real token attends to them."""
    reads = [padding_reads(model.pooling, model.cfg.causal, pad) for pad in pad_lengths.values()]
    return not any(r.attended for r in reads)


@dataclass
class _Slab:
    """Whole texts (``texts``, longest first) packed into ~1k tokens: each token's position in
    its text and the texts' ``segments`` in rows (``packing.layout``)."""

    texts: list[int]
    positions: torch.Tensor  # (tokens,)
    segments: torch.Tensor  # (rows, width); the mask is made per pass, as it is width x width


def _slabs(cache: HiddenStateCache) -> list[_Slab]:
    """As many whole texts per slab as fit in ~1k tokens; within a slab, rows as wide as its
    longest text."""
    slabs = []
    for texts in plan_batches(cache.lengths, packed=True):
        lengths = [cache.lengths[i] for i in texts]
        positions, segments = layout(lengths, lengths[0])
        slabs.append(_Slab(texts, positions[segments >= 0], segments))
    return slabs


def _block_on_slab(block: TransformerBlock, x: torch.Tensor, slab: _Slab) -> torch.Tensor:
    """The block's packed path on a slab's tokens ``(tokens, emb_dim)``, padded with zero rows
    to ~1k: every slab's matmuls have one shape (oneDNN keeps a kernel, and memory, per shape)."""
    tokens = x.shape[0]
    x = F.pad(x, (0, 0, 0, max(TOKENS_PER_PASS - tokens, 0)))
    return block(x, packing_of(slab.segments, block.att.causal))[:tokens]


@torch.inference_mode()
def build_caches_streamed(
    model: GPTClassifier,
    lazy: LazyWeights,
    datasets: dict[str, EncodedDataset],
    pad_lengths: dict[str, int | None],
    start_block: int,
    precision: str = "fp32",
    progress: object | None = None,
    starting_states: Callable[[str], tuple[int, HiddenStateCache] | None] | None = None,
) -> dict[str, HiddenStateCache]:
    """The states entering ``trf_blocks[start_block]`` for every text (CPU, float32), one frozen
    block in memory at a time; ``progress`` (tqdm) advances by tokens. ``starting_states(name)``
    may give ``(j, states after j blocks)``: that dataset starts at block ``j``."""
    gpt, device = model.gpt, torch.device("cpu")
    caches = {
        name: empty_cache(dataset, pad_lengths[name], gpt.cfg.emb_dim)
        for name, dataset in datasets.items()
    }
    slabs = {name: _slabs(cache) for name, cache in caches.items()}
    first_block = dict.fromkeys(caches, 0)
    for name, cache in caches.items():
        found = starting_states(name) if starting_states else None
        if found is not None and found[1].lengths == cache.lengths:
            first_block[name] = found[0]
            cache.copy_from(found[1])
        del found
    from_ids = {name: d for name, d in datasets.items() if first_block[name] == 0 and len(d)}

    if from_ids:
        _embed(model, lazy, from_ids, caches, slabs)

    for index in range(min(first_block.values()), start_block):
        module_name = f"trf_blocks.{index}"
        lazy.materialize(module_name)
        block = gpt.trf_blocks[index].eval()
        for name, cache in caches.items():
            if index < first_block[name]:
                continue
            for slab in slabs[name]:
                x = cache.gather(slab.texts)
                with autocast(device, precision):
                    x = _block_on_slab(block, x, slab)
                cache.scatter(slab.texts, x)
                if progress is not None:
                    progress.update(len(x))  # type: ignore[attr-defined]
        del block
        lazy.release(module_name)
        release_free_memory()  # the block's weights and activations: back to the OS now
    return caches


def _embed(
    model: GPTClassifier,
    lazy: LazyWeights,
    datasets: dict[str, EncodedDataset],
    caches: dict[str, HiddenStateCache],
    slabs: dict[str, list[_Slab]],
) -> None:
    """Each text's embeddings into its cache: only the rows of the tokens present are read."""
    gpt = model.gpt

    def kept_ids(name: str, index: int) -> torch.Tensor:  # the ids of the positions kept
        return pad_token_ids([datasets[name].input_ids[index]], caches[name].lengths[index])[0]

    every = [kept_ids(name, i) for name, dataset in datasets.items() for i in range(len(dataset))]
    used = torch.unique(torch.cat(every))
    del every
    rows = lazy.embedding_rows("tok_emb", used)
    row_of = torch.zeros(gpt.cfg.vocab_size, dtype=torch.long)
    row_of[used] = torch.arange(len(used))
    lazy.materialize("pos_emb")
    for name in datasets:
        for slab in slabs[name]:
            tokens = torch.cat([kept_ids(name, index) for index in slab.texts])
            caches[name].scatter(slab.texts, rows[row_of[tokens]] + gpt.pos_emb(slab.positions))
    lazy.release("pos_emb")
    del rows, row_of
    release_free_memory()
