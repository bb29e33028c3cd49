"""This CPU's matmul rate on GPT-2's shapes (the ceiling for every stage), and FLOP counts of
the stages so the benchmark can say how close to it each one runs.

Rates are the best of several repetitions (a shared CPU only ever makes them lower):

* fp32 and bf16 (autocast) ``nn.Linear``, as the model runs them;
* int8: ``torch._int_mm`` (int8 x int8 -> int32, the raw kernel) and
  ``torch.ao.quantization.quantize_dynamic`` on the same ``Linear`` (weights quantised once,
  activations per call; deprecated in torch 2.13 in favour of torchao, which is not installed).
"""

from __future__ import annotations

import time
import warnings
from typing import Any

# (rows, in, out): the prefix's ~1k-token slabs through the MLP and the attention projections,
# and a training step's 8 pooled rows through the MLP
SHAPES = {
    "1024x768 @ 768x3072": (1024, 768, 3072),
    "1024x768 @ 768x768": (1024, 768, 768),
    "8x768 @ 768x3072": (8, 768, 3072),
}


def _best_seconds(call: Any, repeats: int = 7) -> float:
    call()  # warm-up: oneDNN compiles its kernel for the shape
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_peaks() -> dict[str, dict[str, float]]:
    """GFLOP/s per shape and kind (fp32, bf16, int8 kernel, int8 dynamic Linear)."""
    return {label: _rates(*shape) for label, shape in SHAPES.items()}


def _rates(rows: int, d_in: int, d_out: int) -> dict[str, float]:
    import torch

    flops = 2 * rows * d_in * d_out
    linear = torch.nn.Linear(d_in, d_out).eval()
    x = torch.randn(rows, d_in)
    rates = {}
    with torch.inference_mode():
        rates["fp32"] = flops / _best_seconds(lambda: linear(x)) / 1e9
        with torch.autocast("cpu", dtype=torch.bfloat16):
            rates["bf16"] = flops / _best_seconds(lambda: linear(x)) / 1e9
        a = torch.randint(-128, 128, (max(rows, 17), d_in), dtype=torch.int8)
        b = torch.randint(-128, 128, (d_in, d_out), dtype=torch.int8)
        try:  # _int_mm wants more than 16 rows
            seconds = _best_seconds(lambda: torch._int_mm(a, b))
            rates["int8 (_int_mm)"] = 2 * a.shape[0] * d_in * d_out / seconds / 1e9
        except RuntimeError:
            rates["int8 (_int_mm)"] = float("nan")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
            from torch.ao.quantization import quantize_dynamic

            quantized = quantize_dynamic(
                torch.nn.Sequential(linear), {torch.nn.Linear}, dtype=torch.qint8
            )
        rates["int8 (quantize_dynamic)"] = flops / _best_seconds(lambda: quantized(x)) / 1e9
    return {kind: round(rate, 1) for kind, rate in rates.items()}


def block_flops_per_token(emb_dim: int, context: float) -> float:
    """Forward FLOPs of one transformer block per token: the four ``D x D`` projections and the
    ``D x 4D`` MLP (24 D^2), plus attention over ``context`` earlier tokens on average."""
    return 24 * emb_dim**2 + 4 * context * emb_dim


def pooled_step_flops(batch: int, emb_dim: int, width: float, n_heads: int) -> float:
    """FLOPs of one training step of the last block at the pooled positions (forward +
    backward ~ 3x forward): query, the two absorbed projections, out_proj, MLP per text
    (2 * 12 D^2) and the scores and mix over ``width`` tokens per head."""
    forward = batch * (2 * 12 * emb_dim**2 + 4 * n_heads * width * emb_dim)
    return 3 * forward
