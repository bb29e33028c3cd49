"""Which parameters are fine-tuned: ``head``, ``last-blocks:N`` (+ ``final_norm`` and the head;
the book's ``last-block`` is N=1), ``all``, or ``lora`` adapters on the blocks plus the head.
Low-rank adaptation (the book's appendix E): ``linear(x) + alpha / rank * (x @ A @ B)``."""

import math
import re
from dataclasses import dataclass
from enum import StrEnum

import torch
import torch.nn.functional as F
from torch import Generator, nn

from ..errors import GPTClassifierError
from ..model import count_parameters
from .model import GPTClassifier


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


class TrainableKind(StrEnum):
    HEAD = "head"
    LAST_BLOCKS = "last-blocks"
    ALL = "all"
    LORA = "lora"


@dataclass(frozen=True)
class TrainableSpec:
    """A parsed ``--trainable``; ``str(spec)`` is what run.json records (``last-blocks:1``)."""

    kind: TrainableKind
    num_blocks: int | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.num_blocks}" if self.num_blocks is not None else str(self.kind)


def parse_trainable(spec: str | TrainableSpec) -> TrainableSpec:
    """Parse ``head``, ``last-block``, ``last-blocks:N``, ``all`` or ``lora``."""
    if isinstance(spec, TrainableSpec):
        return spec
    text = spec.strip().lower() if isinstance(spec, str) else ""
    if text in ("head", "all", "lora"):
        return TrainableSpec(TrainableKind(text))
    match = re.fullmatch(r"last-block|last-blocks:(\d+)", text)
    blocks = int(match.group(1) or 1) if match else 0
    if blocks < 1:
        raise GPTClassifierError(
            f"invalid trainable spec {spec!r}; valid forms: head, last-block, last-blocks:N, all, "
            "lora (N a positive number of blocks)"
        )
    return TrainableSpec(TrainableKind.LAST_BLOCKS, blocks)


def apply_trainable(
    model: GPTClassifier,
    spec: str | TrainableSpec,
    *,
    lora_rank: int = 16,
    lora_alpha: float = 16.0,
    lora_seed: int = 123,
) -> None:
    """Freeze ``model``, then unfreeze what ``spec`` names, in place (existing adapters kept)."""
    spec, gpt, n_layers = parse_trainable(spec), model.gpt, model.n_layers
    if spec.kind == TrainableKind.LAST_BLOCKS and not 1 <= spec.num_blocks <= n_layers:
        raise GPTClassifierError(
            f"cannot train the last {spec.num_blocks} blocks: the model has {n_layers} "
            f"(use last-blocks:1 to last-blocks:{n_layers}, or all)"
        )
    model.requires_grad_(spec.kind == TrainableKind.ALL)
    gpt.out_head.requires_grad_()
    if spec.kind == TrainableKind.LAST_BLOCKS:
        gpt.trf_blocks[n_layers - spec.num_blocks :].requires_grad_()
        gpt.final_norm.requires_grad_()
    elif spec.kind == TrainableKind.LORA:
        # Appendix E also wraps out_head; ours is new and small, so it trains in full instead
        generator = torch.Generator().manual_seed(lora_seed)
        replace_linear_with_lora(gpt.trf_blocks, lora_rank, lora_alpha, generator)
        for adapter in (m for m in gpt.trf_blocks.modules() if isinstance(m, LoRALayer)):
            adapter.requires_grad_()  # adapters already there were frozen with the rest


def first_trainable_block(model: GPTClassifier) -> int:
    """The first block that trains (0: the embeddings do): the states entering it can be cached."""
    gpt = model.gpt
    if any(p.requires_grad for m in (gpt.tok_emb, gpt.pos_emb) for p in m.parameters()):
        return 0
    for index, block in enumerate(gpt.trf_blocks):
        if has_lora(block) or any(p.requires_grad for p in block.parameters()):
            return index
    return len(gpt.trf_blocks)


def describe_trainable(model: nn.Module) -> str:
    """E.g. ``trainable parameters: 7,090,946 of 124,441,346 (5.70 %)``."""
    trainable, total = count_parameters(model)
    share = 100.0 * trainable / total if total else 0.0
    return f"trainable parameters: {trainable:,} of {total:,} ({share:.2f} %)"
