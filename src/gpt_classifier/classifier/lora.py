"""Low-rank adaptation, as in the book's appendix E.

``LinearWithLoRA(linear)`` computes ``linear(x) + alpha / rank * (x @ A @ B)``. ``B`` starts at
zero, so a freshly wrapped model computes exactly what it did before. ``merge_lora`` folds the
adapters back into the weights and restores plain ``nn.Linear`` layers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GPTClassifierError


class LoRALayer(nn.Module):
    """``alpha / rank * (x @ A @ B)`` with ``A`` ``(in_dim, rank)`` and ``B`` ``(rank, out_dim)``.

    The scaling is ``alpha / rank`` (the LoRA paper; the book's first printing used ``alpha``).
    ``A`` gets the book's Kaiming-uniform init (``a=sqrt(5)``), drawn from ``generator`` when one
    is given (on the CPU, then moved), from the global RNG otherwise; ``B`` is zeros.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        rank: int,
        alpha: float,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise GPTClassifierError(f"LoRA rank must be a positive integer (got {rank!r})")
        self.rank = rank
        self.alpha = float(alpha)
        A = torch.empty(in_dim, rank)  # the book's names
        nn.init.kaiming_uniform_(A, a=math.sqrt(5), generator=generator)
        self.A = nn.Parameter(A.to(device=device, dtype=dtype))
        self.B = nn.Parameter(torch.zeros(rank, out_dim, device=device, dtype=dtype))

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scaling * (x @ self.A @ self.B)

    def delta_weight(self) -> torch.Tensor:
        """The update in ``nn.Linear.weight`` layout (out_dim, in_dim): ``scaling * (A @ B).T``."""
        return self.scaling * (self.A @ self.B).T

    def extra_repr(self) -> str:
        return (
            f"in_dim={self.A.shape[0]}, out_dim={self.B.shape[1]}, "
            f"rank={self.rank}, alpha={self.alpha}"
        )


class LinearWithLoRA(nn.Module):
    """A (frozen) ``nn.Linear`` plus a ``LoRALayer``: ``linear(x) + lora(x)``."""

    def __init__(
        self,
        linear: nn.Linear,
        rank: int,
        alpha: float,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.linear = linear
        self._bf16_copy: tuple[tuple[int, int], torch.Tensor, torch.Tensor | None] | None = None
        self.lora = LoRALayer(
            linear.in_features,
            linear.out_features,
            rank,
            alpha,
            generator=generator,
            device=linear.weight.device,
            dtype=linear.weight.dtype,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # linear(x) + scaling * (x @ A @ B) as one addmm, with the scaling folded into the small
        # B: the sum and the scaling never make a pass over the (tokens, out_dim) activations,
        # which in a full forward and backward cost about as much as the adapters' matmuls.
        out = self._frozen_linear(x)
        flat = x.reshape(-1, x.shape[-1])
        lora = self.lora
        fused = torch.addmm(out.reshape(-1, out.shape[-1]), flat @ lora.A, lora.B * lora.scaling)
        return fused.view(out.shape)

    def _frozen_linear(self, x: torch.Tensor) -> torch.Tensor:
        """``self.linear(x)``; under bf16 autocast on the CPU, from a bf16 copy of the frozen
        weights kept from pass to pass. Autocast would cast them again at every pass (for
        GPT-2 124M on a CPU, 130 of a ~570 ms LoRA step) and rounds them the same way, so
        the outputs and gradients are bit-identical; the copy costs half the weights' memory."""
        linear = self.linear
        weight, bias = linear.weight, linear.bias
        if (
            x.device.type != "cpu"
            or weight.dtype != torch.float32
            or weight.requires_grad
            or (bias is not None and bias.requires_grad)
            or not torch.is_autocast_enabled("cpu")
            or torch.get_autocast_dtype("cpu") != torch.bfloat16
        ):
            return linear(x)
        key = (weight._version, weight.data_ptr())
        if self._bf16_copy is None or self._bf16_copy[0] != key:
            half_bias = None if bias is None else bias.detach().to(torch.bfloat16)
            self._bf16_copy = (key, weight.detach().to(torch.bfloat16), half_bias)
        _, half_weight, half_bias = self._bf16_copy
        return F.linear(x.to(torch.bfloat16), half_weight, half_bias)


def replace_linear_with_lora(
    module: nn.Module,
    rank: int,
    alpha: float,
    generator: torch.Generator | None = None,
) -> int:
    """Wrap every ``nn.Linear`` inside ``module`` in a ``LinearWithLoRA``, in place.

    Layers already wrapped are left alone (so a second call adds nothing). Returns the number of
    layers wrapped. With a ``generator`` the adapters' init is reproducible and independent of
    the global RNG.
    """
    replaced = 0
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            setattr(module, name, LinearWithLoRA(child, rank, alpha, generator=generator))
            replaced += 1
        elif not isinstance(child, LinearWithLoRA):
            replaced += replace_linear_with_lora(child, rank, alpha, generator)
    return replaced


def merge_lora(module: nn.Module) -> int:
    """Fold each adapter into its Linear (``W += alpha / rank * (A @ B).T``) and put the plain
    ``nn.Linear`` back, in place, so the module tree (and state dict) is the original one again.

    Returns the number of adapters merged. The merged weights keep their ``requires_grad``.
    """
    merged = 0
    for name, child in module.named_children():
        if isinstance(child, LinearWithLoRA):
            linear = child.linear
            with torch.no_grad():
                delta = child.lora.delta_weight().to(torch.float32)
                linear.weight.copy_((linear.weight.to(torch.float32) + delta).to(linear.weight))
            setattr(module, name, linear)
            merged += 1
        else:
            merged += merge_lora(child)
    return merged


def has_lora(module: nn.Module) -> bool:
    """Whether ``module`` contains a ``LinearWithLoRA``."""
    return any(isinstance(m, LinearWithLoRA) for m in module.modules())
