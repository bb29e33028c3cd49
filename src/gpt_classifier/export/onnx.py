"""A run as ``model.onnx``: ``input_ids`` and ``attention_mask`` (int64, ``(batch, length)``,
right padding) to ``logits`` ``(batch, classes)``. The mask gives each text's length; with the
causal mask the real tokens never see the padding after them, so any pad id does."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from ..classifier import GPTClassifier, Pooling
from ..config import EOT_TOKEN_ID
from ..errors import GPTClassifierError

OPSET = 17


class _Logits(nn.Module):
    """The classifier's logits with the lengths read from ``attention_mask``; ``last`` reads the
    last real token, as the run's predictor (equal-length batches) does."""

    def __init__(self, model: GPTClassifier) -> None:
        super().__init__()
        self.model = model
        self.pooling = Pooling.LAST_REAL if model.pooling == Pooling.LAST else model.pooling

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        # pool_hidden's pooling written with shape-free ops: the tracer records len() and
        # shape values as constants, which would fix the batch size
        gpt = self.model.gpt
        hidden = gpt.final_norm(gpt.hidden_states(input_ids))  # (B, T, D)
        real = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
        if self.pooling == Pooling.MEAN:
            return gpt.out_head((hidden * real).sum(1) / real.sum(1))
        seen = real.cumsum(1)  # real tokens up to each position: the first is 1, the last all
        wanted = 1 if self.pooling == Pooling.FIRST else real.sum(1, keepdim=True)
        at = ((seen == wanted) & (real > 0)).to(hidden.dtype)
        return gpt.out_head((hidden * at).sum(1))


def write_onnx(model: GPTClassifier, folder: Path) -> None:
    """``model.onnx`` in ``folder``, by the TorchScript exporter (offline, no onnxscript)."""
    example = torch.full((2, 3), EOT_TOKEN_ID, dtype=torch.long)
    dynamic = {name: {0: "batch", 1: "length"} for name in ("input_ids", "attention_mask")}
    with warnings.catch_warnings():  # the tracer's notes on shape checks run while tracing
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Logits(model).eval(),
            (example, torch.ones_like(example)),
            str(folder / "model.onnx"),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={**dynamic, "logits": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )


def check_onnx_installed() -> None:
    if importlib.util.find_spec("onnx") is None:  # the exporter's own error is a traceback
        raise GPTClassifierError(
            "the ONNX export needs the onnx package: pip install 'gpt-classifier[export]'"
        )
