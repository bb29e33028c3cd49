"""A GPT-2 whose frozen weights are never all in memory at once.

Fine-tuning the last block on cached prefix states needs the embeddings and the frozen blocks
only to compute those states, one block after the other, and again when the run is saved. A
:class:`LazyWeights` keeps the model as a skeleton on the ``meta`` device (no memory) and gives
any top-level module's tensors on demand: ``materialize`` fills it in place (the trainable
part, or one frozen block while the prefix runs through it), ``release`` returns it to
``meta``, ``tensors`` computes its state without keeping it (hashing, saving).

For ``--init random`` the tensors are those of ``weights.random_model(cfg, seed)``, bit for
bit: GPT-2's initialisation is replayed from a private generator, with the generator's state
recorded in front of each module so any module can be drawn again without redrawing the ones
before it. The 124M model's 475 MiB of float32 weights thus never exist at once; the largest
tensor alive is ``tok_emb`` (147 MiB), and only while the embeddings are computed or saved.
"""

from __future__ import annotations

import contextlib
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import torch
from torch import nn

from .config import GPTConfig
from .model import GPTModel, LayerNorm, TransformerBlock
from .weights import INIT_STD, init_gpt2_module, random_model_generator


@contextlib.contextmanager
def without_default_init() -> Iterator[None]:
    """Build modules without PyTorch's default initialisation (GPT-2's replaces it). On the
    ``meta`` device that initialisation would also import torch's Python decompositions, some
    70 MiB of resident memory for nothing."""
    with (
        mock.patch.object(nn.Linear, "reset_parameters", lambda self: None),
        mock.patch.object(nn.Embedding, "reset_parameters", lambda self: None),
    ):
        yield


def skeleton_gpt(cfg: GPTConfig) -> GPTModel:
    """A ``GPTModel`` whose tensors are all on ``meta``: shapes, no memory."""
    with torch.device("meta"), without_default_init():
        return GPTModel(cfg)


def _empty_module(gpt: GPTModel, name: str) -> nn.Module:
    """A new CPU module like ``gpt``'s child ``name``, its tensors allocated, not initialised."""
    with without_default_init():
        if name.startswith("trf_blocks."):
            return TransformerBlock(gpt.cfg)
        if name == "final_norm":
            return LayerNorm(gpt.cfg.emb_dim)
        embedding = gpt.get_submodule(name)
        return nn.Embedding(embedding.num_embeddings, embedding.embedding_dim)


def top_level_modules(gpt: GPTModel) -> list[str]:
    """The modules that are materialised as units, in GPT-2's initialisation order."""
    blocks = [f"trf_blocks.{index}" for index in range(len(gpt.trf_blocks))]
    return ["tok_emb", "pos_emb", *blocks, "final_norm"]


_EMBEDDINGS = ("tok_emb", "pos_emb")
_CHUNK_ROWS = 4096  # an embedding is drawn 4,096 rows at a time (12 MiB for GPT-2's width)


class LazyWeights:
    """The weights of ``random_model(gpt.cfg, seed)`` for the skeleton ``gpt`` (on ``meta``)."""

    def __init__(self, gpt: GPTModel, seed: int) -> None:
        self.gpt = gpt
        self.names = top_level_modules(gpt)
        self._generator = random_model_generator(seed)
        self._states: dict[str, torch.Tensor] = {self.names[0]: self._generator.get_state()}
        self.samples: dict[str, list[float]] = {}  # parameter name -> its first 64 values

    def is_materialized(self, name: str) -> bool:
        return not any(t.is_meta for t in self.gpt.get_submodule(name).parameters())

    def stream(self, name: str) -> Iterator[tuple[str, torch.Tensor]]:
        """``name``'s state dict as ``(local name, tensor)``, in order, drawn afresh (or read
        if materialised); an embedding comes as consecutive blocks of rows under one name, so
        GPT-2's 147 MiB ``tok_emb`` is never whole. Consume it to the end before the next."""
        if self.is_materialized(name):
            for key, tensor in self.gpt.get_submodule(name).state_dict().items():
                yield key, tensor.detach()
            return
        self._seek(self.names.index(name))
        yield from self._generate(name)

    def tensors(self, name: str) -> dict[str, torch.Tensor]:
        """``name``'s state dict (local names), whole."""
        pieces: dict[str, list[torch.Tensor]] = {}
        for key, tensor in self.stream(name):
            pieces.setdefault(key, []).append(tensor)
        return {
            key: parts[0] if len(parts) == 1 else torch.cat(parts) for key, parts in pieces.items()
        }

    def embedding_rows(self, name: str, rows: torch.Tensor) -> torch.Tensor:
        """``embedding.weight[rows]`` of an embedding (``rows`` sorted, unique) without
        drawing the whole table at once."""
        out = torch.empty(len(rows), self.gpt.get_submodule(name).embedding_dim)
        start = 0
        for _, piece in self.stream(name):
            wanted = (rows >= start) & (rows < start + piece.shape[0])
            out[wanted] = piece[rows[wanted] - start]
            start += piece.shape[0]
        return out

    def materialize(self, name: str) -> None:
        """Give ``name`` its real weights (on the CPU), keeping its requires_grad flags."""
        if self.is_materialized(name):
            return
        module = self.gpt.get_submodule(name)
        values = self.tensors(name)
        for param_name, param in list(module.named_parameters()):
            owner_name, _, attr = param_name.rpartition(".")
            owner = module.get_submodule(owner_name) if owner_name else module
            value = nn.Parameter(values[param_name], requires_grad=param.requires_grad)
            setattr(owner, attr, value)

    def release(self, name: str) -> None:
        """Back to ``meta``: the module's memory is freed (its weights can be drawn again)."""
        module = self.gpt.get_submodule(name)
        for param_name, param in list(module.named_parameters()):
            owner_name, _, attr = param_name.rpartition(".")
            owner = module.get_submodule(owner_name) if owner_name else module
            meta = torch.empty_like(param, device="meta")
            setattr(owner, attr, nn.Parameter(meta, requires_grad=param.requires_grad))

    def _seek(self, index: int) -> None:
        """Put the generator where module ``index`` starts drawing, replaying (and discarding)
        the modules before it that were never drawn."""
        known = max(i for i in range(index + 1) if self.names[i] in self._states)
        self._generator.set_state(self._states[self.names[known]])
        for position in range(known, index):
            for _ in self._generate(self.names[position]):
                pass

    def _generate(self, name: str) -> Iterator[tuple[str, torch.Tensor]]:
        if name in _EMBEDDINGS:
            embedding = self.gpt.get_submodule(name)
            rows, width = embedding.num_embeddings, embedding.embedding_dim
            for start in range(0, rows, _CHUNK_ROWS):  # a multiple of 16 rows: the same
                piece = torch.empty(min(_CHUNK_ROWS, rows - start), width)  # numbers as whole
                piece.normal_(0.0, INIT_STD, generator=self._generator)
                if start == 0:
                    self.samples.setdefault(f"{name}.weight", piece.flatten()[:64].tolist())
                yield "weight", piece
        else:
            module = _empty_module(self.gpt, name)
            init_gpt2_module(module, name, self.gpt.cfg.n_layers, self._generator)
            for param_name, param in module.named_parameters():
                sample = param.detach().flatten()[:64].tolist()
                self.samples.setdefault(f"{name}.{param_name}", sample)
            yield from ((key, t.detach()) for key, t in module.state_dict().items())
        position = self.names.index(name)
        if position + 1 < len(self.names):
            self._states.setdefault(self.names[position + 1], self._generator.get_state())


def lazy_weights_of(model: nn.Module) -> LazyWeights | None:
    """The :class:`LazyWeights` behind a classifier built by ``build_lazy_classifier``."""
    return getattr(model, "lazy_weights", None)


def frozen_parameter_sample(model: nn.Module, count: int = 4) -> list[list[float]]:
    """The first 64 values of the first ``count`` frozen parameters (a checkpoint's fingerprint
    of the base weights), without materialising a lazy model."""
    lazy = lazy_weights_of(model)
    sample = []
    for name, param in model.named_parameters():
        if param.requires_grad:
            continue
        if len(sample) == count:
            break
        if lazy is None or not param.is_meta:
            sample.append(param.detach().flatten()[:64].tolist())
            continue
        gpt_name = name.removeprefix("gpt.")
        if gpt_name not in lazy.samples:
            module = next(n for n in lazy.names if gpt_name.startswith(n + "."))
            lazy.tensors(module)
        sample.append(lazy.samples[gpt_name])
    return sample


# --------------------------------------------------------------------------------------------
# Saving a lazy model: safetensors written one module at a time
# --------------------------------------------------------------------------------------------

_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def iter_state_dict(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """``model.state_dict()`` in its order as ``(name, tensor)``; a lazy model's frozen
    modules drawn one at a time (an embedding in blocks of rows, under the same name)."""
    lazy = lazy_weights_of(model)
    state = model.state_dict(keep_vars=True)
    keys = list(state)
    position = 0
    while position < len(keys):
        key = keys[position]
        if not state[key].is_meta:
            yield key, state[key].detach()
            position += 1
            continue
        assert lazy is not None, f"{key} is on the meta device"
        gpt_key = key.removeprefix("gpt.")
        module = next(n for n in lazy.names if gpt_key.startswith(n + "."))
        prefix = key[: len(key) - len(gpt_key)] + module + "."
        drawn = set()
        for local, piece in lazy.stream(module):
            drawn.add(local)
            yield prefix + local, piece
        position += len(drawn)  # a module's tensors are consecutive in the state dict


def save_streamed(model: nn.Module, path: Path, metadata: dict[str, str]) -> None:
    """``safetensors.torch.save_file(model.state_dict(), path, metadata)`` that holds at most one
    frozen module in memory: the header is computed from the shapes, then the tensors are
    written in order."""
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
