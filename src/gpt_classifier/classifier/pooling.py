"""Which position's hidden state the head reads: ``last-real`` reads ``lengths - 1`` from the
collate function, never a search for the pad id (GPT-2 pads with ``<|endoftext|>``)."""

from enum import StrEnum
from typing import NamedTuple

import torch
from torch import Tensor

from ..errors import GPTClassifierError


class Pooling(StrEnum):
    """A pooling strategy; a ``str`` so that run.json and the CLI keep the plain names."""

    LAST = "last"
    FIRST = "first"
    LAST_REAL = "last-real"
    MEAN = "mean"


POOLINGS = tuple(p.value for p in Pooling)


def validate_pooling(pooling: str | Pooling) -> Pooling:
    """``pooling`` as a ``Pooling``, parsed once where a name comes in (else an error)."""
    try:
        return Pooling(pooling)
    except ValueError:
        valid = ", ".join(POOLINGS)
        raise GPTClassifierError(f"unknown pooling {pooling!r}; valid poolings: {valid}") from None


def pool_hidden(hidden: Tensor, lengths: Tensor | None, pooling: Pooling) -> Tensor:
    """States ``(B, T, D)`` -> ``(B, D)``: ``pooled_positions``, or the mean of the real tokens."""
    if hidden.shape[1] < 1:
        raise GPTClassifierError("cannot pool an empty sequence (0 tokens)")
    positions = pooled_positions(hidden, lengths, pooling)
    if positions is not None:
        return hidden[torch.arange(len(hidden), device=hidden.device), positions]
    if lengths is None:
        return hidden.mean(dim=1)
    lengths = lengths.to(device=hidden.device, dtype=torch.long)
    real = torch.arange(hidden.shape[1], device=hidden.device)[None, :] < lengths[:, None]
    summed = (hidden * real[:, :, None].to(hidden.dtype)).sum(dim=1)  # (B, D)
    return summed / lengths[:, None].to(hidden.dtype)


def pooled_positions(hidden: Tensor, lengths: Tensor | None, pooling: Pooling) -> Tensor | None:
    """The position per row ``(B,)`` that ``pooling`` reads (``None`` for ``mean``)."""
    batch, seq_len, _ = hidden.shape
    if lengths is not None:
        if not isinstance(lengths, torch.Tensor) or lengths.shape != (batch,):
            got = tuple(lengths.shape) if isinstance(lengths, torch.Tensor) else type(lengths)
            raise GPTClassifierError(f"lengths must be a tensor of shape ({batch},) (got {got})")
        if lengths.dtype == torch.bool or lengths.dtype.is_floating_point or lengths.is_complex():
            raise GPTClassifierError(f"lengths must hold integers (got dtype {lengths.dtype})")
        if batch and bool(((lengths < 1) | (lengths > seq_len)).any()):
            raise GPTClassifierError(
                f"every length must be between 1 and the sequence length {seq_len} "
                f"(got min {int(lengths.min())}, max {int(lengths.max())})"
            )
    if pooling == Pooling.MEAN:
        return None
    if pooling != Pooling.LAST_REAL or lengths is None:  # first, last, or last-real without lengths
        position = 0 if pooling == Pooling.FIRST else seq_len - 1
        return torch.full((batch,), position, dtype=torch.long, device=hidden.device)
    return lengths.to(device=hidden.device, dtype=torch.long) - 1


class PaddingReads(NamedTuple):
    """How a text's logits depend on its batch's padding (per-batch pad lengths only)."""

    pooled: bool  # 'last' reads position -1, padding in a shorter row
    attended: bool  # without the causal mask every token sees the padding after it

    @property
    def why(self) -> str | None:
        pooled = "'last' pooling reads a padding position whose state varies by batch"
        attended = "without the causal mask real tokens see the per-batch padding"
        return pooled if self.pooled else attended if self.attended else None


def padding_reads(pooling: Pooling, causal: bool, pad_length: int | None) -> PaddingReads:
    """The one rule behind packing, the prefix cache and equal-length batches."""
    per_batch = pad_length is None  # each batch padded to its longest text
    return PaddingReads(per_batch and pooling == Pooling.LAST, per_batch and not causal)


def combine_windows(rows: Tensor, owners: Tensor | list[int] | None) -> Tensor:
    """The mean of each text's rows (``owners`` (W,) numbers the texts of the windows 0..)."""
    if owners is None:
        return rows
    owners = torch.as_tensor(owners, device=rows.device, dtype=torch.long)
    texts = int(owners.max()) + 1 if len(owners) else 0
    total = rows.new_zeros((texts, *rows.shape[1:])).index_add(0, owners, rows)
    windows = torch.bincount(owners, minlength=texts).to(rows.dtype)
    return total / windows.view(-1, *[1] * (rows.dim() - 1))


def combine_probabilities(probabilities: Tensor, owners: Tensor | list[int] | None) -> Tensor:
    """Per-text probabilities: softmax of the windows' mean log probabilities (= of mean logits)."""
    if owners is None:
        return probabilities
    tiny = torch.finfo(probabilities.dtype).tiny  # a probability rounded to 0 stays finite
    return torch.softmax(combine_windows(probabilities.clamp_min(tiny).log(), owners), dim=-1)
