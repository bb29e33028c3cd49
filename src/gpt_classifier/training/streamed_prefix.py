"""The frozen prefix computed one block at a time, for a model whose weights are lazy.

``prefix_cache.build_cache`` runs every frozen block on one batch of texts, then the next
batch, so all the frozen weights are in memory together. Here the loops are swapped: the
embeddings of every text are computed, then each frozen block is materialised, run over every
text (length-sorted batches of ~1k tokens, as there) and released. Peak memory is the cached
states plus one block, instead of the states plus the whole model.

Between blocks only each text's kept positions are stored (its real tokens, or its whole padded
row under a fixed pad length), and a batch's shorter rows are filled with zeros instead of the
padding tokens' states. Under the causal mask a real token never sees a later position, so the
real tokens' states are those of ``build_cache`` (to float rounding: batches have other shapes).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..classifier import GPTClassifier
from ..data.encoding import EncodedDataset, pad_token_ids
from ..lazy_weights import LazyWeights
from ..precision import autocast
from .prefix_cache import HiddenStateCache

_TOKENS_PER_FORWARD = 1024

BlockHook = Callable[[torch.nn.Module], torch.nn.Module]


def streaming_applies(model: GPTClassifier, pad_lengths: dict[str, int | None]) -> bool:
    """Zeros may stand in for padding states only where no real token attends to them."""
    return model.cfg.causal or all(pad is not None for pad in pad_lengths.values())


def _chunks(lengths: list[int], pad_length: int | None) -> list[tuple[list[int], int]]:
    """(indices, width) of each forward pass: longest texts first, ~1k tokens per pass."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    chunks, position = [], 0
    while position < len(order):
        width = pad_length or max(lengths[order[position]], 1)
        rows = max(1, _TOKENS_PER_FORWARD // width)
        chunks.append((order[position : position + rows], width))
        position += rows
    return chunks


def _empty_cache(dataset: EncodedDataset, pad_length: int | None, emb_dim: int):
    kept = [pad_length if pad_length else length for length in dataset.lengths]
    offsets = [0] * len(kept)
    for i in range(1, len(kept)):
        offsets[i] = offsets[i - 1] + kept[i - 1]
    return HiddenStateCache(torch.empty(sum(kept), emb_dim), offsets, kept)


def _flat(batches: dict[str, list[torch.Tensor]]) -> list[torch.Tensor]:
    return [ids for split in batches.values() for ids in split]


def _store(cache: HiddenStateCache, chunk: list[int], hidden: torch.Tensor) -> None:
    for row, index in enumerate(chunk):
        start, kept = cache.offsets[index], cache.lengths[index]
        cache.storage[start : start + kept] = hidden[row, :kept]


@torch.inference_mode()
def build_caches_streamed(
    model: GPTClassifier,
    lazy: LazyWeights,
    datasets: dict[str, EncodedDataset],
    pad_lengths: dict[str, int | None],
    start_block: int,
    precision: str = "fp32",
    progress: object | None = None,
    prepare_block: BlockHook | None = None,
) -> dict[str, HiddenStateCache]:
    """The states entering ``trf_blocks[start_block]`` for every text of every dataset (on the
    CPU, float32), each frozen block in memory only while it runs. ``progress`` (a tqdm bar)
    advances by the positions of each pass of each block. ``prepare_block`` may replace a
    block by the module that runs it (int8: a quantised copy)."""
    gpt, device = model.gpt, torch.device("cpu")
    caches = {
        name: _empty_cache(dataset, pad_lengths[name], gpt.cfg.emb_dim)
        for name, dataset in datasets.items()
    }
    plans = {name: _chunks(d.lengths, pad_lengths[name]) for name, d in datasets.items()}

    # the embeddings: only the rows of the tokens present are drawn and kept
    batches = {
        name: [
            pad_token_ids([d.input_ids[i] for i in chunk], width) for chunk, width in plans[name]
        ]
        for name, d in datasets.items()
    }
    used = torch.unique(torch.cat([ids.flatten() for ids in _flat(batches)]))
    rows = lazy.embedding_rows("tok_emb", used)
    row_of = torch.zeros(gpt.cfg.vocab_size, dtype=torch.long)
    row_of[used] = torch.arange(len(used))
    lazy.materialize("pos_emb")
    for name in datasets:
        for (chunk, _), ids in zip(plans[name], batches[name], strict=True):
            positions = torch.arange(ids.shape[1])
            _store(caches[name], chunk, rows[row_of[ids]] + gpt.pos_emb(positions))  # = embed
    lazy.release("pos_emb")
    del batches, rows, row_of

    for index in range(start_block):
        module_name = f"trf_blocks.{index}"
        lazy.materialize(module_name)
        block = gpt.trf_blocks[index].eval()
        runner = prepare_block(block) if prepare_block is not None else block
        for name in datasets:
            cache = caches[name]
            for chunk, width in plans[name]:
                hidden = cache.batch(torch.tensor(chunk), width)
                with autocast(device, precision):
                    hidden = runner(hidden)
                _store(cache, chunk, hidden.float())
                if progress is not None:
                    progress.update(sum(cache.lengths[i] for i in chunk))  # type: ignore[attr-defined]
        del runner, block
        lazy.release(module_name)
    return caches
