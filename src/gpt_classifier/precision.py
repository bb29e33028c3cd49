"""Which float type the heavy matmuls run in: bfloat16 only where the hardware makes it pay."""

from __future__ import annotations

import contextlib
import platform

import torch

from .errors import GPTClassifierError

PRECISIONS = ("auto", "fp32", "bf16")


def _cpuinfo(key: str) -> str | None:
    """The value of the first ``key`` line of /proc/cpuinfo; None where it cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            lines = (line for line in handle if line.startswith(key))
            return next((line.split(":", 1)[1].strip() for line in lines), "")
    except OSError:
        return None


def cpu_has_fast_bf16() -> bool:
    """True on CPUs with native bfloat16 matmuls (AMX or AVX512-BF16); elsewhere oneDNN emulates
    it, several times slower than float32."""
    try:
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return False
    except (AttributeError, RuntimeError):
        return False
    flags = _cpuinfo("flags")  # None when not Linux: trust oneDNN's answer
    return flags is None or bool(set(flags.split()) & {"amx_bf16", "avx512_bf16"})


def describe_cpu() -> str:
    """The CPU's model name and the matmul features that decide its speed, for reports."""
    name = _cpuinfo("model name") or platform.processor() or platform.machine()
    flags = (_cpuinfo("flags") or "").split()
    labels = {"AMX": "amx_bf16", "AVX-512": "avx512f", "AVX2": "avx2"}
    features = [label for label, flag in labels.items() if flag in flags]
    return f"{name} ({', '.join(features)})" if features else name


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` becomes ``bf16`` on a GPU with bf16 or a CPU with fast bf16, else ``fp32``."""
    if precision not in PRECISIONS:
        raise GPTClassifierError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    has_bf16 = {"cuda": torch.cuda.is_bf16_supported, "cpu": cpu_has_fast_bf16}.get(device.type)
    return "bf16" if has_bf16 and has_bf16() else "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bfloat16 autocast for ``bf16``; a no-op for ``fp32``. Weights stay float32 either way."""
    bf16 = precision == "bf16"
    return torch.autocast(device.type, torch.bfloat16) if bf16 else contextlib.nullcontext()


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    if device is None or device == "auto":
        mps = getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise GPTClassifierError(f"unknown device {device!r}: {exc}") from None
