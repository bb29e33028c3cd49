"""GPTClassifier: GPT-2 with its 50,257-way ``out_head`` replaced by ``Linear(emb_dim, classes)``.

The book (ch. 6) replaces ``model.out_head`` and reads the logits of the last token,
``model(x)[:, -1, :]``. Here the hidden states are pooled *before* the head, which gives the same
logits (the head acts on each position on its own, and it is affine, so even the mean of the
per-token logits equals the head of the mean) while computing the head once per text.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import GPTClassifierError
from ..model import GPTModel
from .packing import PackedBatch
from .pooling import Pooling, pool_hidden, pooled_positions, validate_pooling


def _seeded_linear(
    in_features: int,
    out_features: int,
    seed: int,
    device: torch.device,
    dtype: torch.dtype,
) -> nn.Linear:
    """``nn.Linear`` with PyTorch's default init drawn from its own generator.

    ``nn.Linear(...)`` would draw from (and advance) the global RNG; here the layer is built
    uninitialised and its tensors are drawn on the CPU from ``torch.Generator().manual_seed(seed)``,
    so the head is the same for a seed on every device and the global RNG state is untouched.
    """
    generator = torch.Generator().manual_seed(seed)
    weight = torch.empty(out_features, in_features)
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)  # as nn.Linear
    bound = 1 / math.sqrt(in_features)
    bias = torch.empty(out_features).uniform_(-bound, bound, generator=generator)
    with torch.random.fork_rng(devices=[]):  # nn.Linear's own init draws from the global RNG
        linear = nn.Linear(in_features, out_features)
    linear.weight = nn.Parameter(weight.to(device=device, dtype=dtype))
    linear.bias = nn.Parameter(bias.to(device=device, dtype=dtype))
    return linear


class GPTClassifier(nn.Module):
    """A ``GPTModel`` (kept as ``self.gpt``, the book's module tree) with a classification head.

    ``forward(input_ids (B, T), lengths (B,) | None) -> logits (B, num_classes)``.
    """

    def __init__(
        self,
        gpt: GPTModel,
        num_classes: int,
        pooling: str | Pooling = Pooling.LAST_REAL,
        head_seed: int = 123,
    ) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise GPTClassifierError(
                f"a classifier needs at least 2 classes (got num_classes={num_classes!r})"
            )
        self.num_classes = num_classes
        self.pooling = validate_pooling(pooling)
        self.gpt = gpt
        reference = gpt.final_norm.scale  # the head follows the model's device and dtype
        device = reference.device
        if reference.is_meta and getattr(gpt, "lazy_weights", None) is not None:
            device = torch.device("cpu")  # a lazy model (lazy_weights.py): the head is real
        # The book: model.out_head = torch.nn.Linear(in_features=768, out_features=num_classes),
        # a new, randomly initialised layer with a bias (GPT-2's own out_head has none).
        gpt.out_head = _seeded_linear(
            gpt.cfg.emb_dim, num_classes, head_seed, device, reference.dtype
        )

    @property
    def cfg(self):
        return self.gpt.cfg

    @property
    def n_layers(self) -> int:
        return len(self.gpt.trf_blocks)

    def _classify(self, hidden: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """final_norm -> pool -> out_head on the output of the last transformer block."""
        pooled = pool_hidden(self.gpt.final_norm(hidden), lengths, self.pooling)  # (B, D)
        return self.gpt.out_head(pooled)  # (B, num_classes)

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Class logits ``(B, num_classes)`` of token ids ``(B, T)``; ``lengths`` ``(B,)`` counts
        each row's real tokens (right padding), ``None`` if no row is padded."""
        return self._run_blocks(self.gpt.embed(input_ids), 0, lengths)

    def _run_blocks(
        self, x: torch.Tensor, start_block: int, lengths: torch.Tensor | None
    ) -> torch.Tensor:
        """``trf_blocks[start_block:]`` then final_norm, pooling and the head.

        When the pooling reads one position per row, the last block runs at that position
        only (``TransformerBlock.forward_at``): same logits and gradients, several times less
        work, as nothing else of the last block reaches the head.
        """
        blocks = self.gpt.trf_blocks[start_block:]
        positions = None if len(blocks) == 0 else pooled_positions(x, lengths, self.pooling)
        if positions is None:
            for block in blocks:
                x = block(x)
            return self._classify(x, lengths)
        for block in blocks[:-1]:
            x = block(x)
        pooled = blocks[-1].forward_at(x, positions)  # (B, D)
        return self.gpt.out_head(self.gpt.final_norm(pooled))

    @property
    def can_pack(self) -> bool:
        """Whether ``forward_packed`` gives this model's answers: each text's states must not
        depend on what follows it (the causal mask), and ``last`` pooling reads position -1 of
        a padded row, which packing has no equivalent for."""
        return self.cfg.causal and self.pooling != Pooling.LAST

    def forward_packed(self, packed: PackedBatch) -> torch.Tensor:
        """Class logits ``(texts, num_classes)`` of texts packed end to end (``packing.pack``):
        every block but the last runs on the packed rows, where no work goes to padding; the
        last block, which reads one position per text (or all of them for ``mean``), then runs
        on the texts unpacked into right-padded rows, as ``forward`` would. Equal to
        ``forward`` of the padded batch up to float rounding (tested)."""
        if not self.can_pack:
            raise GPTClassifierError(
                "packed batches need the causal mask and a pooling other than 'last'"
            )
        device = self.gpt.tok_emb.weight.device
        x = self.gpt.embed(packed.input_ids.to(device), packed.positions.to(device))
        last = max(self.n_layers - 1, 0)
        if last > 0:
            mask = packed.attention_mask().to(x.device)
            for block in self.gpt.trf_blocks[:last]:
                x = block(x, mask)
        return self._run_blocks(packed.unpack(x), last, packed.lengths)

    def forward_from_hidden(
        self,
        hidden: torch.Tensor,
        start_block: int,
        lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Class logits from hidden states ``(B, T, D)`` entering ``trf_blocks[start_block]``.

        ``hidden`` is ``gpt.hidden_states(input_ids, 0, start_block)`` (the embeddings when
        ``start_block == 0``); with the blocks before ``start_block`` frozen it can be cached.
        ``start_block == n_layers`` runs only final_norm, pooling and the head.
        """
        if isinstance(start_block, bool) or not 0 <= start_block <= self.n_layers:
            raise GPTClassifierError(
                f"start_block must be between 0 and {self.n_layers} (got {start_block!r})"
            )
        if hidden.dim() != 3 or hidden.shape[-1] != self.cfg.emb_dim:
            raise GPTClassifierError(
                f"hidden states must have shape (batch, seq, {self.cfg.emb_dim}) "
                f"(got {tuple(hidden.shape)})"
            )
        return self._run_blocks(hidden, start_block, lengths)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, pooling={str(self.pooling)!r}"
