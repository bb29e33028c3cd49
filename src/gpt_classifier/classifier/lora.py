"""Low-rank adaptation (the book's appendix E): ``linear(x) + alpha / rank * (x @ A @ B)``, with
``B`` zero at first (a wrapped model computes what it did); ``merge_lora`` folds it back."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Generator, nn

from ..errors import GPTClassifierError


class LoRALayer(nn.Module):
    """``scaling * (x @ A @ B)``: ``A`` ``(in_dim, rank)`` Kaiming-uniform as in the book (from
    ``generator`` if given), ``B`` ``(rank, out_dim)`` zeros. The scaling is the LoRA paper's
    ``alpha / rank`` (the book's first printing used ``alpha``)."""

    def __init__(
        self, in_dim: int, out_dim: int, rank: int, alpha: float, generator: Generator | None = None
    ) -> None:
        super().__init__()
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise GPTClassifierError(f"LoRA rank must be a positive integer (got {rank!r})")
        self.scaling = float(alpha) / rank
        self.A = nn.Parameter(torch.empty(in_dim, rank))  # the book's names
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5), generator=generator)
        self.B = nn.Parameter(torch.zeros(rank, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scaling * (x @ self.A @ self.B)


class LinearWithLoRA(nn.Module):
    """A (frozen) ``nn.Linear`` plus a ``LoRALayer``: ``linear(x) + lora(x)``."""

    def __init__(
        self, linear: nn.Linear, rank: int, alpha: float, *, generator: Generator | None = None
    ) -> None:
        super().__init__()
        self.linear = linear
        self._bf16_copy: tuple[tuple[int, int], torch.Tensor, torch.Tensor | None] | None = None
        lora = LoRALayer(linear.in_features, linear.out_features, rank, alpha, generator=generator)
        self.lora = lora.to(device=linear.weight.device, dtype=linear.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One addmm with the scaling folded into the small B: no extra passes over the
        # (tokens, out_dim) activations, which cost about as much as the adapters' matmuls.
        out = self._frozen_linear(x)
        flat = x.reshape(-1, x.shape[-1])
        lora = self.lora
        fused = torch.addmm(out.reshape(-1, out.shape[-1]), flat @ lora.A, lora.B * lora.scaling)
        return fused.view(out.shape)

    def _frozen_linear(self, x: torch.Tensor) -> torch.Tensor:
        """``self.linear(x)``; under CPU bf16 autocast from a bf16 copy of the frozen weights
        kept between passes (autocast would recast them every pass: 130 of a ~570 ms LoRA step
        on GPT-2 124M), bit-identical; the copy costs half the weights' memory."""
        weight, bias = self.linear.weight, self.linear.bias
        if (
            x.device.type != "cpu"
            or weight.dtype != torch.float32
            or any(p.requires_grad for p in self.linear.parameters())
            or not torch.is_autocast_enabled("cpu")
            or torch.get_autocast_dtype("cpu") != torch.bfloat16
        ):
            return self.linear(x)
        key = (weight._version, weight.data_ptr())
        if self._bf16_copy is None or self._bf16_copy[0] != key:
            half_bias = None if bias is None else bias.detach().to(torch.bfloat16)
            self._bf16_copy = (key, weight.detach().to(torch.bfloat16), half_bias)
        return F.linear(x.to(torch.bfloat16), *self._bf16_copy[1:])


def replace_linear_with_lora(
    module: nn.Module, rank: int, alpha: float, generator: Generator | None = None
) -> int:
    """Wrap every ``nn.Linear`` inside ``module`` (not yet wrapped) in a ``LinearWithLoRA``, in
    place; the number wrapped. A ``generator`` makes the init independent of the global RNG."""
    replaced = 0
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            setattr(module, name, LinearWithLoRA(child, rank, alpha, generator=generator))
            replaced += 1
        elif not isinstance(child, LinearWithLoRA):
            replaced += replace_linear_with_lora(child, rank, alpha, generator)
    return replaced


def merge_lora(module: nn.Module) -> int:
    """Fold each adapter into its Linear (``W += scaling * (A @ B).T``) and put the plain
    ``nn.Linear`` back, in place (the original module tree and state dict); the number merged."""
    merged = 0
    for name, child in module.named_children():
        if isinstance(child, LinearWithLoRA):
            linear, lora = child.linear, child.lora
            with torch.no_grad():
                delta = (lora.scaling * (lora.A @ lora.B).T).to(torch.float32)
                linear.weight.copy_((linear.weight.to(torch.float32) + delta).to(linear.weight))
            setattr(module, name, linear)
            merged += 1
        else:
            merged += merge_lora(child)
    return merged


def has_lora(module: nn.Module) -> bool:
    return any(isinstance(m, LinearWithLoRA) for m in module.modules())
