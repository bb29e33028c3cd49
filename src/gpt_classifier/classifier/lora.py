"""Low-rank adaptation (the book's appendix E): ``linear(x) + alpha / rank * (x @ A @ B)``."""

import math

import torch
import torch.nn.functional as F
from torch import Generator, nn

from ..errors import GPTClassifierError


class LoRALayer(nn.Module):
    """``scaling * (x @ A @ B)``, ``B`` zero at first; the LoRA paper's ``alpha / rank`` scaling."""

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
        # one addmm, the scaling folded into the small B: no extra pass over the activations
        out, lora = self._frozen_linear(x), self.lora
        flat = out.reshape(-1, out.shape[-1])
        fused = torch.addmm(flat, x.reshape(-1, x.shape[-1]) @ lora.A, lora.B * lora.scaling)
        return fused.view(out.shape)

    def _frozen_linear(self, x: torch.Tensor) -> torch.Tensor:
        """``self.linear(x)``; under CPU bf16 autocast from a kept bf16 copy of the frozen weights
        (autocast recasts them every pass: 130 of a ~570 ms LoRA step on GPT-2 124M)."""
        weight, bias = self.linear.weight, self.linear.bias
        bf16 = (
            torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        )
        frozen = not any(p.requires_grad for p in self.linear.parameters())
        if not (bf16 and frozen and x.device.type == "cpu" and weight.dtype == torch.float32):
            return self.linear(x)
        key = (weight._version, weight.data_ptr())
        if self._bf16_copy is None or self._bf16_copy[0] != key:
            half_bias = None if bias is None else bias.detach().to(torch.bfloat16)
            self._bf16_copy = (key, weight.detach().to(torch.bfloat16), half_bias)
        return F.linear(x.to(torch.bfloat16), *self._bf16_copy[1:])


def replace_linear_with_lora(
    module: nn.Module, rank: int, alpha: float, generator: Generator | None = None
) -> int:
    """Wrap every ``nn.Linear`` not yet wrapped in ``module`` in place; the number wrapped."""
    replaced = 0
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            setattr(module, name, LinearWithLoRA(child, rank, alpha, generator=generator))
            replaced += 1
        elif not isinstance(child, LinearWithLoRA):
            replaced += replace_linear_with_lora(child, rank, alpha, generator)
    return replaced


def merge_lora(module: nn.Module) -> int:
    """Fold each adapter into its Linear and put that back, in place; the number merged."""
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
