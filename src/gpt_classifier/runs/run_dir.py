"""A run directory: the fine-tuned weights plus everything needed to use them again.

``run.json`` (base model config, classes, pooling, padding, tokenizer, training settings),
``model.safetensors`` (or, saved ``trainable``, ``trained.safetensors`` and a reference to the
base weights: ``trainable_run``), ``tokenizer/`` (GPT-2's two files: a run answers offline),
``metrics.json``, ``report.txt``, ``history.json``, plots and ``data/`` (the splits) sit side by
side; ``load_run`` rebuilds the classifier from the weights and ``run.json``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tiktoken
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .. import __version__
from ..classifier import GPTClassifier
from ..classifier.lora import has_lora, merge_lora
from ..classifier.pooling import POOLINGS
from ..config import EOT_TOKEN_ID, GPTConfig
from ..data.encoding import PADDING_STRATEGIES, Padding, parse_padding
from ..data.windows import LongText
from ..errors import GPTClassifierError
from ..fileio import atomic_path, check_output_dir, sha256_of, write_json
from ..model import GPTModel
from ..tokenizer import TOKENIZER_FILES, get_tokenizer, tokenizer_files
from ..weights import save_streamed
from .trainable_run import RANDOM_BASE, SAVE_LAYOUTS, TRAINED_FILE, load_trainable, write_trained
from .transaction import StagedRun, missing_run_hint, verify_files

RUN_FORMAT = "gpt-classifier-run"
RUN_FORMAT_VERSION = 2  # 2: complete runs carry run-complete.json
RUN_FILE = "run.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_DIR = "tokenizer"


@dataclass(frozen=True)
class RunInfo:
    """What a run directory says about its model (``run.json``)."""

    gpt_config: GPTConfig
    classes: tuple[str, ...]
    pooling: str
    padding: str
    max_length: int  # texts are cut to this many tokens
    pad_length: int | None  # every input padded to this length (None: per batch)
    base_model: str = "gpt2"
    init: str = "pretrained"
    tokenizer: str = "gpt2"
    pad_token_id: int = 50256
    extra: dict[str, Any] | None = None  # training settings, data summary, timings
    save: str = "full"  # or "trainable": the trained tensors and base_weights (trainable_run)
    base_weights: dict[str, Any] | None = None
    long_text: LongText = LongText()  # how texts longer than max_length are read

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RUN_FORMAT,
            "format_version": RUN_FORMAT_VERSION,
            "package_version": __version__,
            "model": {
                "base_model": self.base_model,
                "init": self.init,
                "gpt_config": self.gpt_config.to_dict(),
                "save": self.save,
                **({"base_weights": self.base_weights} if self.base_weights else {}),
            },
            "classifier": {
                "classes": list(self.classes),
                "num_classes": len(self.classes),
                "pooling": self.pooling,
            },
            "inputs": {
                "tokenizer": self.tokenizer,
                "padding": self.padding,
                "max_length": self.max_length,
                "pad_length": self.pad_length,
                "pad_token_id": self.pad_token_id,
                "long_text": self.long_text.to_dict(),
            },
            **(self.extra or {}),
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str) -> RunInfo:
        """Check every field of ``run.json`` (exact types, ranges, consistency); anything wrong
        is a one-line ``GPTClassifierError`` naming the field and its value."""
        if values.get("format") != RUN_FORMAT:
            raise GPTClassifierError(f"{source} is not a gpt-classifier run file")
        version = values.get("format_version")
        # ``true == 1`` and ``1.0 == 1`` in Python, so the type is compared too
        if type(version) is not int or version != RUN_FORMAT_VERSION:
            raise GPTClassifierError(
                f"{source} was written by another version of gpt-classifier (run format "
                f"{_show(version)}, this version reads {RUN_FORMAT_VERSION}); train the model again"
            )
        return _validated_run_info(_Fields(values, source))


# --- validation of run.json ---------------------------------------------------------------------

_MISSING: Any = object()
_INIT_KINDS = ("pretrained", "random")
_TOKENIZERS = ("gpt2",)  # the only tokenizer this package encodes with


def _show(value: Any, limit: int = 60) -> str:
    """A value as it is written in the JSON file, cut short so the message stays one line."""
    try:
        text = json.dumps(value)  # escapes newlines and non-ASCII: one line
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Fields:
    """The fields of one ``run.json``, each read with its check; errors name ``section.key``."""

    def __init__(self, values: dict[str, Any], source: str) -> None:
        self.values, self.source = values, source

    def error(self, message: str) -> GPTClassifierError:
        return GPTClassifierError(f"{self.source}: {message}")

    def get(self, path: str, default: Any = _MISSING) -> Any:
        """The value at ``section.key`` (the key may be missing only with a ``default``)."""
        name, key = path.split(".")
        section = self.values.get(name, _MISSING)
        broken = f"{self.source} is incomplete or malformed"
        if section is _MISSING:
            raise GPTClassifierError(f"{broken}: no {name!r} section")
        if not isinstance(section, dict):
            raise GPTClassifierError(
                f"{broken}: {name} must be a JSON object (got {_show(section)})"
            )
        if key not in section and default is _MISSING:
            raise GPTClassifierError(f"{broken}: {path} is missing")
        return section.get(key, default)

    def integer(
        self, path: str, low: int, high: int, why: str = "", default: Any = _MISSING
    ) -> int:
        """A JSON integer (not true/false, not 3.0) with ``low <= value <= high``."""
        value = self.get(path, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(f"{path} must be an integer (got {_show(value)})")
        if not low <= value <= high:
            raise self.error(f"{path} must be between {low} and {high}{why} (got {_show(value)})")
        return value

    def string(self, path: str, choices: tuple[str, ...] = (), default: Any = _MISSING) -> str:
        value = self.get(path, default)
        if not isinstance(value, str):
            raise self.error(f"{path} must be a string (got {_show(value)})")
        if choices and value not in choices:
            raise self.error(f"{path} must be one of {', '.join(choices)} (got {_show(value)})")
        return value

    def classes(self) -> tuple[str, ...]:
        path = "classifier.classes"
        value = self.get(path)
        if not isinstance(value, list):  # a string would iterate into one class per character
            raise self.error(f"{path} must be a list of class names (got {_show(value)})")
        if len(value) < 2:
            raise self.error(f"{path} must list at least 2 classes (got {_show(value)})")
        seen: set[str] = set()
        for number, name in enumerate(value):
            if not isinstance(name, str):
                raise self.error(f"{path}[{number}] must be a string (got {_show(name)})")
            if not name.strip():
                raise self.error(f"{path}[{number}] is empty (got {_show(name)})")
            if name in seen:
                raise self.error(f"{path} lists {_show(name)} twice")
            seen.add(name)
        return tuple(value)

    def base_weights(self) -> dict[str, Any]:
        """``model.base_weights`` of a trainable run: a source and its sha256 (and a seed)."""
        path, value = "model.base_weights", self.get("model.base_weights")
        if not isinstance(value, dict) or not all(
            isinstance(value.get(key), str) and value[key] for key in ("source", "sha256")
        ):
            raise self.error(f"{path} must hold a source and a sha256 (got {_show(value)})")
        if value["source"] == RANDOM_BASE:
            seed = value.get("seed")
            if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                raise self.error(f"{path}.seed must be a seed (got {_show(seed)})")
        return value

    def padding(self) -> Padding:
        text = self.string("inputs.padding")
        try:
            return parse_padding(text)
        except (GPTClassifierError, ValueError):  # ValueError: int() of digits such as "²"
            choices = ", ".join(PADDING_STRATEGIES)
            raise self.error(
                f"inputs.padding must be one of {choices} (got {_show(text)})"
            ) from None

    def pad_length(self, padding: Padding, max_length: int, context: int) -> int | None:
        """What the padding strategy gives: ``predict`` pads every batch to it, so it may be
        neither shorter than the texts (``max_length``) nor longer than the context."""
        path, value = "inputs.pad_length", self.get("inputs.pad_length")
        if padding.kind == "batch":
            if value is not None:
                raise self.error(f'{path} must be null with padding "batch" (got {_show(value)})')
            return None
        if value is None:
            raise self.error(
                f'{path} must be a number of tokens with padding "{padding}" (got null)'
            )
        why = " (inputs.max_length to the context length)"
        length = self.integer(path, max_length, context, why)
        required = {"fixed": padding.length, "context": context}.get(padding.kind)
        if required is not None and length != required:
            raise self.error(f'{path} must be {required} with padding "{padding}" (got {length})')
        return length


def _validated_run_info(fields: _Fields) -> RunInfo:
    source = fields.source
    config = GPTConfig.from_dict(
        fields.get("model.gpt_config"), source=f"{source}: model.gpt_config"
    )
    base_model = fields.string("model.base_model", default="")
    init = fields.get("model.init", "")
    if init != "":  # runs written before the field existed have none
        init = fields.string("model.init", _INIT_KINDS)
    classes = fields.classes()
    # classifier.num_classes is written for readers: it must agree with the classes, and the
    # head's shape in the weights is checked against them (load_run), which names both counts.
    num_classes = fields.get("classifier.num_classes", len(classes))
    if isinstance(num_classes, bool) or num_classes != len(classes):
        raise fields.error(
            f"classifier.num_classes must be {len(classes)}, the number of classifier.classes "
            f"(got {_show(num_classes)})"
        )
    pooling = fields.string("classifier.pooling", POOLINGS)
    tokenizer = fields.string("inputs.tokenizer", _TOKENIZERS, default="gpt2")
    if config.vocab_size <= EOT_TOKEN_ID:  # the tokenizer's ids would index past the embedding
        raise fields.error(
            f"model.gpt_config.vocab_size must be at least {EOT_TOKEN_ID + 1} for the "
            f"gpt2 tokenizer (got {config.vocab_size})"
        )
    padding = fields.padding()
    context = config.context_length
    max_length = fields.integer("inputs.max_length", 1, context, " (the context length)")
    pad_length = fields.pad_length(padding, max_length, context)
    pad_token_id = fields.integer(
        "inputs.pad_token_id",
        0,
        config.vocab_size - 1,
        " (a token id of the vocabulary)",
        default=EOT_TOKEN_ID,
    )
    save = fields.string("model.save", SAVE_LAYOUTS, default="full")
    known = {"model", "classifier", "inputs", "format", "format_version"}
    return RunInfo(
        gpt_config=config,
        classes=classes,
        pooling=pooling,
        padding=str(padding),
        max_length=max_length,
        pad_length=pad_length,
        base_model=base_model,
        init=init,
        tokenizer=tokenizer,
        pad_token_id=pad_token_id,
        extra={k: v for k, v in fields.values.items() if k not in known},
        save=save,
        base_weights=fields.base_weights() if save == "trainable" else None,
        long_text=LongText.from_dict(fields.get("inputs.long_text", {}), source),
    )


@dataclass
class LoadedRun:
    model: GPTClassifier
    info: RunInfo
    directory: Path


def write_model_files(
    model: GPTClassifier,
    info: RunInfo,
    folder: Path,
    tokenizer_dir: str | os.PathLike[str] | None = None,
) -> None:
    """``model.safetensors`` (LoRA adapters merged first) or, saved ``trainable``, the trained
    tensors; ``run.json``; and the tokenizer's files where they are on disk (``tokenizer_dir``,
    ``$GPT_CLASSIFIER_TOKENIZER_DIR`` or tiktoken's cache) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    metadata = {"format": RUN_FORMAT, "version": __version__}
    if info.save == "trainable":
        write_trained(model, folder, metadata)
    else:
        if has_lora(model):
            merge_lora(model)
        with atomic_path(folder / WEIGHTS_FILE) as partial:  # a lazy model's frozen weights:
            save_streamed(model, partial, metadata)  # read as written, one module at a time
    if (files := tokenizer_files(tokenizer_dir)) is not None:
        (folder / TOKENIZER_DIR).mkdir(exist_ok=True)
        for name, path in files.items():
            shutil.copyfile(path, folder / TOKENIZER_DIR / name)
    write_json(folder / RUN_FILE, info.to_dict())


def save_run(
    model: GPTClassifier,
    info: RunInfo,
    directory: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    tokenizer_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Save ``model`` as a complete run directory, in one transaction (see ``transaction``).

    An existing non-empty ``directory`` is replaced only with ``overwrite``.
    """
    target = check_output_dir(directory, overwrite=overwrite)
    staged = StagedRun(target).start()
    try:
        write_model_files(model, info, staged.folder, tokenizer_dir)
        return staged.commit()
    except BaseException:
        staged.discard()
        raise


def read_run_info(directory: str | os.PathLike[str]) -> RunInfo:
    folder = Path(directory)
    run_file = folder / RUN_FILE
    try:
        if not folder.is_dir():
            raise GPTClassifierError(f"run directory not found: {folder}{missing_run_hint(folder)}")
        if not run_file.is_file():
            raise GPTClassifierError(
                f"{folder} is not a gpt-classifier run directory (no {RUN_FILE}); "
                "pass the --output-dir of a `gpt-classifier train` run"
            )
        verify_files(folder, [RUN_FILE])
        values = json.loads(run_file.read_text(encoding="utf-8"))
    except OSError as exc:  # a folder or file without read permission, an I/O error
        raise _unreadable(run_file, exc) from None
    except (ValueError, RecursionError) as exc:  # also bad UTF-8, ints over 4300 digits
        detail = str(exc).splitlines()[0] if str(exc) else "nested too deeply"
        raise GPTClassifierError(f"{run_file} is not valid JSON ({detail})") from None
    if not isinstance(values, dict):
        raise GPTClassifierError(f"{run_file} must hold a JSON object")
    return RunInfo.from_dict(values, str(run_file))


def _unreadable(path: Path, exc: OSError) -> GPTClassifierError:
    """One line for an OS error on ``path`` (or on the folder that holds it)."""
    if isinstance(exc, PermissionError):
        where = exc.filename or path
        return GPTClassifierError(f"cannot read {where}: permission denied")
    return GPTClassifierError(f"cannot read {path}: {exc.strerror or type(exc).__name__}")


def load_run(
    directory: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    weights: str | None = None,
) -> LoadedRun:
    """The classifier saved in ``directory``, in eval mode on ``device``; ``weights``: where a
    trainable run's base weights are, if not where they were at training."""
    folder = Path(directory)
    info = read_run_info(folder)
    trainable = info.save == "trainable"
    path = folder / (TRAINED_FILE if trainable else WEIGHTS_FILE)
    state = _read_weights(folder, path)
    if trainable:
        for name in state:
            state[name] = _checked_values(state[name], name, path)
        model = load_trainable(state, info, weights)
    else:
        model = _full_model(state, info, path)
    model.to(device).eval()
    for param in model.parameters():
        param.requires_grad_(False)
    model.run_info = info  # classify_review reads the trained lengths and class names from it
    return LoadedRun(model=model, info=info, directory=folder)


def run_tokenizer(
    directory: str | os.PathLike[str], tokenizer_dir: str | os.PathLike[str] | None = None
) -> tiktoken.Encoding:
    """The run's own tokenizer (``tokenizer/``, checked against the run's marker); a run saved
    without it reads ``tokenizer_dir``, the variable or the download. A ``tokenizer_dir`` given
    for a run that has its own must hold the same files: the tokenizer is part of the model."""
    folder = Path(directory)
    stored = folder / TOKENIZER_DIR
    if not stored.is_dir():
        return get_tokenizer(tokenizer_dir)
    verify_files(folder, [f"{TOKENIZER_DIR}/{name}" for name in TOKENIZER_FILES])
    if tokenizer_dir:
        given = Path(tokenizer_dir).expanduser()
        for name in TOKENIZER_FILES:
            if not (given / name).is_file() or sha256_of(given / name) != sha256_of(stored / name):
                raise GPTClassifierError(
                    f"--tokenizer-dir {given}: its {name} differs from the run's own "
                    f"{stored / name} (a run's tokenizer is part of its model); drop the flag"
                )
    return get_tokenizer(stored)


def _read_weights(folder: Path, weights: Path) -> dict[str, torch.Tensor]:
    try:
        if not weights.is_file():
            raise GPTClassifierError(f"{folder} has no {weights.name}")
        verify_files(folder, [weights.name])
        weights.open("rb").close()  # safetensors says "No such file" for an unreadable one
        return load_file(str(weights))
    except OSError as exc:
        raise _unreadable(weights, exc) from None
    except (SafetensorError, ValueError) as exc:
        raise GPTClassifierError(f"{weights} is corrupt or truncated ({exc})") from None


def _full_model(state: dict[str, torch.Tensor], info: RunInfo, weights: Path) -> GPTClassifier:
    _check_architecture(state, info, weights)
    with torch.device("meta"):
        gpt = GPTModel(info.gpt_config)
        model = GPTClassifier(gpt, len(info.classes), pooling=info.pooling)
    expected = model.state_dict()
    head = state.get("gpt.out_head.weight")
    if head is not None and head.shape[0] != len(info.classes):
        raise GPTClassifierError(
            f"{weights} has a head for {head.shape[0]} classes but {RUN_FILE} lists "
            f"{len(info.classes)} ({', '.join(info.classes)})"
        )
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        problem = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise GPTClassifierError(f"{weights} does not match {RUN_FILE}: {problem}")
    for name, tensor in expected.items():
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise GPTClassifierError(
                f"{weights}: tensor {name} has shape {tuple(state[name].shape)}, "
                f"expected {tuple(tensor.shape)}"
            )
        state[name] = _checked_values(state[name], name, weights)
    model.load_state_dict(state, assign=True)
    return model


_BLOCK = re.compile(r"^gpt\.trf_blocks\.(\d+)\.")


def _check_architecture(state: dict[str, torch.Tensor], info: RunInfo, weights: Path) -> None:
    """The sizes in ``run.json`` against the weights before building the model: a config edited
    to a huge width or depth would take minutes, or overflow, on ``meta`` before any check."""
    cfg = info.gpt_config
    where = f"{RUN_FILE}'s model.gpt_config"
    blocks = {int(match.group(1)) for name in state if (match := _BLOCK.match(name))}
    if blocks and max(blocks) + 1 != cfg.n_layers:
        raise GPTClassifierError(
            f"{weights} holds {max(blocks) + 1} transformer blocks but {where} has "
            f"n_layers {cfg.n_layers}"
        )
    for name, shape, keys in (
        ("gpt.tok_emb.weight", (cfg.vocab_size, cfg.emb_dim), "vocab_size, emb_dim"),
        ("gpt.pos_emb.weight", (cfg.context_length, cfg.emb_dim), "context_length, emb_dim"),
    ):
        if name in state and tuple(state[name].shape) != shape:
            raise GPTClassifierError(
                f"{weights}: tensor {name} has shape {tuple(state[name].shape)}, but {where} "
                f"gives ({keys}) = {shape}"
            )


def _checked_values(tensor: torch.Tensor, name: str, weights: Path) -> torch.Tensor:
    """``tensor`` as float32 (runs are written so; float16/bfloat16/float64 copies converted),
    if it holds floating-point numbers, all finite (a NaN would give a probability ``nan``)."""
    if not tensor.dtype.is_floating_point:
        raise GPTClassifierError(
            f"{weights}: tensor {name} has dtype {str(tensor.dtype).removeprefix('torch.')}; "
            "weights must be float32"
        )
    tensor = tensor.to(torch.float32)  # a float64 beyond float32's range becomes inf: checked
    if not bool(torch.isfinite(tensor).all()):
        raise GPTClassifierError(
            f"{weights}: tensor {name} holds NaN or infinite values (a diverged training run or "
            "a corrupt file); train the model again"
        )
    return tensor
