"""OpenAI's GPT-2 weights (Hugging Face layout, ``.safetensors``) onto the book's ``GPTModel``.

Hugging Face's GPT-2 stores its linear layers as ``Conv1D`` with weights shaped ``(in, out)``,
the transpose of ``nn.Linear``, and keeps Q, K and V in one ``c_attn`` tensor concatenated on the
output dimension. Everything else is a rename::

    wte.weight                 -> tok_emb.weight
    wpe.weight                 -> pos_emb.weight
    h.{i}.ln_1.weight / bias   -> trf_blocks.{i}.norm1.scale / shift
    h.{i}.attn.c_attn.*        -> trf_blocks.{i}.att.W_query / W_key / W_value (split in 3)
    h.{i}.attn.c_proj.*        -> trf_blocks.{i}.att.out_proj          (weight transposed)
    h.{i}.ln_2.weight / bias   -> trf_blocks.{i}.norm2.scale / shift
    h.{i}.mlp.c_fc.*           -> trf_blocks.{i}.ff.layers.0          (weight transposed)
    h.{i}.mlp.c_proj.*         -> trf_blocks.{i}.ff.layers.2          (weight transposed)
    ln_f.weight / bias         -> final_norm.scale / shift
    lm_head.weight (optional)  -> out_head.weight; when absent, out_head is tied to tok_emb

Keys may carry ``transformer.`` (``GPT2LMHeadModel.save_pretrained``) or not (the files on the
Hub). The ``attn.bias``/``attn.masked_bias`` causal-mask buffers of old checkpoints are ignored.
Loading is strict: a missing, misshapen or unknown tensor is a ``GPTClassifierError``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import GPT2_SIZES, GPTConfig, canonical_model_name, is_model_name, resolve_config
from .errors import GPTClassifierError
from .model import GPTModel, count_parameters

logger = logging.getLogger(__name__)

HF_PREFIX = "transformer."
# Causal-mask buffers saved by old transformers versions (and in OpenAI's files on the Hub).
IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")
_BLOCK_KEY = re.compile(r"^h\.(\d+)\.")
# The heads count is not visible in any tensor shape; GPT-2's four sizes fix it by width.
STANDARD_HEADS_BY_EMB_DIM = {size["emb_dim"]: size["n_heads"] for size in GPT2_SIZES.values()}
INIT_STD = 0.02  # GPT-2's initializer_range

_SHOW = 3  # how many names of each kind of problem an error message lists


# --------------------------------------------------------------------------------------------
# The mapping
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    """One Hugging Face tensor and the parameter(s) of ``GPTModel`` it becomes.

    kind: ``copy`` (same layout), ``conv1d`` (transpose an ``(in, out)`` weight),
    ``qkv`` (split ``c_attn`` in three on its output dimension, transposing weights).
    """

    source: str
    targets: tuple[str, ...]
    kind: str = "copy"


def _rules(cfg: GPTConfig) -> list[_Rule]:
    rules = [
        _Rule("wte.weight", ("tok_emb.weight",)),
        _Rule("wpe.weight", ("pos_emb.weight",)),
    ]
    for i in range(cfg.n_layers):
        h, ours = f"h.{i}.", f"trf_blocks.{i}."
        att = ours + "att."
        rules += [
            _Rule(h + "ln_1.weight", (ours + "norm1.scale",)),
            _Rule(h + "ln_1.bias", (ours + "norm1.shift",)),
            _Rule(
                h + "attn.c_attn.weight",
                tuple(f"{att}{w}.weight" for w in ("W_query", "W_key", "W_value")),
                "qkv",
            ),
            _Rule(h + "attn.c_proj.weight", (att + "out_proj.weight",), "conv1d"),
            _Rule(h + "attn.c_proj.bias", (att + "out_proj.bias",)),
            _Rule(h + "ln_2.weight", (ours + "norm2.scale",)),
            _Rule(h + "ln_2.bias", (ours + "norm2.shift",)),
            _Rule(h + "mlp.c_fc.weight", (ours + "ff.layers.0.weight",), "conv1d"),
            _Rule(h + "mlp.c_fc.bias", (ours + "ff.layers.0.bias",)),
            _Rule(h + "mlp.c_proj.weight", (ours + "ff.layers.2.weight",), "conv1d"),
            _Rule(h + "mlp.c_proj.bias", (ours + "ff.layers.2.bias",)),
        ]
        if cfg.qkv_bias:
            rules.append(
                _Rule(
                    h + "attn.c_attn.bias",
                    tuple(f"{att}{w}.bias" for w in ("W_query", "W_key", "W_value")),
                    "qkv",
                )
            )
    rules += [
        _Rule("ln_f.weight", ("final_norm.scale",)),
        _Rule("ln_f.bias", ("final_norm.shift",)),
    ]
    return rules


def _expected_shape(rule: _Rule, params: Mapping[str, torch.Tensor]) -> tuple[int, ...]:
    """The shape the Hugging Face tensor must have to fill ``rule.targets``."""
    shape = tuple(params[rule.targets[0]].shape)
    if rule.kind == "conv1d":
        return shape[::-1]
    if rule.kind == "qkv":
        if len(shape) == 2:  # (out, in) each -> (in, 3 * out)
            return (shape[1], 3 * shape[0])
        return (3 * shape[0],)
    return shape


def _convert(rule: _Rule, tensor: torch.Tensor) -> list[torch.Tensor]:
    """The Hugging Face tensor in our layout, one tensor per target."""
    if rule.kind == "conv1d":
        return [tensor.t().contiguous()]
    if rule.kind == "qkv":
        chunks = tensor.chunk(3, dim=-1)
        if tensor.dim() == 2:
            return [chunk.t().contiguous() for chunk in chunks]
        return [chunk.clone() for chunk in chunks]  # own storage, not views of c_attn.bias
    return [tensor]


def _fmt(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(int(d)) for d in shape) + ")"


def _strip_prefix(keys: Sequence[str], source: str) -> dict[str, str]:
    """Map prefix-free names to the file's keys; a name present both ways is an error."""
    names: dict[str, str] = {}
    for key in keys:
        name = key[len(HF_PREFIX) :] if key.startswith(HF_PREFIX) else key
        if name in names:
            raise GPTClassifierError(
                f"{source}: tensor {name} appears twice (as {names[name]} and {key})"
            )
        names[name] = key
    return names


def _is_ignored(name: str) -> bool:
    return name.endswith(IGNORED_SUFFIXES)


def _shape_of(tensors: Mapping[str, Any], key: str) -> tuple[int, ...]:
    if isinstance(tensors, SafetensorsCheckpoint):
        return tensors.shape(key)  # without reading the data
    return tuple(tensors[key].shape)


def load_gpt2_state_dict(
    model: GPTModel, tensors: Mapping[str, torch.Tensor], source: str = "weights"
) -> None:
    """Copy GPT-2 tensors in Hugging Face naming into ``model``, checking every name and shape.

    Parameters keep their dtype and device (values are cast); a model built on the ``meta``
    device gets new parameters instead, so a large model is never allocated twice. ``out_head``
    is tied to ``tok_emb`` (one Parameter) unless the file holds an ``lm_head.weight`` that
    differs from ``wte.weight``. ``source`` names the file in error messages.
    """
    params = dict(model.named_parameters(remove_duplicate=False))
    names = _strip_prefix(list(tensors.keys()), source)
    rules = _rules(model.cfg)

    # Check everything before touching the model, and report all problems at once.
    missing, misshapen = [], []
    for rule in rules:
        expected = _expected_shape(rule, params)
        if rule.source not in names:
            missing.append(f"{rule.source} {_fmt(expected)}")
            continue
        actual = _shape_of(tensors, names[rule.source])
        if actual != expected:
            misshapen.append(
                f"{names[rule.source]} has shape {_fmt(actual)} but the model needs "
                f"{_fmt(expected)}"
            )
    has_lm_head = "lm_head.weight" in names
    if has_lm_head:
        expected = tuple(params["out_head.weight"].shape)
        actual = _shape_of(tensors, names["lm_head.weight"])
        if actual != expected:
            misshapen.append(
                f"{names['lm_head.weight']} has shape {_fmt(actual)} but the model needs "
                f"{_fmt(expected)}"
            )
    known = {rule.source for rule in rules} | {"lm_head.weight"}
    unexpected = [key for name, key in names.items() if name not in known and not _is_ignored(name)]
    problems = []
    if misshapen:
        problems.append("; ".join(misshapen[:_SHOW]) + _more(misshapen))
    if missing:
        problems.append("missing tensor(s) " + ", ".join(missing[:_SHOW]) + _more(missing))
    if unexpected:
        problems.append(
            "unexpected tensor(s) " + ", ".join(sorted(unexpected)[:_SHOW]) + _more(unexpected)
        )
    if problems:
        c = model.cfg
        raise GPTClassifierError(
            f"{source} does not fit the model (emb_dim={c.emb_dim}, n_layers={c.n_layers}, "
            f"context_length={c.context_length}, vocab_size={c.vocab_size}, "
            f"qkv_bias={str(c.qkv_bias).lower()}): " + "; ".join(problems)
        )

    # One tensor at a time, so at most one raw tensor exists beside the loaded model.
    for rule in rules:
        raw = tensors[names[rule.source]]
        for target, value in zip(rule.targets, _convert(rule, raw), strict=True):
            _put(model, target, value)
        del raw

    tie = not has_lm_head
    if has_lm_head:
        lm_head = tensors[names["lm_head.weight"]]
        tok_emb = model.tok_emb.weight
        # Usual for GPT-2 files that store the tied head explicitly: share, don't duplicate.
        tie = torch.equal(lm_head.to(device=tok_emb.device, dtype=tok_emb.dtype), tok_emb.data)
        if not tie:
            out = model.out_head.weight
            device = torch.device("cpu") if out.is_meta else out.device
            # A new Parameter rather than a copy, in case out_head was tied to tok_emb.
            model.out_head.weight = nn.Parameter(
                lm_head.to(device=device, dtype=out.dtype), requires_grad=out.requires_grad
            )
    # A head of another shape (a classifier's) is not GPT-2's and stays as it is.
    if tie and model.out_head.weight.shape == model.tok_emb.weight.shape:
        model.out_head.weight = model.tok_emb.weight


def _more(items: Sequence[Any]) -> str:
    return f" (and {len(items) - _SHOW} more)" if len(items) > _SHOW else ""


def _put(model: nn.Module, name: str, value: torch.Tensor) -> None:
    module_name, _, attr = name.rpartition(".")
    module = model.get_submodule(module_name)
    old = getattr(module, attr)
    if old.is_meta:
        new = value.to(dtype=old.dtype, device="cpu")
        setattr(module, attr, nn.Parameter(new, requires_grad=old.requires_grad))
    else:
        with torch.no_grad():
            old.copy_(value)


# --------------------------------------------------------------------------------------------
# Reading safetensors files and model directories
# --------------------------------------------------------------------------------------------


class SafetensorsCheckpoint(Mapping[str, torch.Tensor]):
    """Read-on-demand view of one or more ``.safetensors`` files (a sharded checkpoint).

    Tensors are read from the memory-mapped files one at a time, so loading never holds a second
    full copy of the weights. Use as a context manager (closes the files).
    """

    def __init__(self, files: Sequence[Path]) -> None:
        from safetensors import safe_open

        self._stack = ExitStack()
        self._handles: dict[str, Any] = {}
        self._file_of: dict[str, Path] = {}
        try:
            for file in files:
                with _reading(file):
                    # safetensors reports a file it may not read as "No such file": ask the OS
                    file.open("rb").close()
                    handle = self._stack.enter_context(safe_open(str(file), framework="pt"))
                for key in handle.keys():  # noqa: SIM118 (safe_open is not iterable)
                    self._handles[key] = handle
                    self._file_of[key] = file
        except BaseException:
            self._stack.close()
            raise

    def __enter__(self) -> SafetensorsCheckpoint:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()

    def __getitem__(self, key: str) -> torch.Tensor:
        with _reading(self._file_of[key]):
            return self._handles[key].get_tensor(key)

    def shape(self, key: str) -> tuple[int, ...]:
        with _reading(self._file_of[key]):
            return tuple(self._handles[key].get_slice(key).get_shape())

    def __iter__(self) -> Iterator[str]:
        return iter(self._handles)

    def __len__(self) -> int:
        return len(self._handles)


@contextmanager
def _reading(file: Path) -> Iterator[None]:
    """Turns safetensors' and the OS's read errors into a GPTClassifierError naming the file."""
    from safetensors import SafetensorError

    try:
        yield
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


def _weight_files(path: Path) -> tuple[list[Path], dict[str, Any] | None]:
    """The safetensors file(s) behind a file or HF model directory, and its config.json."""
    if path.is_file():
        if path.suffix != ".safetensors":
            raise GPTClassifierError(
                f"{path}: expected a .safetensors file or a Hugging Face model directory "
                "(PyTorch .bin/.pt pickles are not loaded, for safety)"
            )
        hf_config = _read_hf_config(path.parent / "config.json", quiet=True)
        return [path], hf_config
    if not path.is_dir():
        raise GPTClassifierError(f"weights not found: {path}")
    hf_config = _read_hf_config(path / "config.json")
    single = path / "model.safetensors"
    index = path / "model.safetensors.index.json"
    if single.is_file():
        return [single], hf_config
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            names = list(weight_map.values())
        except OSError as exc:
            detail = "permission denied" if isinstance(exc, PermissionError) else exc.strerror
            raise GPTClassifierError(f"cannot read {index}: {detail or exc}") from None
        except (ValueError, RecursionError, KeyError, TypeError, AttributeError):
            raise GPTClassifierError(f"{index}: not a valid safetensors index") from None
        return [path / name for name in _shard_names(names, index)], hf_config
    raise GPTClassifierError(
        f"{path} holds no model.safetensors (or model.safetensors.index.json); "
        "only safetensors weights are supported"
    )


def _shard_names(names: Sequence[Any], index: Path) -> list[str]:
    """The distinct shard names of an index, each a relative path inside the model folder.

    The index is data that came with the download: a name such as ``/etc/passwd`` or
    ``../x.safetensors`` would have the loader open a file outside the folder. Names are checked
    as written, not after resolving symlinks: a Hugging Face cache snapshot links every file to
    ``../../blobs/``, and links inside the folder were put there by its owner, not by the index.
    """
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise GPTClassifierError(
                f"{index}: shard names must be file names (got {json.dumps(name)[:60]})"
            )
        if os.path.isabs(name):
            raise GPTClassifierError(
                f"{index}: shard {name!r} is an absolute path; shards must lie in {index.parent}"
            )
        if os.path.normpath(name).split(os.sep)[0] == os.pardir:
            raise GPTClassifierError(
                f"{index}: shard {name!r} lies outside the model folder {index.parent}"
            )
    return sorted(set(names))


def _read_hf_config(file: Path, quiet: bool = False) -> dict[str, Any] | None:
    """A Hugging Face ``config.json`` beside the weights, checked for options we do not model.

    ``quiet``: a config.json merely sitting next to a .safetensors file may belong to something
    else, so an unreadable one is ignored rather than an error.
    """
    if not file.is_file():
        return None
    try:
        values = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        if quiet:
            return None
        raise GPTClassifierError(f"{file} is not valid JSON: {exc}") from None
    if not isinstance(values, dict) or "n_embd" not in values:
        if quiet:
            return None
        raise GPTClassifierError(f"{file} is not a Hugging Face GPT-2 config (no n_embd)")
    # This GPTModel is exactly GPT-2: tanh GELU, LayerNorm eps 1e-5, attention scaled by
    # 1/sqrt(head_dim). Loading a variant would run without error and give wrong outputs.
    unsupported = []
    if values.get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
        unsupported.append(f"activation_function={values['activation_function']!r}")
    if not math.isclose(float(values.get("layer_norm_epsilon", 1e-5)), 1e-5):
        unsupported.append(f"layer_norm_epsilon={values['layer_norm_epsilon']}")
    if values.get("n_inner") not in (None, 4 * int(values["n_embd"])):
        unsupported.append(f"n_inner={values['n_inner']}")
    for flag, supported in (
        ("scale_attn_weights", True),
        ("scale_attn_by_inverse_layer_idx", False),
        ("reorder_and_upcast_attn", False),
        ("add_cross_attention", False),
    ):
        if flag in values and bool(values[flag]) != supported:
            unsupported.append(f"{flag}={values[flag]}")
    if unsupported:
        raise GPTClassifierError(
            f"{file}: this GPT-2 variant is not supported ({', '.join(unsupported)})"
        )
    return values


def infer_config(
    shapes: Mapping[str, Sequence[int]], n_heads: int | None = None, source: str = "weights"
) -> GPTConfig:
    """A ``GPTConfig`` read off the tensor shapes of a Hugging Face GPT-2 checkpoint.

    The number of heads does not show in any shape: pass ``n_heads``, or GPT-2's standard value
    for the width is used (768 -> 12, 1024 -> 16, 1280 -> 20, 1600 -> 25).
    """
    names = _strip_prefix(list(shapes), source)
    for required in ("wte.weight", "wpe.weight"):
        if required not in names:
            raise GPTClassifierError(
                f"{source}: no tensor {required}; not a GPT-2 checkpoint in Hugging Face layout"
            )
    vocab_size, emb_dim = shapes[names["wte.weight"]]
    context_length = shapes[names["wpe.weight"]][0]
    blocks = {int(m.group(1)) for name in names if (m := _BLOCK_KEY.match(name))}
    if not blocks:
        raise GPTClassifierError(f"{source}: no transformer blocks (tensors h.0.*) found")
    if n_heads is None:
        n_heads = STANDARD_HEADS_BY_EMB_DIM.get(int(emb_dim))
    if n_heads is None:
        raise GPTClassifierError(
            f"{source}: cannot tell the number of attention heads of a model with "
            f"emb_dim={emb_dim}; pass --model CONFIG.json with n_heads (or a model directory "
            "with its config.json)"
        )
    return GPTConfig(
        vocab_size=int(vocab_size),
        context_length=int(context_length),
        emb_dim=int(emb_dim),
        n_heads=int(n_heads),
        # Counting up from 0 keeps a gap (a missing block) an error of the strict loader.
        n_layers=max(blocks) + 1,
        qkv_bias="h.0.attn.c_attn.bias" in names,
    )


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def load_pretrained(
    name_or_path: str, config: GPTConfig | None = None, dtype: torch.dtype = torch.float32
) -> GPTModel:
    """A ``GPTModel`` (in eval mode) with GPT-2 weights from a name, a file or a directory.

    ``name_or_path``: an existing ``.safetensors`` file, a Hugging Face model directory
    (``model.safetensors`` or a sharded index, plus ``config.json``), or a GPT-2 name such as
    ``"gpt2"`` / ``"gpt2-medium (355M)"``, downloaded into the Hugging Face cache. Without
    ``config`` the architecture is read from the tensor shapes (and config.json's ``n_head``).
    """
    path = Path(name_or_path).expanduser()
    try:
        exists = path.exists()
    except PermissionError:  # a parent folder that may not be searched
        raise GPTClassifierError(f"cannot read {path}: permission denied") from None
    if not exists and is_model_name(name_or_path):
        from .hub import download_weights

        files, hf_config = [download_weights(name_or_path)], None
        if config is None:
            config = GPTConfig.from_name(name_or_path)
        source = f"{canonical_model_name(name_or_path)} weights ({files[0]})"
    elif exists:
        try:
            files, hf_config = _weight_files(path)
        except PermissionError as exc:  # stat() inside a folder that may not be searched
            where = exc.filename or path
            raise GPTClassifierError(f"cannot read {where}: permission denied") from None
        source = str(path)
    else:
        names = ", ".join(GPT2_SIZES)
        raise GPTClassifierError(
            f"weights not found: {name_or_path} is neither a file, a directory, nor a GPT-2 "
            f"name ({names})"
        )

    with SafetensorsCheckpoint(files) as checkpoint:
        if config is None:
            shapes = {key: checkpoint.shape(key) for key in checkpoint}
            n_heads = int(hf_config["n_head"]) if hf_config and "n_head" in hf_config else None
            config = infer_config(shapes, n_heads=n_heads, source=source)
        # On the meta device the model costs no memory until the loader fills it.
        with torch.device("meta"):
            model = GPTModel(config).to(dtype)
        load_gpt2_state_dict(model, checkpoint, source=source)
    logger.info("loaded %s (%s parameters)", source, f"{count_parameters(model)[1]:,}")
    return model.eval()


def init_gpt2_weights(model: GPTModel) -> None:
    """GPT-2's initialisation: N(0, 0.02) weights, zero biases, unit LayerNorms, and the
    residual projections scaled by 1/sqrt(2 * n_layers) so the residual stream's variance does
    not grow with depth. (PyTorch's defaults give a random GPT far too large logits.)"""
    tied = model.out_head.weight is model.tok_emb.weight
    for name, module in model.named_children():
        if module is model.out_head and tied:
            continue  # tied: initialised as tok_emb
        init_gpt2_module(module, name, model.cfg.n_layers)


def init_gpt2_module(
    module: nn.Module, name: str, n_layers: int, generator: torch.Generator | None = None
) -> None:
    """``init_gpt2_weights`` for one child of a ``GPTModel`` (``name``: its attribute, e.g.
    ``trf_blocks``, or ``trf_blocks.3`` for one block), drawing from ``generator`` (the global
    RNG when None). The children initialised in order draw the same numbers as the whole."""
    residual_std = INIT_STD / math.sqrt(2 * n_layers)
    with torch.no_grad():
        for inner, child in module.named_modules(prefix=name):
            if isinstance(child, nn.Linear):
                is_residual = inner.endswith(("att.out_proj", "ff.layers.2"))
                std = residual_std if is_residual else INIT_STD
                nn.init.normal_(child.weight, 0.0, std, generator=generator)
                if child.bias is not None:
                    nn.init.zeros_(child.bias)
            elif isinstance(child, nn.Embedding):
                nn.init.normal_(child.weight, 0.0, INIT_STD, generator=generator)
            elif hasattr(child, "scale") and hasattr(child, "shift"):  # our LayerNorm
                nn.init.ones_(child.scale)
                nn.init.zeros_(child.shift)


def random_model_generator(seed: int) -> torch.Generator:
    """A generator in the state ``random_model(cfg, seed)`` starts drawing from."""
    return torch.Generator().manual_seed(seed)


def random_model(config: GPTConfig, seed: int = 123) -> GPTModel:
    """An untrained GPT-2-style model, the same for the same ``seed``; head tied like GPT-2."""
    torch.manual_seed(seed)
    with torch.device("meta"):  # skip PyTorch's default init, GPT-2's replaces it anyway
        model = GPTModel(config)
    model = model.to_empty(device="cpu")
    model.out_head.weight = model.tok_emb.weight
    init_gpt2_weights(model)
    return model.eval()


def build_model(
    model: str | GPTConfig = "gpt2",
    weights: str | None = None,
    init: str = "pretrained",
    seed: int = 123,
) -> GPTModel:
    """The model behind every CLI command (``--model``, ``--weights``, ``--init``), in eval mode.

    - ``init="random"``: an untrained model of the ``model`` size or config file.
    - ``weights`` given: that file or directory; its config from ``model`` when that is a config
      file (or a ``GPTConfig``), else read from the weights.
    - otherwise ``model`` must be a GPT-2 name, whose weights are downloaded (and cached).
    """
    if init not in ("pretrained", "random"):
        raise GPTClassifierError(f"unknown --init {init!r}; use pretrained or random")
    if init == "random":
        if weights:
            raise GPTClassifierError(
                "--init random cannot be combined with --weights: drop --weights for an "
                "untrained model, or drop --init random to load the weights"
            )
        return random_model(resolve_config(model), seed=seed)
    if weights:
        given = isinstance(model, GPTConfig) or not is_model_name(model)
        return load_pretrained(weights, config=resolve_config(model) if given else None)
    if isinstance(model, GPTConfig) or not is_model_name(model):
        resolve_config(model)  # a missing or broken config file gets its own message first
        names = ", ".join(GPT2_SIZES)
        raise GPTClassifierError(
            f"--model {model} is a config, not a GPT-2 size with downloadable weights "
            f"({names}); pass --weights PATH or use --init random"
        )
    return load_pretrained(model)
