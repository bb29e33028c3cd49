"""Which parameters are fine-tuned: ``head``, ``last-blocks:N`` (+ ``final_norm`` and the head;
the book's ``last-block`` is N=1), ``all``, or ``lora`` adapters on the blocks plus the head."""

import re
from dataclasses import dataclass
from enum import StrEnum

import torch
from torch import nn

from ..errors import GPTClassifierError
from ..model import count_parameters
from .lora import LinearWithLoRA, has_lora, replace_linear_with_lora
from .model import GPTClassifier


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
    if spec.kind == TrainableKind.ALL:
        return
    gpt.out_head.requires_grad_()
    if spec.kind == TrainableKind.LAST_BLOCKS:
        gpt.trf_blocks[n_layers - spec.num_blocks :].requires_grad_()
        gpt.final_norm.requires_grad_()
    elif spec.kind == TrainableKind.LORA:
        # Appendix E also wraps out_head; ours is new and small, so it trains in full instead
        generator = torch.Generator().manual_seed(lora_seed)
        replace_linear_with_lora(gpt.trf_blocks, lora_rank, lora_alpha, generator)
        for module in gpt.trf_blocks.modules():
            if isinstance(module, LinearWithLoRA):
                module.lora.requires_grad_()


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
