"""Which position's hidden state the classification head reads.

The book reads position -1 (``model(x)[:, -1, :]``), which is the last *real* token only when
every text in the batch fills the whole row. With right padding, ``last-real`` reads each row's
position ``lengths - 1`` instead. The lengths come from the collate function, never from searching
for the pad id: GPT-2 pads with ``<|endoftext|>`` (50256), and a text may contain that token too.
"""

from __future__ import annotations

from enum import Enum

import torch

from ..errors import GPTClassifierError


class Pooling(str, Enum):
    """A pooling strategy. A ``str`` so that run.json and the CLI keep the plain names."""

    LAST = "last"
    FIRST = "first"
    LAST_REAL = "last-real"
    MEAN = "mean"

    def __str__(self) -> str:
        return self.value


POOLINGS = tuple(p.value for p in Pooling)


def validate_pooling(pooling: str | Pooling) -> Pooling:
    """``pooling`` as a ``Pooling``; raise listing the valid names for anything else.

    Called once where a name comes in (options, ``GPTClassifier.__init__``); the functions below
    take the parsed value and trust it."""
    try:
        return Pooling(pooling)
    except ValueError:
        raise GPTClassifierError(
            f"unknown pooling {pooling!r}; valid poolings: {', '.join(POOLINGS)}"
        ) from None


def _check_lengths(lengths: torch.Tensor, batch: int, seq_len: int) -> None:
    if not isinstance(lengths, torch.Tensor):
        raise GPTClassifierError(f"lengths must be a tensor of shape ({batch},)")
    if lengths.dtype == torch.bool or lengths.dtype.is_floating_point or lengths.is_complex():
        raise GPTClassifierError(f"lengths must hold integers (got dtype {lengths.dtype})")
    if lengths.shape != (batch,):
        raise GPTClassifierError(
            f"lengths must have shape ({batch},), one per row (got {tuple(lengths.shape)})"
        )
    # On the CPU (where the collate function builds them) this check costs no device sync.
    if batch and bool(((lengths < 1) | (lengths > seq_len)).any()):
        raise GPTClassifierError(
            f"every length must be between 1 and the sequence length {seq_len} "
            f"(got min {int(lengths.min())}, max {int(lengths.max())})"
        )


def pool_hidden(
    hidden: torch.Tensor, lengths: torch.Tensor | None, pooling: Pooling
) -> torch.Tensor:
    """Reduce hidden states ``(B, T, D)`` to one vector per row ``(B, D)``.

    ``last``: position -1 (the book). ``first``: position 0. ``last-real``: position
    ``lengths - 1`` of each row. ``mean``: mean over each row's first ``lengths`` positions.
    ``lengths`` ``(B,)`` counts the real (unpadded) tokens; ``None`` means every position is real.
    Pass lengths on the CPU to validate them without a device sync; they are moved as needed.
    """
    if hidden.dim() != 3:
        raise GPTClassifierError(
            f"hidden states must have shape (batch, seq, emb_dim) (got {tuple(hidden.shape)})"
        )
    batch, seq_len, _ = hidden.shape
    if seq_len < 1:
        raise GPTClassifierError("cannot pool an empty sequence (0 tokens)")
    if lengths is not None:
        _check_lengths(lengths, batch, seq_len)

    if pooling == Pooling.LAST or (pooling == Pooling.LAST_REAL and lengths is None):
        return hidden[:, -1, :]
    if pooling == Pooling.FIRST:
        return hidden[:, 0, :]

    if pooling == Pooling.LAST_REAL:
        rows = torch.arange(batch, device=hidden.device)
        last = lengths.to(device=hidden.device, dtype=torch.long) - 1
        return hidden[rows, last, :]  # (B, D)

    # mean
    if lengths is None:
        return hidden.mean(dim=1)
    lengths = lengths.to(device=hidden.device, dtype=torch.long)
    positions = torch.arange(seq_len, device=hidden.device)
    mask = (positions[None, :] < lengths[:, None]).to(hidden.dtype)  # (B, T)
    summed = (hidden * mask[:, :, None]).sum(dim=1)  # (B, D)
    return summed / lengths[:, None].to(hidden.dtype)


def pooled_positions(
    hidden: torch.Tensor, lengths: torch.Tensor | None, pooling: Pooling
) -> torch.Tensor | None:
    """The one position per row that ``pooling`` reads, ``(B,)`` on ``hidden``'s device, or
    ``None`` for ``mean``, which reads them all."""
    batch, seq_len, _ = hidden.shape
    if lengths is not None:
        _check_lengths(lengths, batch, seq_len)
    if pooling == Pooling.MEAN:
        return None
    if pooling == Pooling.FIRST:
        return torch.zeros(batch, dtype=torch.long, device=hidden.device)
    if pooling == Pooling.LAST or lengths is None:
        return torch.full((batch,), seq_len - 1, dtype=torch.long, device=hidden.device)
    return lengths.to(device=hidden.device, dtype=torch.long) - 1
