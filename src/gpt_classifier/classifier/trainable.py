"""Which parameters are fine-tuned (the book's choices and its bonus-table variants): ``head``
only the new ``out_head`` (the table's "last_layer"); ``last-blocks:N`` the last N blocks +
``final_norm`` + ``out_head`` (the book's N=1, ``last-block``); ``all``; ``lora`` adapters on
every Linear of the blocks plus the head."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

import torch
from torch import nn

from ..errors import GPTClassifierError
from ..model import count_parameters
from .lora import LinearWithLoRA, has_lora, replace_linear_with_lora
from .model import GPTClassifier

TRAINABLE_FORMS = ("head", "last-block", "last-blocks:N", "all", "lora")


class TrainableKind(str, Enum):
    HEAD = "head"
    LAST_BLOCKS = "last-blocks"
    ALL = "all"
    LORA = "lora"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class TrainableSpec:
    """A parsed ``--trainable`` value (``num_blocks`` for ``last-blocks`` only); ``str(spec)`` is
    the spelling run.json records (``last-blocks:1`` for ``last-block``)."""

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
            f"invalid trainable spec {spec!r}; valid forms: {', '.join(TRAINABLE_FORMS)} "
            "(N a positive number of blocks)"
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
    """Freeze ``model``, then unfreeze what ``spec`` names, in place; ``lora`` first wraps each
    Linear of the blocks (adapters drawn from ``lora_seed``; existing adapters are kept)."""
    spec = parse_trainable(spec)
    gpt = model.gpt
    n_layers = len(gpt.trf_blocks)
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
        # Appendix E also wraps out_head in LoRA; our head is new and small (emb_dim x classes),
        # so it stays a plain Linear, fully trainable, and only the pretrained Linears get adapters.
        generator = torch.Generator().manual_seed(lora_seed)
        replace_linear_with_lora(gpt.trf_blocks, lora_rank, lora_alpha, generator)
        for module in gpt.trf_blocks.modules():
            if isinstance(module, LinearWithLoRA):
                module.lora.requires_grad_()


def first_trainable_block(model: GPTClassifier) -> int:
    """The first block with a trainable parameter or a LoRA adapter (0 if the embeddings train,
    ``n_layers`` if all is frozen up to ``final_norm``): the states entering it can be cached."""
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
