"""GPTClassifier: GPT-2 with its ``out_head`` replaced by ``Linear(emb_dim, classes)``; the hidden
states are pooled *before* the head (the same logits as the book's ``model(x)[:, -1, :]``)."""

import torch
from torch import Tensor, nn

from ..errors import GPTClassifierError
from ..model import GPTModel
from . import pooling as pools
from .packing import PackedBatch, packing_of


class GPTClassifier(nn.Module):
    """A ``GPTModel`` (kept as ``self.gpt``, the book's module tree) with a classification head."""

    def __init__(
        self, gpt: GPTModel, num_classes: int, pooling: str = "last-real", head_seed: int = 123
    ) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise GPTClassifierError(
                f"a classifier needs at least 2 classes (got num_classes={num_classes!r})"
            )
        self.num_classes, self.pooling, self.gpt = num_classes, pools.validate_pooling(pooling), gpt
        reference = gpt.final_norm.scale  # the head follows the model's device and dtype
        lazy = reference.is_meta and getattr(gpt, "lazy_weights", None) is not None
        device = torch.device("cpu") if lazy else reference.device  # weights.LazyWeights: head real
        # drawn on the CPU from head_seed: the same head on every device, the global RNG untouched
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(head_seed)
            head = nn.Linear(gpt.cfg.emb_dim, num_classes)
        gpt.out_head = head.to(device=device, dtype=reference.dtype)

    @property
    def cfg(self):
        return self.gpt.cfg

    @property
    def n_layers(self) -> int:
        return len(self.gpt.trf_blocks)

    @property
    def can_pack(self) -> bool:
        """Whether ``forward_packed`` gives this model's answers."""
        return not any(pools.padding_reads(self.pooling, self.cfg.causal, None))

    def forward(
        self,
        input_ids: Tensor,
        lengths: Tensor | None = None,
        *,
        fast: bool = True,
        owners: Tensor | None = None,
    ) -> Tensor:
        """Class logits ``(B, classes)`` of token ids ``(B, T)`` with ``lengths`` real tokens."""
        return self.forward_from_hidden(self.gpt.embed(input_ids), 0, lengths, owners, fast=fast)

    def forward_packed(self, packed: PackedBatch) -> Tensor:
        """``forward`` of texts packed end to end (``packing.pack``), to float rounding."""
        if not self.can_pack:
            raise GPTClassifierError(
                "packed batches need the causal mask and a pooling other than 'last'"
            )
        device = self.gpt.tok_emb.weight.device
        input_ids, positions = packed.tokens()
        x = self.gpt.embed(input_ids.to(device), positions.to(device))  # (tokens, D)
        last = max(self.n_layers - 1, 0)
        packing = packing_of(packed.segments.to(device))
        for block in self.gpt.trf_blocks[:last]:
            x = block(x, packing)
        return self.forward_from_hidden(packed.unpack(x), last, packed.lengths)

    def forward_from_hidden(
        self,
        hidden: Tensor,
        start_block: int,
        lengths: Tensor | None = None,
        owners: Tensor | None = None,
        *,
        fast: bool = True,
    ) -> Tensor:
        """Class logits from the states ``(B, T, D)`` entering ``trf_blocks[start_block]``."""
        if isinstance(start_block, bool) or not 0 <= start_block <= self.n_layers:
            raise GPTClassifierError(
                f"start_block must be between 0 and {self.n_layers} (got {start_block!r})"
            )
        if hidden.dim() != 3 or hidden.shape[-1] != self.cfg.emb_dim:
            raise GPTClassifierError(
                f"hidden states must have shape (batch, seq, {self.cfg.emb_dim}) "
                f"(got {tuple(hidden.shape)})"
            )
        blocks = self.gpt.trf_blocks[start_block:]
        fast = fast and len(blocks) > 0  # then the last block runs at the pooled positions only
        positions = pools.pooled_positions(hidden, lengths, self.pooling) if fast else None
        for block in blocks if positions is None else blocks[:-1]:
            hidden = block(hidden)
        if positions is None:  # every block at every position: the book's model(x)[:, -1, :]
            pooled = pools.pool_hidden(self.gpt.final_norm(hidden), lengths, self.pooling)
        else:
            pooled = self.gpt.final_norm(blocks[-1].forward_at(hidden, positions))
        return pools.combine_windows(self.gpt.out_head(pooled), owners)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, pooling={str(self.pooling)!r}"
