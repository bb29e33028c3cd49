"""GPT-2 from scratch, named as in *Build a Large Language Model (From Scratch)*: LayerNorm ->
GELU -> FeedForward -> MultiHeadAttention -> TransformerBlock -> GPTModel. The block's fast
options: packed texts (``Packing``) and ``forward_at``. No I/O."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import GPTConfig, resolve_config


class LayerNorm(nn.Module):
    """Layer normalization with the book's parameter names (``scale``, ``shift``); eps as GPT-2."""

    def __init__(self, emb_dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(emb_dim))
        self.shift = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, x: Tensor) -> Tensor:
        # Same maths as the book's mean/var version (biased variance), in one fused kernel.
        return F.layer_norm(x, self.scale.shape, self.scale, self.shift, self.eps)


class GELU(nn.Module):
    """GELU with the tanh approximation, as GPT-2 was trained with."""

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x, approximate="tanh")


class FeedForward(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        emb = cfg.emb_dim
        self.layers = nn.Sequential(nn.Linear(emb, 4 * emb), GELU(), nn.Linear(4 * emb, emb))

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class Packing(NamedTuple):
    """Packed texts: token ``i`` of ``(tokens, d)`` sits in cell ``cells[i]`` of ``(rows, width)``;
    ``mask`` ``(rows, 1, width, width)`` (True: may attend) keeps it to its own text."""

    cells: Tensor
    mask: Tensor

    def to_rows(self, t: Tensor) -> Tensor:  # (tokens, d) -> (rows, width, d)
        rows, _, width, _ = self.mask.shape
        out = t.new_zeros(rows * width, t.shape[-1])
        out[self.cells] = t[: len(self.cells)]
        return out.view(rows, width, -1)

    def from_rows(self, t: Tensor, tokens: int) -> Tensor:  # (rows, width, d) -> (tokens, d)
        return F.pad(t.reshape(-1, t.shape[-1])[self.cells], (0, 0, 0, tokens - len(self.cells)))


class MultiHeadAttention(nn.Module):
    """Causal multi-head self-attention; ``causal=False``: the book's bonus table, row 17."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.d_out, self.num_heads, self.causal = cfg.emb_dim, cfg.n_heads, cfg.causal
        self.head_dim = cfg.emb_dim // cfg.n_heads
        self.W_query = nn.Linear(cfg.emb_dim, cfg.emb_dim, bias=cfg.qkv_bias)
        self.W_key = nn.Linear(cfg.emb_dim, cfg.emb_dim, bias=cfg.qkv_bias)
        self.W_value = nn.Linear(cfg.emb_dim, cfg.emb_dim, bias=cfg.qkv_bias)
        self.out_proj = nn.Linear(cfg.emb_dim, cfg.emb_dim)
        self.dropout = nn.Dropout(cfg.drop_rate)

    def forward(self, x: Tensor, packing: Packing | None = None) -> Tensor:
        """``x`` ``(b, T, d_in)``, or packed tokens ``(tokens, d_in)`` with their ``packing``."""
        queries, keys, values = self.W_query(x), self.W_key(x), self.W_value(x)
        if packing is None:
            return self.out_proj(self._attend(queries, keys, values))
        rows = [packing.to_rows(t) for t in (queries, keys, values)]
        context = self._attend(*rows, mask=packing.mask)
        return self.out_proj(packing.from_rows(context, x.shape[0]))

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
        """Queries ``(b, T_q, d_out)`` over ``(b, T, d_out)``; ``mask`` (True: attend) or causal."""
        b = q.shape[0]  # heads split: (b, T, d_out) -> (b, num_heads, T, head_dim)
        q, k, v = (t.view(b, -1, self.num_heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        masking = (mask, self.dropout.p if self.training else 0.0, self.causal and mask is None)
        if q.dtype == torch.bfloat16 and q.device.type == "cpu" and q.requires_grad:
            # bf16 SDPA's backward on the CPU is ~2.4x slower than float32's (torch 2.13)
            with torch.autocast("cpu", enabled=False):  # autocast would cast back to bf16
                context = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), *masking)
            context = context.to(q.dtype)
        else:
            context = F.scaled_dot_product_attention(q, k, v, *masking)
        return context.transpose(1, 2).reshape(b, -1, self.d_out)  # (b, T_q, d_out)

    def forward_at(self, x: Tensor, positions: Tensor) -> Tensor:
        """``forward(x)[arange(b), positions]`` ``(b, d_out)``, without keys or values: with one
        query per row, ``W_k`` and ``W_v`` move to the query side (three products per row)."""
        b, num_tokens, d_in = x.shape
        query = self.W_query(x[torch.arange(b, device=x.device), positions])  # (b, d_out)
        later = torch.arange(num_tokens, device=x.device)[None, :] > positions[:, None]  # (b, T)
        if not (type(self.W_key) is nn.Linear and type(self.W_value) is nn.Linear):
            # e.g. LoRA-wrapped projections: no single weight to move, so attend as usual
            mask = ~later[:, None, None, :] if self.causal else None
            context = self._attend(query[:, None], self.W_key(x), self.W_value(x), mask)
            return self.out_proj(context[:, 0])
        heads, head_dim = self.num_heads, self.head_dim
        query = query.view(b, heads, head_dim)
        key_weight = self.W_key.weight.view(heads, head_dim, d_in)
        absorbed = torch.einsum("bhd,hdi->bhi", query, key_weight)  # W_k^T q, per head
        scores = torch.einsum("bhi,bti->bht", absorbed, x)
        if self.W_key.bias is not None:  # a constant per row and head: softmax ignores it
            scores = scores + (query * self.W_key.bias.view(heads, head_dim)).sum(-1, True)
        scores = scores / math.sqrt(head_dim)
        if self.causal:
            scores = scores.masked_fill(later[:, None, :], float("-inf"))
        weights = F.dropout(torch.softmax(scores, dim=-1), self.dropout.p, self.training)
        mixed = torch.einsum("bht,bti->bhi", weights.to(x.dtype), x)  # sum_j a_j x_j, per head
        value_weight = self.W_value.weight.view(heads, head_dim, d_in)
        context = torch.einsum("bhi,hdi->bhd", mixed, value_weight)
        if self.W_value.bias is not None:  # sum_j a_j is 1 unless dropout removed some
            context = context + weights.sum(-1, True) * self.W_value.bias.view(heads, head_dim)
        return self.out_proj(context.reshape(b, self.d_out))


class TransformerBlock(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.att = MultiHeadAttention(cfg)
        self.ff = FeedForward(cfg)
        self.norm1, self.norm2 = LayerNorm(cfg.emb_dim), LayerNorm(cfg.emb_dim)
        self.drop_resid = nn.Dropout(cfg.drop_rate)

    def forward(self, x: Tensor, packing: Packing | None = None) -> Tensor:
        """``x`` ``(b, T, emb_dim)``, or packed tokens ``(tokens, emb_dim)`` with ``packing``."""
        x = x + self.drop_resid(self.att(self.norm1(x), packing))
        return x + self.drop_resid(self.ff(self.norm2(x)))

    def forward_at(self, x: Tensor, positions: Tensor) -> Tensor:
        """``forward(x)`` at one position per row ``(b, emb_dim)``: a classifier's last block."""
        rows = torch.arange(x.shape[0], device=x.device)
        y = x[rows, positions] + self.drop_resid(self.att.forward_at(self.norm1(x), positions))
        return y + self.drop_resid(self.ff(self.norm2(y)))


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts, a tied tensor once (the book's 124M)."""
    params = list(model.parameters())  # nn.Module.parameters() yields each tensor once
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


class GPTModel(nn.Module):
    """GPT-2: token ids ``(batch, seq)`` -> logits ``(batch, seq, vocab)``."""

    def __init__(self, cfg: GPTConfig | dict[str, Any] | str) -> None:
        super().__init__()
        self.cfg = cfg = resolve_config(cfg)
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.emb_dim)
        self.pos_emb = nn.Embedding(cfg.context_length, cfg.emb_dim)
        self.drop_emb = nn.Dropout(cfg.drop_rate)
        self.trf_blocks = nn.Sequential(*[TransformerBlock(cfg) for _ in range(cfg.n_layers)])
        self.final_norm = LayerNorm(cfg.emb_dim)
        self.out_head = nn.Linear(cfg.emb_dim, cfg.vocab_size, bias=False)

    def embed(self, idx: Tensor, positions: Tensor | None = None) -> Tensor:
        """Token plus position embeddings; ``positions`` (shaped as ``idx``) default to 0..T-1."""
        if positions is None:
            seq_len, limit = idx.shape[-1], self.cfg.context_length
            if seq_len > limit:
                raise ValueError(f"sequence of {seq_len} tokens exceeds the context length {limit}")
            positions = torch.arange(seq_len, device=idx.device)
        return self.drop_emb(self.tok_emb(idx) + self.pos_emb(positions))

    def hidden_states(self, idx: Tensor, end_block: int | None = None) -> Tensor:
        """Output of ``trf_blocks[:end_block]`` for token ids ``idx``."""
        return self.trf_blocks[:end_block](self.embed(idx))

    def disable_causal_mask(self) -> None:
        """Let every token attend to every other; the config records it for saved runs."""
        self.cfg = self.cfg.replace(causal=False)
        for block in self.trf_blocks:
            block.att.causal = False

    def forward(self, idx: Tensor) -> Tensor:
        return self.out_head(self.final_norm(self.hidden_states(idx)))
