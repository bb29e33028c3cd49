"""GPT-2 from scratch, named as in *Build a Large Language Model (From Scratch)*.

Reads top to bottom: LayerNorm -> GELU -> FeedForward -> MultiHeadAttention -> TransformerBlock
-> GPTModel. No I/O here: weights are loaded by ``weights.py``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import GPTConfig, resolve_config


class LayerNorm(nn.Module):
    """Layer normalization with the book's parameter names (``scale``, ``shift``); eps as GPT-2."""

    def __init__(self, emb_dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(emb_dim))
        self.shift = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Same maths as the book's mean/var version (biased variance), in one fused kernel.
        return F.layer_norm(x, self.scale.shape, self.scale, self.shift, self.eps)


class GELU(nn.Module):
    """GELU with the tanh approximation, as GPT-2 was trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate="tanh")


class FeedForward(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(cfg.emb_dim, 4 * cfg.emb_dim),
            GELU(),
            nn.Linear(4 * cfg.emb_dim, cfg.emb_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def _slow_bf16_attention_backward(queries: torch.Tensor) -> bool:
    """True where attention should run in float32: bf16 SDPA on the CPU is faster forward but
    its backward is ~2.4x slower than float32's (torch 2.13, 8x12x92x64 on a Sapphire Rapids
    core: 12.5 vs 5.2 ms), which matters when gradients flow through every block (LoRA, all)."""
    return (
        queries.dtype == torch.bfloat16
        and queries.device.type == "cpu"
        and queries.requires_grad
        and torch.is_grad_enabled()
    )


class MultiHeadAttention(nn.Module):
    """Causal multi-head self-attention computed by ``F.scaled_dot_product_attention``.

    ``causal=False`` drops the mask (an experiment of the book's bonus table): every token then
    sees the whole text, padding included.
    """

    def __init__(
        self,
        d_in: int,
        d_out: int,
        num_heads: int,
        dropout: float = 0.0,
        qkv_bias: bool = False,
        causal: bool = True,
    ) -> None:
        super().__init__()
        if d_out % num_heads:
            raise ValueError(f"d_out ({d_out}) must be divisible by num_heads ({num_heads})")
        self.d_out = d_out
        self.num_heads = num_heads
        self.head_dim = d_out // num_heads
        self.causal = causal
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``attn_mask`` (boolean, True = may attend, broadcast to ``(b, heads, T, T)``) replaces
        the causal mask: packed texts (``classifier/packing.py``) each see only themselves."""
        b, num_tokens, _ = x.shape

        def split_heads(t: torch.Tensor) -> torch.Tensor:
            # (b, T, d_out) -> (b, num_heads, T, head_dim)
            return t.view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)

        queries = split_heads(self.W_query(x))
        keys = split_heads(self.W_key(x))
        values = split_heads(self.W_value(x))
        masking = {
            "dropout_p": self.dropout.p if self.training else 0.0,
            "attn_mask": attn_mask,
            "is_causal": self.causal and attn_mask is None,
        }
        if _slow_bf16_attention_backward(queries):
            with torch.autocast("cpu", enabled=False):  # autocast would cast back to bf16
                context = F.scaled_dot_product_attention(
                    queries.float(), keys.float(), values.float(), **masking
                ).to(queries.dtype)
        else:
            context = F.scaled_dot_product_attention(queries, keys, values, **masking)
        # context: (b, num_heads, T, head_dim)
        context = context.transpose(1, 2).reshape(b, num_tokens, self.d_out)
        return self.out_proj(context)

    def forward_at(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Attention output at one position per row, ``x[b, positions[b]]``: ``(b, d_out)``.

        Equal to ``forward(x)[arange(b), positions]`` without computing any key or value.
        With one query per row the projections can be moved onto the query side (associativity:
        ``q . (W_k x_j + b_k) = (W_k^T q) . x_j + q . b_k``, and
        ``sum_j a_j (W_v x_j + b_v) = W_v (sum_j a_j x_j) + b_v sum_j a_j``): the work is then
        three ``d_in x d_out`` products per row plus two ``T x d_in`` dot products per head,
        instead of two ``d_in x d_out`` products per token. Same logits and gradients up to
        float rounding (tested to 1e-5 in float32).
        """
        if not (type(self.W_key) is nn.Linear and type(self.W_value) is nn.Linear):
            return self._forward_at_projecting(x, positions)  # e.g. LoRA-wrapped projections
        b, num_tokens, d_in = x.shape
        heads, head_dim = self.num_heads, self.head_dim
        rows = torch.arange(b, device=x.device)
        query = self.W_query(x[rows, positions]).view(b, heads, head_dim)
        key_weight = self.W_key.weight.view(heads, head_dim, d_in)
        absorbed = torch.einsum("bhd,hdi->bhi", query, key_weight)  # W_k^T q, per head
        scores = torch.einsum("bhi,bti->bht", absorbed, x)
        if self.W_key.bias is not None:  # a constant per row and head: softmax ignores it
            scores = scores + (query * self.W_key.bias.view(heads, head_dim)).sum(-1, True)
        scores = scores / math.sqrt(head_dim)
        if self.causal:
            token_positions = torch.arange(num_tokens, device=x.device)
            hidden = token_positions[None, :] > positions[:, None]  # (b, T): after the query
            scores = scores.masked_fill(hidden[:, None, :], float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        weights = F.dropout(weights, self.dropout.p, self.training)
        mixed = torch.einsum("bht,bti->bhi", weights.to(x.dtype), x)  # sum_j a_j x_j, per head
        value_weight = self.W_value.weight.view(heads, head_dim, d_in)
        context = torch.einsum("bhi,hdi->bhd", mixed, value_weight)
        if self.W_value.bias is not None:  # sum_j a_j is 1 unless dropout removed some
            context = context + weights.sum(-1, True) * self.W_value.bias.view(heads, head_dim)
        return self.out_proj(context.reshape(b, self.d_out))

    def _forward_at_projecting(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """``forward_at`` for projections that are not plain ``nn.Linear``: keys and values are
        computed (only for the tokens the queries can see), then attended to as usual."""
        b, num_tokens, _ = x.shape
        rows = torch.arange(b, device=x.device)
        query = self.W_query(x[rows, positions]).view(b, self.num_heads, 1, self.head_dim)
        if self.causal:
            token_positions = torch.arange(num_tokens, device=x.device)
            visible = token_positions[None, :] <= positions[:, None]  # (b, T)
            seen = x[visible]

            def scatter(projected: torch.Tensor) -> torch.Tensor:
                empty = projected.new_zeros(b, num_tokens, self.d_out)
                return empty.index_put((visible,), projected)

            keys, values = scatter(self.W_key(seen)), scatter(self.W_value(seen))
            attn_mask = visible.view(b, 1, 1, num_tokens)
        else:
            keys, values, attn_mask = self.W_key(x), self.W_value(x), None

        def split_heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)

        context = F.scaled_dot_product_attention(
            query,
            split_heads(keys),
            split_heads(values),
            attn_mask=attn_mask,
            dropout_p=self.dropout.p if self.training else 0.0,
        )
        return self.out_proj(context.reshape(b, self.d_out))


class TransformerBlock(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.att = MultiHeadAttention(
            d_in=cfg.emb_dim,
            d_out=cfg.emb_dim,
            num_heads=cfg.n_heads,
            dropout=cfg.drop_rate,
            qkv_bias=cfg.qkv_bias,
            causal=cfg.causal,
        )
        self.ff = FeedForward(cfg)
        self.norm1 = LayerNorm(cfg.emb_dim)
        self.norm2 = LayerNorm(cfg.emb_dim)
        self.drop_resid = nn.Dropout(cfg.drop_rate)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop_resid(self.att(self.norm1(x), attn_mask))
        x = x + self.drop_resid(self.ff(self.norm2(x)))
        return x

    def forward_at(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Block output at one position per row: ``(b, emb_dim)``.

        A classifier that reads a single position needs nothing else from the last block, and
        everything but keys and values shrinks from ``T`` tokens to one: the same numbers
        (and gradients) for several times less work.
        """
        rows = torch.arange(x.shape[0], device=x.device)
        y = x[rows, positions] + self.drop_resid(self.att.forward_at(self.norm1(x), positions))
        return y + self.drop_resid(self.ff(self.norm2(y)))


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts; a shared (tied) tensor is counted once (the
    book's 124M for GPT-2 small)."""
    params = list(model.parameters())  # nn.Module.parameters() yields each tensor once
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    return trainable, total


class GPTModel(nn.Module):
    """GPT-2. ``forward(idx)`` maps token ids ``(batch, seq)`` to logits ``(batch, seq, vocab)``.

    A classifier swaps ``out_head`` for ``Linear(emb_dim, num_classes)``; then the same forward
    gives one score per class at every position.
    """

    def __init__(self, cfg: GPTConfig | dict[str, Any] | str) -> None:
        super().__init__()
        cfg = resolve_config(cfg)
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.emb_dim)
        self.pos_emb = nn.Embedding(cfg.context_length, cfg.emb_dim)
        self.drop_emb = nn.Dropout(cfg.drop_rate)
        self.trf_blocks = nn.Sequential(*[TransformerBlock(cfg) for _ in range(cfg.n_layers)])
        self.final_norm = LayerNorm(cfg.emb_dim)
        self.out_head = nn.Linear(cfg.emb_dim, cfg.vocab_size, bias=False)

    def embed(self, idx: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Token plus position embeddings: the input of the first transformer block.

        ``positions`` (shaped as ``idx``) gives each token's position; default ``0..T-1``."""
        if positions is None:
            seq_len = idx.shape[-1]
            if seq_len > self.cfg.context_length:
                raise ValueError(
                    f"sequence of {seq_len} tokens exceeds the context length "
                    f"{self.cfg.context_length}"
                )
            positions = torch.arange(seq_len, device=idx.device)
        return self.drop_emb(self.tok_emb(idx) + self.pos_emb(positions))

    def hidden_states(
        self, idx: torch.Tensor, start_block: int = 0, end_block: int | None = None
    ) -> torch.Tensor:
        """Output of ``trf_blocks[start_block:end_block]``; ``idx`` holds token ids when
        ``start_block == 0`` and hidden states ``(batch, seq, emb_dim)`` otherwise."""
        x = self.embed(idx) if start_block == 0 else idx
        for block in self.trf_blocks[start_block:end_block]:
            x = block(x)
        return x

    def disable_causal_mask(self) -> None:
        """Let every token attend to every other (an experiment: the book's bonus table, row 17);
        the config records it, so a saved run is rebuilt the same way."""
        self.cfg = dataclasses.replace(self.cfg, causal=False)
        for block in self.trf_blocks:
            block.att.causal = False

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.hidden_states(idx)
        x = self.final_norm(x)
        return self.out_head(x)
