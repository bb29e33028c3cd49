"""The frozen prefix computed one block at a time, for a model whose weights are lazy.

``prefix_cache.build_cache`` runs every frozen block on one batch, then the next, so all the
frozen weights are in memory together. Here the loops are swapped: every text is embedded, then
each frozen block is materialised, run over every text and released: peak memory is the states
plus one block.

Texts are packed whole, longest first, into slabs of ~1k tokens (zero rows up to exactly 1k: one
matmul shape); attention runs on a ``(texts, width)`` grid whose empty cells are zeros. Under the
causal mask no real token attends to a later position, so the states are ``build_cache``'s (to
float rounding); with a fixed pad length the padding positions are computed like real tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..classifier import GPTClassifier
from ..data.encoding import EncodedDataset, pad_token_ids
from ..model import TransformerBlock
from ..precision import autocast
from ..weights import LazyWeights
from .memory import release_free_memory
from .prefix_cache import HiddenStateCache, empty_cache

_TOKENS_PER_FORWARD = 1024


def streaming_applies(model: GPTClassifier, pad_lengths: dict[str, int | None]) -> bool:
    """Zeros may stand in for padding states only where no real token attends to them."""
    return model.cfg.causal or all(pad is not None for pad in pad_lengths.values())


@dataclass
class _Slab:
    """Whole texts packed into ~1k consecutive rows: ``token_rows`` are their rows in the
    cache's storage; ``padded_rows`` place them in a ``(texts, width)`` grid for attention."""

    texts: list[int]
    token_rows: torch.Tensor  # (tokens,)
    padded_rows: torch.Tensor  # (tokens,) index into the flattened (texts, width) grid
    width: int
    positions: torch.Tensor  # (tokens,) each token's position in its text


def _slabs(cache: HiddenStateCache) -> list[_Slab]:
    """Longest texts first, as many whole texts per slab as fit in ~1k tokens."""
    order = sorted(range(len(cache.lengths)), key=lambda i: -cache.lengths[i])
    slabs, position = [], 0
    while position < len(order):
        texts, tokens = [], 0
        while position < len(order) and (
            not texts or tokens + cache.lengths[order[position]] <= _TOKENS_PER_FORWARD
        ):
            texts.append(order[position])
            tokens += cache.lengths[order[position]]
            position += 1
        width = cache.lengths[texts[0]]
        spans = [torch.arange(cache.lengths[i]) for i in texts]
        slabs.append(
            _Slab(
                texts=texts,
                token_rows=torch.cat(
                    [cache.offsets[i] + span for i, span in zip(texts, spans, strict=True)]
                ),
                padded_rows=torch.cat([row * width + span for row, span in enumerate(spans)]),
                width=width,
                positions=torch.cat(spans),
            )
        )
    return slabs


def _block_on_slab(block: TransformerBlock, x: torch.Tensor, slab: _Slab) -> torch.Tensor:
    """``TransformerBlock.forward`` on packed rows ``x`` (tokens, emb_dim): the projections and
    the MLP see every token once, with no padding and always ~1k rows (oneDNN compiles one
    kernel per matrix shape, so few shapes keep its cache, and the memory it holds, small);
    attention runs on the ``(texts, width)`` grid."""
    att = block.att
    texts, heads, head_dim = len(slab.texts), att.num_heads, att.head_dim
    tokens = x.shape[0]
    if tokens < _TOKENS_PER_FORWARD:  # zero rows up to the slab size: one shape for every slab
        x = torch.cat([x, x.new_zeros(_TOKENS_PER_FORWARD - tokens, x.shape[1])])
    normed = block.norm1(x)

    def grid(projected: torch.Tensor) -> torch.Tensor:  # (rows, d) -> (texts, heads, w, hd)
        out = projected.new_zeros(texts * slab.width, projected.shape[-1])
        out[slab.padded_rows] = projected[:tokens]
        return out.view(texts, slab.width, heads, head_dim).transpose(1, 2)

    context = F.scaled_dot_product_attention(
        grid(att.W_query(normed)),
        grid(att.W_key(normed)),
        grid(att.W_value(normed)),
        is_causal=att.causal,
    )
    context = context.transpose(1, 2).reshape(texts * slab.width, att.d_out)[slab.padded_rows]
    if tokens < x.shape[0]:
        context = torch.cat([context, context.new_zeros(x.shape[0] - tokens, att.d_out)])
    x = x + att.out_proj(context)
    return (x + block.ff(block.norm2(x)))[:tokens]


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
    """The states entering ``trf_blocks[start_block]`` for every text of every dataset (CPU,
    float32), each frozen block in memory only while it runs; ``progress`` (tqdm) advances by
    each slab's tokens. ``starting_states(name)`` may give ``(j, states after j blocks)``
    (cached by a shallower prefix's run): that dataset starts at block ``j``."""
    gpt, device = model.gpt, torch.device("cpu")
    caches = {
        name: empty_cache(dataset, pad_lengths[name], gpt.cfg.emb_dim)
        for name, dataset in datasets.items()
    }
    slabs = {name: _slabs(cache) for name, cache in caches.items()}
    first_block = dict.fromkeys(caches, 0)
    for name, cache in caches.items():
        found = starting_states(name) if starting_states else None
        if found is not None and found[1].storage.shape == cache.storage.shape:
            first_block[name] = found[0]
            cache.storage.copy_(found[1].storage)
        del found
    from_ids = {name: d for name, d in datasets.items() if first_block[name] == 0}

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
                x = cache.storage[slab.token_rows]
                with autocast(device, precision):
                    x = _block_on_slab(block, x, slab)
                cache.storage[slab.token_rows] = x.float()
                if progress is not None:
                    progress.update(len(slab.token_rows))  # type: ignore[attr-defined]
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
    """Each text's embeddings into its cache: only the rows of the tokens present are kept."""
    gpt = model.gpt
    ids = {
        name: torch.cat(
            [
                pad_token_ids([d.input_ids[i]], kept)[0]
                for i, kept in enumerate(caches[name].lengths)
            ]
        )
        for name, d in datasets.items()
    }  # every kept position's token id, in storage order
    used = torch.unique(torch.cat(list(ids.values())))
    rows = lazy.embedding_rows("tok_emb", used)
    row_of = torch.zeros(gpt.cfg.vocab_size, dtype=torch.long)
    row_of[used] = torch.arange(len(used))
    lazy.materialize("pos_emb")
    for name in datasets:
        cache = caches[name]
        for slab in slabs[name]:
            tokens = ids[name][slab.token_rows]
            cache.storage[slab.token_rows] = rows[row_of[tokens]] + gpt.pos_emb(slab.positions)
    lazy.release("pos_emb")
    del ids, rows, row_of
    release_free_memory()
