"""A lazy model's weights read without holding them: the checkpoint fingerprint, the saved file.

A model built by ``weights.build_lazy_model`` keeps its frozen modules on ``meta``; these read
them from its weight source one module at a time (see :class:`weights.LazyWeights`).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from .weights import LazyWeights, lazy_weights_of

__all__ = ["frozen_parameter_sample", "iter_state_dict", "save_streamed"]


def _module_of(lazy: LazyWeights, gpt_name: str) -> str:
    return next(name for name in lazy.names if gpt_name.startswith(name + "."))


def frozen_parameter_sample(model: nn.Module, count: int = 4) -> list[list[float]]:
    """The first 64 values of the first ``count`` frozen parameters (a checkpoint's fingerprint
    of the base weights), without materialising a lazy model."""
    lazy = lazy_weights_of(model)
    sample = []
    for name, param in model.named_parameters():
        if len(sample) == count:
            break
        if param.requires_grad:
            continue
        if lazy is None or not param.is_meta:
            sample.append(param.detach().flatten()[:64].tolist())
            continue
        gpt_name = name.removeprefix("gpt.")
        if gpt_name not in lazy.samples:
            for _ in lazy.stream(_module_of(lazy, gpt_name)):
                pass
        sample.append(lazy.samples[gpt_name])
    return sample


def iter_state_dict(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """``model.state_dict()`` in its order as ``(name, tensor)``; a lazy model's frozen modules
    read one at a time (an embedding in pieces of rows, under the same name)."""
    lazy, drawn = lazy_weights_of(model), set()
    for key, value in model.state_dict(keep_vars=True).items():
        if not value.is_meta:
            yield key, value.detach()
            continue
        assert lazy is not None, f"{key} is on the meta device"
        gpt_key = key.removeprefix("gpt.")
        module = _module_of(lazy, gpt_key)
        if module not in drawn:  # a module's tensors are consecutive in the state dict
            drawn.add(module)
            prefix = key[: len(key) - len(gpt_key)] + module + "."
            yield from ((prefix + local, piece) for local, piece in lazy.stream(module))


_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64"}


def save_streamed(model: nn.Module, path: Path, metadata: dict[str, str]) -> None:
    """``safetensors.torch.save_file(model.state_dict(), path, metadata)`` holding at most one
    frozen module of a lazy model in memory: the header from the shapes, then the tensors."""
    entries, offset = {}, 0
    for key, value in model.state_dict(keep_vars=True).items():
        size = value.numel() * value.element_size()
        entries[key] = {
            "dtype": _DTYPES[value.dtype],
            "shape": list(value.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    header = json.dumps({"__metadata__": metadata, **entries}, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(header)))
        handle.write(header)
        for _, tensor in iter_state_dict(model):
            handle.write(tensor.contiguous().cpu().reshape(-1).view(torch.uint8).numpy().data)
