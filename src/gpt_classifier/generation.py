"""Text generation as in the book (chapters 4 and 5): greedy decoding, top-k and temperature."""

from __future__ import annotations

from collections.abc import Sequence

import tiktoken
import torch
from torch import nn

from .tokenizer import encode


def text_to_token_ids(text: str, tokenizer: tiktoken.Encoding) -> torch.Tensor:
    """``text`` as a batch of one: a long tensor of shape ``(1, n_tokens)``."""
    return torch.tensor(encode(tokenizer, text), dtype=torch.long).unsqueeze(0)


def token_ids_to_text(ids: torch.Tensor | Sequence[int], tokenizer: tiktoken.Encoding) -> str:
    """Decode ``(n,)`` or ``(1, n)`` token ids back to text."""
    if isinstance(ids, torch.Tensor):
        if ids.dim() == 2 and ids.shape[0] != 1:
            raise ValueError(f"expected a batch of one sequence, got shape {tuple(ids.shape)}")
        ids = ids.reshape(-1).tolist()
    return tokenizer.decode(list(ids))


def generate_text_simple(
    model: nn.Module, idx: torch.Tensor, max_new_tokens: int, context_size: int
) -> torch.Tensor:
    """Append ``max_new_tokens`` greedy tokens to ``idx`` ``(batch, n)`` (the book's ch. 4)."""
    return generate(model, idx, max_new_tokens, context_size)


@torch.no_grad()  # rather than inference_mode: the ids may later feed a training step
def generate(
    model: nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    context_size: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    eos_id: int | None = None,
) -> torch.Tensor:
    """The book's chapter 5 ``generate``: ``idx`` ``(batch, n)`` -> ``(batch, n + new)``; an
    ``eos_id`` ends a row (not appended), finished rows get ``eos_id`` until all finish."""
    if idx.dim() != 2 or idx.shape[1] == 0:
        raise ValueError(
            f"idx must have shape (batch, n_tokens) with n_tokens >= 1, got {tuple(idx.shape)}"
        )
    if max_new_tokens < 0 or context_size < 1:
        raise ValueError("max_new_tokens must be >= 0 and context_size >= 1")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    was_training = model.training
    model.eval()
    finished = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)
    try:
        for _ in range(max_new_tokens):
            logits = model(idx[:, -context_size:])[:, -1, :]  # (batch, vocab): the last position
            if top_k is not None:
                top_logits, _ = torch.topk(logits, min(top_k, logits.shape[-1]))
                logits = logits.masked_fill(logits < top_logits[:, -1:], float("-inf"))
            if temperature > 0.0:  # idx_next: (batch, 1)
                idx_next = torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1)
            else:
                idx_next = torch.argmax(logits, dim=-1, keepdim=True)
            if eos_id is not None:
                idx_next = idx_next.masked_fill(finished.unsqueeze(1), eos_id)
                finished |= idx_next.squeeze(1) == eos_id
                if bool(finished.all()):
                    break
            idx = torch.cat((idx, idx_next), dim=1)
    finally:
        model.train(was_training)
    return idx
