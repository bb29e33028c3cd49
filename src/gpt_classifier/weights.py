"""GPT-2 weights for ``GPTModel``: a model on ``meta``, each top-level module filled when needed
from a Hugging Face safetensors checkpoint (OpenAI's from the Hub) or GPT-2's seeded init;
strict: a missing, misshapen or unknown tensor is an error naming it (design.md, "Weights")."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import struct
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from .config import GPT2_SIZES, GPTConfig, canonical_model_name, is_model_name, resolve_config
from .errors import GPTClassifierError
from .model import GPTModel, LayerNorm, TransformerBlock, count_parameters

logger = logging.getLogger(__name__)
HF_PREFIX = "transformer."
IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")
INIT_STD = 0.02  # GPT-2's initializer_range
EMBEDDINGS = ("tok_emb", "pos_emb")
CHUNK_ROWS = 4096  # embedding rows at a time; a multiple of 16: the random draws stay the same
_SHOW = 3  # how many names of each kind of problem an error message lists
_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64"}
WEIGHTS_FILENAME = "model.safetensors"
_ALTERNATIVES = "pass --weights PATH (a .safetensors file or model directory) or use --init random"


class _Rule(NamedTuple):
    """A Hugging Face tensor and its parameter(s); kind: copy, conv1d (transposed), qkv (split)."""

    source: str
    targets: tuple[str, ...]
    kind: str = "copy"

    def expected_shape(self, params: Mapping[str, Tensor]) -> tuple[int, ...]:
        shape = tuple(params[self.targets[0]].shape)
        if self.kind == "qkv":  # (out, in) each -> (in, 3 * out)
            return (shape[1], 3 * shape[0]) if len(shape) == 2 else (3 * shape[0],)
        return shape[::-1] if self.kind == "conv1d" else shape

    def transposed(self, tensor: Tensor) -> bool:
        return self.kind == "conv1d" or (self.kind == "qkv" and tensor.dim() == 2)


def _rules(cfg: GPTConfig) -> list[_Rule]:
    def pair(theirs: str, ours: str, norm: bool = False) -> list[_Rule]:  # weight and bias
        weight, bias = ("scale", "shift") if norm else ("weight", "bias")
        return [
            _Rule(f"{theirs}.weight", (f"{ours}.{weight}",), "copy" if norm else "conv1d"),
            _Rule(f"{theirs}.bias", (f"{ours}.{bias}",)),
        ]

    rules = [_Rule("wte.weight", ("tok_emb.weight",)), _Rule("wpe.weight", ("pos_emb.weight",))]
    for i in range(cfg.n_layers):
        h, ours = f"h.{i}.", f"trf_blocks.{i}."
        qkv = tuple(f"{ours}att.W_{w}." for w in ("query", "key", "value"))
        rules += [
            *pair(h + "ln_1", ours + "norm1", norm=True),
            _Rule(h + "attn.c_attn.weight", tuple(w + "weight" for w in qkv), "qkv"),
            *pair(h + "attn.c_proj", ours + "att.out_proj"),
            *pair(h + "ln_2", ours + "norm2", norm=True),
            *pair(h + "mlp.c_fc", ours + "ff.layers.0"),
            *pair(h + "mlp.c_proj", ours + "ff.layers.2"),
        ]
        if cfg.qkv_bias:
            rules.append(_Rule(h + "attn.c_attn.bias", tuple(w + "bias" for w in qkv), "qkv"))
    return rules + pair("ln_f", "final_norm", norm=True)


def _module_of(target: str) -> str:
    """``trf_blocks.3.att.W_key.weight`` -> ``trf_blocks.3``; ``tok_emb.weight`` -> ``tok_emb``."""
    return ".".join(target.split(".")[: 2 if target.startswith("trf_blocks.") else 1])


def to_hf_state_dict(model: GPTModel) -> dict[str, Tensor]:
    """``model``'s weights in Hugging Face's layout; a zero ``c_attn.bias`` without ``qkv_bias``."""
    ours, cfg, tensors = model.state_dict(), model.cfg, {}
    for rule in _rules(cfg):
        parts = [ours[target].detach().float() for target in rule.targets]
        parts = [part.t() if rule.transposed(part) else part for part in parts]
        tensors[HF_PREFIX + rule.source] = torch.cat(parts, dim=-1).contiguous()
    for i in range(0 if cfg.qkv_bias else cfg.n_layers):
        tensors[f"{HF_PREFIX}h.{i}.attn.c_attn.bias"] = torch.zeros(3 * cfg.emb_dim)
    return tensors


def _strip_prefix(keys: Collection[str], source: str) -> dict[str, str]:
    """Map prefix-free names to the file's keys; a name present both ways is an error."""
    names = {key.removeprefix(HF_PREFIX): key for key in keys}
    if len(names) < len(keys):  # a name present both ways: the first such key
        first = next(key for key in keys if names[key.removeprefix(HF_PREFIX)] != key)
        name = first.removeprefix(HF_PREFIX)
        raise GPTClassifierError(
            f"{source}: tensor {name} appears twice (as {first} and {names[name]})"
        )
    return names


def module_names(cfg: GPTConfig) -> list[str]:
    """The modules materialised as units, in GPT-2's initialisation order."""
    return [*EMBEDDINGS, *(f"trf_blocks.{i}" for i in range(cfg.n_layers)), "final_norm"]


class CheckpointWeights:
    """A Hugging Face GPT-2 checkpoint's tensors: a dict, or safetensors files mapped only while
    read (mapped pages count as resident memory); read a module at a time once ``check``ed."""

    def __init__(self, source: str, tensors: Mapping[str, Tensor] | Sequence[Path]) -> None:
        self.source, self.tensors = source, tensors if isinstance(tensors, Mapping) else {}
        self.file_of, self.shapes = {}, {key: tuple(t.shape) for key, t in self.tensors.items()}
        for file in () if self.tensors else tensors:
            with _opened(file) as handle:
                for key in handle.keys():  # noqa: SIM118 (safe_open is not iterable)
                    self.file_of[key] = file
                    self.shapes[key] = tuple(handle.get_slice(key).get_shape())
        self.names = _strip_prefix(self.shapes, source)

    def read(self, key: str, rows: slice | None = None) -> Tensor:
        if key in self.tensors:
            return self.tensors[key] if rows is None else self.tensors[key][rows]
        with _opened(self.file_of[key]) as handle:
            return handle.get_tensor(key) if rows is None else handle.get_slice(key)[rows]

    def check(self, model: GPTModel) -> CheckpointWeights:
        """Every tensor's name and shape against ``model``'s, before anything is read."""

        def fmt(shape: Sequence[int]) -> str:
            return "(" + ", ".join(str(int(d)) for d in shape) + ")"

        def shown(items: list[str], separator: str = ", ") -> str:
            more = f" (and {len(items) - _SHOW} more)" if len(items) > _SHOW else ""
            return separator.join(items[:_SHOW]) + more

        rules, params = _rules(model.cfg), dict(model.named_parameters(remove_duplicate=False))
        needed = {rule.source: rule.expected_shape(params) for rule in rules}
        if "lm_head.weight" in self.names:
            needed["lm_head.weight"] = tuple(params["out_head.weight"].shape)
        missing, wrong = [], []
        for name, shape in needed.items():
            if (key := self.names.get(name)) is None:
                missing.append(f"{name} {fmt(shape)}")
            elif (got := self.shapes[key]) != shape:
                wrong.append(f"{key} has shape {fmt(got)} but the model needs {fmt(shape)}")
        ignored = {name for name in self.names if name.endswith(IGNORED_SUFFIXES)}
        unexpected = sorted(self.names[name] for name in self.names.keys() - needed - ignored)
        problems = [shown(wrong, "; ")] if wrong else []
        problems += [f"missing tensor(s) {shown(missing)}"] if missing else []
        problems += [f"unexpected tensor(s) {shown(unexpected)}"] if unexpected else []
        if problems:
            c = model.cfg
            sizes = f"emb_dim={c.emb_dim}, n_layers={c.n_layers}, context_length={c.context_length}"
            raise GPTClassifierError(
                f"{self.source} does not fit the model ({sizes}, vocab_size={c.vocab_size}, "
                f"qkv_bias={str(c.qkv_bias).lower()}): " + "; ".join(problems)
            )
        self.rules: dict[str, list[_Rule]] = {}
        for rule in rules:
            self.rules.setdefault(_module_of(rule.targets[0]), []).append(rule)
        return self

    def stream(self, name: str) -> Iterator[tuple[str, Tensor]]:
        if name not in EMBEDDINGS:
            yield from self.module(name).items()
            return
        key = self.names[self.rules[name][0].source]
        for start in range(0, total := self.shapes[key][0], CHUNK_ROWS):
            yield "weight", self.read(key, slice(start, min(start + CHUNK_ROWS, total)))

    def module(self, name: str) -> dict[str, Tensor]:
        state = {}
        for rule in self.rules[name]:
            tensor = self.read(self.names[rule.source])
            parts = tensor.chunk(3, dim=-1) if rule.kind == "qkv" else [tensor]
            for target, part in zip(rule.targets, parts, strict=True):
                if rule.transposed(part):
                    part = part.t().contiguous()
                elif rule.kind == "qkv":
                    part = part.clone()  # own storage, not a view of c_attn.bias
                state[target[len(name) + 1 :]] = part
        return state

    def lm_head(self) -> Tensor | None:
        return self.read(key) if (key := self.names.get("lm_head.weight")) else None


def load_gpt2_state_dict(
    model: GPTModel, tensors: Mapping[str, Tensor], source: str = "weights"
) -> None:
    """GPT-2 tensors in Hugging Face naming into ``model``, every name and shape checked first."""
    weights = CheckpointWeights(source, tensors).check(model)
    for name in module_names(model.cfg):
        model.get_submodule(name).load_state_dict(weights.module(name))
    _gpt2_head(model, weights.lm_head())


def _gpt2_head(model: GPTModel, lm_head: Tensor | None) -> None:
    """GPT-2's ``out_head``: tied to ``tok_emb``, or a file's ``lm_head`` that differs from it."""
    tok_emb, out = model.tok_emb.weight, model.out_head.weight
    # usual for GPT-2 files that store the tied head explicitly: share, don't duplicate
    same = lm_head is None or torch.equal(lm_head.to(tok_emb.device, tok_emb.dtype), tok_emb.data)
    if not same:  # a new Parameter rather than a copy, in case out_head was tied to tok_emb
        device = tok_emb.device if out.is_meta else out.device
        model.out_head.weight = nn.Parameter(lm_head.to(device, out.dtype), out.requires_grad)
    elif out.shape == tok_emb.shape:  # a classifier's head is not GPT-2's: it stays as it is
        model.out_head.weight = tok_emb


class RandomWeights:
    """GPT-2's initialisation drawn from ``seed``, the same numbers in any order of modules."""

    def __init__(self, cfg: GPTConfig, seed: int) -> None:
        self.cfg, self.generator = cfg, torch.Generator().manual_seed(seed)
        self.order, self._starts = module_names(cfg), [self.generator.get_state()]

    def stream(self, name: str) -> Iterator[tuple[str, Tensor]]:
        index, cfg = self.order.index(name), self.cfg
        while len(self._starts) <= index:  # drawing the modules before finds where name starts
            for _ in self.stream(self.order[len(self._starts) - 1]):
                pass
        self.generator.set_state(self._starts[index])
        if name in EMBEDDINGS:
            total = cfg.vocab_size if name == "tok_emb" else cfg.context_length
            for start in range(0, total, CHUNK_ROWS):
                piece = torch.empty(min(CHUNK_ROWS, total - start), cfg.emb_dim)
                yield "weight", piece.normal_(0.0, INIT_STD, generator=self.generator)
        else:
            with _NoDefaultInit():
                module = LayerNorm(cfg.emb_dim) if name == "final_norm" else TransformerBlock(cfg)
            init_gpt2_module(module, name, cfg.n_layers, self.generator)
            yield from ((key, tensor.detach()) for key, tensor in module.state_dict().items())
        if len(self._starts) == index + 1:  # the generator where the next module starts drawing
            self._starts.append(self.generator.get_state())


class LazyWeights:
    """The weights of a skeleton ``gpt`` (on ``meta``) from ``source``, a module at a time."""

    def __init__(self, gpt: GPTModel, source: CheckpointWeights | RandomWeights) -> None:
        self.gpt, self.source, self.names = gpt, source, module_names(gpt.cfg)
        self.samples: dict[str, list[float]] = {}  # parameter name -> its first 64 values
        gpt.lazy_weights = self

    def is_materialized(self, name: str) -> bool:
        return not any(t.is_meta for t in self.gpt.get_submodule(name).parameters())

    def stream(self, name: str) -> Iterator[tuple[str, Tensor]]:
        """``name``'s state dict as ``(local name, tensor)``, an embedding in pieces of rows."""
        module = self.gpt.get_submodule(name)
        if self.is_materialized(name):
            yield from ((key, t.detach()) for key, t in module.state_dict().items())
            return
        dtypes = {key: t.dtype for key, t in module.state_dict(keep_vars=True).items()}
        pieces = self.source.stream(name)
        if name not in EMBEDDINGS:  # in state dict order
            state = dict(pieces)
            pieces = ((key, state.pop(key)) for key in dtypes)
        for key, tensor in pieces:
            tensor = tensor.to(dtypes[key])
            self.samples.setdefault(f"{name}.{key}", tensor.flatten()[:64].tolist())
            yield key, tensor

    def tensors(self, name: str) -> dict[str, Tensor]:
        if name not in EMBEDDINGS:
            return dict(self.stream(name))
        rows = torch.arange(self.gpt.get_submodule(name).num_embeddings)
        return {"weight": self.embedding_rows(name, rows)}

    def embedding_rows(self, name: str, rows: Tensor) -> Tensor:
        """``embedding.weight[rows]`` (``rows`` sorted, unique), never the whole table at once."""
        dtype = self.gpt.get_submodule(name).weight.dtype
        out, start = torch.empty(len(rows), self.gpt.cfg.emb_dim, dtype=dtype), 0
        for _, piece in self.stream(name):
            wanted = (rows >= start) & (rows < start + piece.shape[0])
            out[wanted] = piece[rows[wanted] - start]
            start += piece.shape[0]
        return out

    def materialize(self, name: str) -> None:
        """``name``'s weights in memory: new CPU Parameters, ``requires_grad`` kept."""
        if not self.is_materialized(name):
            self.gpt.get_submodule(name).load_state_dict(self.tensors(name), assign=True)

    def release(self, name: str) -> None:
        """Back to ``meta``: the module's memory is freed (its weights can be read again)."""
        self.gpt.get_submodule(name).to("meta")  # new Parameters, requires_grad kept


def lazy_weights_of(model: nn.Module) -> LazyWeights | None:
    """The :class:`LazyWeights` behind a lazy model (a ``GPTModel`` or a classifier around one)."""
    return getattr(model, "lazy_weights", None)


def materialize_model(model: nn.Module) -> nn.Module:
    """Every weight of a lazy ``model`` in memory (GPT-2's head too): an ordinary model after."""
    if (lazy := lazy_weights_of(model)) is None:
        return model
    for name in lazy.names:
        lazy.materialize(name)
    if lazy.gpt.out_head.weight.is_meta:  # GPT-2's head: tied, or a checkpoint's lm_head
        drawn = isinstance(lazy.source, RandomWeights)
        _gpt2_head(lazy.gpt, None if drawn else lazy.source.lm_head())
    for owner in (model, lazy.gpt):
        owner.__dict__.pop("lazy_weights", None)
    return model


def frozen_parameter_sample(model: nn.Module) -> list[list[float]]:
    """The first 64 values of the first 4 frozen parameters: the base weights' print."""
    lazy, sample = lazy_weights_of(model), []
    for name, param in [(n, p) for n, p in model.named_parameters() if not p.requires_grad][:4]:
        gpt_name = name.removeprefix("gpt.")  # a parameter on meta: a lazy model's, drawn or read
        if param.is_meta and gpt_name not in lazy.samples:
            for _ in lazy.stream(_module_of(gpt_name)):
                pass
        values = lazy.samples[gpt_name] if param.is_meta else param.detach().flatten()[:64].tolist()
        sample.append(values)
    return sample


def save_streamed(model: nn.Module, path: Path, metadata: dict[str, str]) -> None:
    """``model.state_dict()`` as safetensors, a lazy model's frozen modules one at a time."""
    specs, lazy = model.state_dict(keep_vars=True), lazy_weights_of(model)

    def tensors() -> Iterator[Tensor]:
        drawn = set()
        for key, value in specs.items():
            module = _module_of(key.removeprefix("gpt."))
            if not value.is_meta:
                yield value.detach()
            elif module not in drawn:  # a module's tensors are consecutive in the state dict
                drawn.add(module)
                yield from (piece for _, piece in lazy.stream(module))

    save_tensors(specs.items(), tensors(), path, metadata)


def save_tensors(
    specs: Iterable[tuple[str, Tensor]], tensors: Iterable[Tensor], path: Path, metadata: dict
) -> None:
    """``specs``' names, dtypes and shapes, then ``tensors``, as safetensors: the same bytes in
    every process, unlike safetensors' own writer."""
    entries, offset = {"__metadata__": metadata}, 0
    for key, value in specs:
        dtype, end = _DTYPES[value.dtype], offset + value.numel() * value.element_size()
        entries[key] = {"dtype": dtype, "shape": list(value.shape), "data_offsets": [offset, end]}
        offset = end
    header = json.dumps(entries, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(header)) + header)
        for tensor in tensors:
            handle.write(tensor.contiguous().cpu().reshape(-1).view(torch.uint8).numpy().data)


class _NoDefaultInit(TorchFunctionMode):
    """Skips ``torch.nn.init``'s functions: GPT-2's initialisation or the loaded weights replace
    them, and on ``meta`` they would load torch's Python meta kernels (~70 MiB resident)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        if getattr(func, "__module__", None) == "torch.nn.init":
            return args[0] if args else kwargs["tensor"]
        return func(*args, **(kwargs or {}))


def skeleton_gpt(cfg: GPTConfig, dtype: torch.dtype = torch.float32) -> GPTModel:
    """A ``GPTModel`` whose tensors are all on ``meta``: shapes, no memory."""
    with torch.device("meta"), _NoDefaultInit():
        return GPTModel(cfg).to(dtype)


@contextmanager
def _opened(file: Path) -> Iterator[Any]:
    """``safe_open(file)``, read errors as a GPTClassifierError naming the file."""
    try:
        file.open("rb").close()  # safetensors says "No such file" for one it may not read
        with safe_open(str(file), framework="pt") as handle:
            yield handle
    except FileNotFoundError:
        raise GPTClassifierError(f"weights file not found: {file}") from None
    except PermissionError:
        raise GPTClassifierError(f"cannot read weights file {file}: permission denied") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GPTClassifierError(
            f"cannot read weights file {file}: not a valid .safetensors file "
            f"(truncated or corrupt? {detail})"
        ) from None


def _weight_files(path: Path) -> tuple[list[Path], int | None]:
    """The safetensors file(s) behind a file or HF model directory, and config.json's n_head."""
    if path.is_file():
        if path.suffix != ".safetensors":
            raise GPTClassifierError(
                f"{path}: expected a .safetensors file or a Hugging Face model directory "
                "(PyTorch .bin/.pt pickles are not loaded, for safety)"
            )
        return [path], _read_hf_config(path.parent / "config.json", quiet=True)
    if not path.is_dir():
        raise GPTClassifierError(f"weights not found: {path}")
    n_heads = _read_hf_config(path / "config.json")
    index = path / "model.safetensors.index.json"
    if (path / "model.safetensors").is_file():
        return [path / "model.safetensors"], n_heads
    if not index.is_file():
        raise GPTClassifierError(
            f"{path} holds no model.safetensors (or model.safetensors.index.json); "
            "only safetensors weights are supported"
        )
    try:
        names = list(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
    except OSError as exc:
        detail = "permission denied" if isinstance(exc, PermissionError) else exc.strerror
        raise GPTClassifierError(f"cannot read {index}: {detail or exc}") from None
    except (ValueError, RecursionError, KeyError, TypeError, AttributeError):
        raise GPTClassifierError(f"{index}: not a valid safetensors index") from None
    # Names from the download must not leave the folder; checked as written, not resolved, as
    # a Hugging Face cache snapshot links every file to ../../blobs/
    for name in names:
        if not isinstance(name, str) or not name.strip():
            problem = f"shard names must be file names (got {json.dumps(name)[:60]})"
        elif os.path.isabs(name):
            problem = f"shard {name!r} is an absolute path; shards must lie in {path}"
        elif os.path.normpath(name).split(os.sep)[0] == os.pardir:
            problem = f"shard {name!r} lies outside the model folder {path}"
        else:
            continue
        raise GPTClassifierError(f"{index}: {problem}")
    return [path / name for name in sorted(set(names))], n_heads


def _read_hf_config(file: Path, quiet: bool = False) -> int | None:
    """A Hugging Face ``config.json``'s n_head, checked for options we do not model; ``quiet``:
    ignored if unreadable (one next to a .safetensors file may be another's)."""
    if not file.is_file():
        return None
    try:
        values = json.loads(file.read_text(encoding="utf-8"))
        problem = "is not a Hugging Face GPT-2 config (no n_embd)"
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        values, problem = None, f"is not valid JSON: {exc}"
    if not isinstance(values, dict) or "n_embd" not in values:
        if quiet:
            return None
        raise GPTClassifierError(f"{file} {problem}")
    # a variant would load without error and give wrong outputs
    supported = {
        "activation_function": lambda value: value in ("gelu_new", "gelu_pytorch_tanh"),
        "layer_norm_epsilon": lambda value: math.isclose(float(value), 1e-5),
        "n_inner": lambda value: value in (None, 4 * int(values["n_embd"])),
        "scale_attn_weights": bool,
        "scale_attn_by_inverse_layer_idx": lambda value: not value,
        "reorder_and_upcast_attn": lambda value: not value,
        "add_cross_attention": lambda value: not value,
    }
    unsupported = [
        f"{key}={values[key]!r}" if key == "activation_function" else f"{key}={values[key]}"
        for key, ok in supported.items()
        if key in values and not ok(values[key])
    ]
    if unsupported:
        raise GPTClassifierError(
            f"{file}: this GPT-2 variant is not supported ({', '.join(unsupported)})"
        )
    return int(values["n_head"]) if "n_head" in values else None


def infer_config(
    shapes: Mapping[str, Sequence[int]], n_heads: int | None = None, source: str = "weights"
) -> GPTConfig:
    """A ``GPTConfig`` read off a checkpoint's shapes; heads: ``n_heads``, else GPT-2's."""
    names = _strip_prefix(shapes, source)
    for required in ("wte.weight", "wpe.weight"):
        if required not in names:
            raise GPTClassifierError(
                f"{source}: no tensor {required}; not a GPT-2 checkpoint in Hugging Face layout"
            )
    vocab_size, emb_dim = shapes[names["wte.weight"]]
    blocks = {int(m.group(1)) for name in names if (m := re.match(r"h\.(\d+)\.", name))}
    if not blocks:
        raise GPTClassifierError(f"{source}: no transformer blocks (tensors h.0.*) found")
    standard = {size["emb_dim"]: size["n_heads"] for size in GPT2_SIZES.values()}
    n_heads = standard.get(int(emb_dim)) if n_heads is None else n_heads
    if n_heads is None:
        raise GPTClassifierError(
            f"{source}: cannot tell the number of attention heads of a model with "
            f"emb_dim={emb_dim}; pass --model CONFIG.json with n_heads (or a model directory "
            "with its config.json)"
        )
    return GPTConfig(
        vocab_size=int(vocab_size),
        context_length=int(shapes[names["wpe.weight"]][0]),
        emb_dim=int(emb_dim),
        n_heads=int(n_heads),
        n_layers=max(blocks) + 1,  # counting up from 0: a missing block stays an error
        qkv_bias="h.0.attn.c_attn.bias" in names,
    )


def locate_weights(name_or_path: str) -> tuple[list[Path], int | None, str, bool]:
    """The files behind a path or GPT-2 name, config.json's n_head, its name in errors, is_name."""
    path = Path(name_or_path).expanduser()
    try:  # stat() in a folder that may not be searched raises PermissionError
        if path.exists():
            return (*_weight_files(path), str(path), False)
    except PermissionError as exc:
        raise GPTClassifierError(f"cannot read {exc.filename or path}: permission denied") from None
    if not is_model_name(name_or_path):
        raise GPTClassifierError(
            f"weights not found: {name_or_path} is neither a file, a directory, nor a GPT-2 "
            f"name ({', '.join(GPT2_SIZES)})"
        )
    file = download_weights(name_or_path)
    return [file], None, f"{canonical_model_name(name_or_path)} weights ({file})", True


def download_weights(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Path of ``model.safetensors`` for a GPT-2 size, downloaded into the HF cache if needed."""
    repo = f"openai-community/{canonical_model_name(name)}"  # checked before the import
    from huggingface_hub import errors as hub
    from huggingface_hub import hf_hub_download

    where = f"{WEIGHTS_FILENAME} of {repo}"
    cache = f" (cache: {cache_dir})" if cache_dir else ""
    logger.info("fetching %s from the Hugging Face Hub%s", where, cache)
    try:
        return Path(hf_hub_download(repo_id=repo, filename=WEIGHTS_FILENAME, cache_dir=cache_dir))
    # order matters: LocalEntryNotFoundError is an EntryNotFoundError, all are HfHubHTTPErrors
    except (hub.LocalEntryNotFoundError, hub.OfflineModeIsEnabled):
        why = "offline or no connection to the Hugging Face Hub, and it is not in the local cache"
        why += cache
    except (hub.RepositoryNotFoundError, hub.RevisionNotFoundError, hub.EntryNotFoundError):
        why = "not found on the Hugging Face Hub"
    except hub.HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        why = f"the Hugging Face Hub answered with HTTP error {status}"
    except Exception as exc:
        # a failure mid-transfer is the HTTP client's exception; anything else is a bug
        module = type(exc).__module__.split(".")[0]
        clients = ("httpx", "httpx2", "httpcore", "requests", "urllib3")
        if not isinstance(exc, (ConnectionError, TimeoutError)) and module not in clients:
            raise
        why = f"network error ({type(exc).__name__}); the download resumes when run again, or"
        raise GPTClassifierError(f"cannot get {where}: {why} {_ALTERNATIVES}") from None
    raise GPTClassifierError(f"cannot get {where}: {why}; {_ALTERNATIVES}")


def load_pretrained(
    name_or_path: str,
    config: GPTConfig | None = None,
    dtype: torch.dtype = torch.float32,
    lazy: bool = False,
) -> GPTModel:
    """GPT-2 from a path or name, every tensor checked, in eval mode (``lazy``: a meta skeleton)."""
    files, n_heads, source, named = locate_weights(name_or_path)
    if config is None and named:
        config = GPTConfig.from_name(name_or_path)
    checkpoint = CheckpointWeights(source, files)
    config = config or infer_config(checkpoint.shapes, n_heads=n_heads, source=source)
    gpt = skeleton_gpt(config, dtype)
    LazyWeights(gpt, checkpoint.check(gpt))
    if lazy:
        return gpt
    logger.info("loaded %s (%s parameters)", name_or_path, f"{count_parameters(gpt)[1]:,}")
    return materialize_model(gpt).eval()


def init_gpt2_module(
    module: nn.Module, name: str, n_layers: int, generator: torch.Generator | None = None
) -> None:
    """GPT-2's init of ``GPTModel``'s child ``name``; residual projections scaled down by depth."""
    residual_std = INIT_STD / math.sqrt(2 * n_layers)
    for inner, child in module.named_modules(prefix=name):  # nn.init runs without autograd
        if isinstance(child, nn.Linear):
            std = residual_std if inner.endswith(("att.out_proj", "ff.layers.2")) else INIT_STD
            nn.init.normal_(child.weight, 0.0, std, generator=generator)
            if child.bias is not None:
                nn.init.zeros_(child.bias)
        elif isinstance(child, nn.Embedding):
            nn.init.normal_(child.weight, 0.0, INIT_STD, generator=generator)
        elif isinstance(child, LayerNorm):
            nn.init.ones_(child.scale)
            nn.init.zeros_(child.shift)


def build_model(
    model: str | GPTConfig = "gpt2",
    weights: str | None = None,
    init: str = "pretrained",
    seed: int = 123,
    lazy: bool = False,
) -> GPTModel:
    """The model behind every CLI command, in eval mode (``lazy``: a skeleton on ``meta``)."""
    if init not in ("pretrained", "random"):
        raise GPTClassifierError(f"unknown --init {init!r}; use pretrained or random")
    if init == "random":
        if weights:
            raise GPTClassifierError(
                "--init random cannot be combined with --weights: drop --weights for an "
                "untrained model, or drop --init random to load the weights"
            )
        cfg = resolve_config(model)
        gpt = LazyWeights(skeleton_gpt(cfg), RandomWeights(cfg, seed)).gpt
    else:
        given = isinstance(model, GPTConfig) or not is_model_name(model)
        config = resolve_config(model) if given else None  # read first: a broken file's error
        if given and not weights:
            raise GPTClassifierError(
                f"--model {model} is a config, not a GPT-2 size with downloadable weights "
                f"({', '.join(GPT2_SIZES)}); pass --weights PATH or use --init random"
            )
        gpt = load_pretrained(weights or model, config, lazy=True)
    return gpt if lazy else materialize_model(gpt).eval()
