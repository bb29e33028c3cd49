"""A run directory (``run.json``, weights, ``tokenizer/``, metrics, plots, ``data/``, the model card
``README.md``); ``--save trainable`` keeps the trained tensors alone (``trained.safetensors``) and
the base they go over with its sha256 in run.json's ``model.base_weights`` (see docs/design.md)."""

import hashlib
import json
import math
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import tiktoken
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .. import __version__
from .. import weights as weight_io
from ..classifier import POOLINGS, GPTClassifier, apply_trainable, merge_lora
from ..config import EOT_TOKEN_ID, GPTConfig, canonical_model_name, is_model_name
from ..data.encoding import PADDING_STRATEGIES, parse_padding
from ..data.windows import LongText
from ..errors import GPTClassifierError
from ..fileio import atomic_path, check_output_dir, sha256_of, write_json, write_text
from ..model import GPTModel
from ..tokenizer import TOKENIZER_FILES, get_tokenizer, tokenizer_files
from .transaction import MARKER_FILE, StagedRun, verify_files

RUN_FORMAT = "gpt-classifier-run"
RUN_FORMAT_VERSION = 2  # 2: complete runs carry run-complete.json
RUN_FILE = "run.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_DIR = "tokenizer"
SAVE_LAYOUTS = ("full", "trainable")
TRAINED_FILE = "trained.safetensors"
RANDOM_BASE = "random"
CARD_FILE = "README.md"
RUN_USAGE = """```bash
gpt-classifier classify path/to/this/folder "Your text here"
```

```python
from gpt_classifier.inference import TextClassifier
print(TextClassifier.from_run("path/to/this/folder").classify("Your text here"))
```"""
_Z95 = 1.959964  # the normal quantile of a two-sided 95 % interval
_NO_METRICS = "No metrics were recorded for this run (no `metrics.json`)."
StrPath = str | os.PathLike[str]
_SECTIONS = {  # run.json's sections and the fields each holds, named as RunInfo's
    "model": ("base_model", "init", "gpt_config", "save", "base_weights"),
    "classifier": ("classes", "num_classes", "pooling"),
    "inputs": ("tokenizer", "padding", "max_length", "pad_length", "pad_token_id", "long_text"),
}


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
    save: str = "full"  # or "trainable": the trained tensors and base_weights
    base_weights: dict[str, Any] | None = None
    long_text: LongText = LongText()  # how texts longer than max_length are read

    def to_dict(self) -> dict[str, Any]:
        values = {**vars(self), "classes": list(self.classes), "num_classes": len(self.classes)}
        values.update(gpt_config=self.gpt_config.to_dict(), long_text=asdict(self.long_text))
        sections = {name: {key: values[key] for key in keys} for name, keys in _SECTIONS.items()}
        if not self.base_weights:
            del sections["model"]["base_weights"]
        version = {"format_version": RUN_FORMAT_VERSION, "package_version": __version__}
        return {"format": RUN_FORMAT, **version, **sections, **(self.extra or {})}

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str) -> "RunInfo":
        """Check every field of ``run.json``; an error names the field and its value."""
        if values.get("format") != RUN_FORMAT:
            raise GPTClassifierError(f"{source} is not a gpt-classifier run file")
        version = values.get("format_version")
        if type(version) is not int or version != RUN_FORMAT_VERSION:  # true == 1.0 == 1
            raise GPTClassifierError(
                f"{source} was written by another version of gpt-classifier (run format "
                f"{_show(version)}, this version reads {RUN_FORMAT_VERSION}); train the model again"
            )
        fields = _Fields(values, source)
        config = GPTConfig.from_dict(fields.get("model.gpt_config"), f"{source}: model.gpt_config")
        sections = {**fields.classifier(), **fields.inputs(config), **fields.model()}
        long_text = LongText.from_dict(fields.get("inputs.long_text", {}), source)
        known = {"format", "format_version", *_SECTIONS}
        extra = {key: value for key, value in values.items() if key not in known}
        return cls(config, **sections, extra=extra, long_text=long_text)


def _show(value: Any, limit: int = 60) -> str:
    """A JSON value as the file writes it, on one line (escaped) and cut short."""
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Fields:
    """The fields of one ``run.json``, each read with its check; errors name ``section.key``."""

    def __init__(self, values: dict[str, Any], source: str) -> None:
        self.values, self.source = values, source

    def check(self, ok: bool, problem: str, *value: Any) -> None:
        if not ok:
            got = f" (got {_show(value[0])})" if value else ""
            raise GPTClassifierError(f"{self.source}: {problem}{got}")

    def get(self, path: str, default: Any = ...) -> Any:
        """The value at ``section.key`` (the key may be missing only with a ``default``)."""
        name, key = path.split(".")
        broken = f"{self.source} is incomplete or malformed"
        if name not in self.values:
            raise GPTClassifierError(f"{broken}: no {name!r} section")
        if not isinstance(section := self.values[name], dict):
            raise GPTClassifierError(
                f"{broken}: {name} must be a JSON object (got {_show(section)})"
            )
        if key not in section and default is ...:
            raise GPTClassifierError(f"{broken}: {path} is missing")
        return section.get(key, default)

    def integer(self, path: str, low: int, high: int, why: str, default: Any = ...) -> int:
        """A JSON integer (not true/false, not 3.0) with ``low <= value <= high``."""
        value = self.get(path, default)
        self.check(type(value) is int, f"{path} must be an integer", value)
        self.check(low <= value <= high, f"{path} must be between {low} and {high}{why}", value)
        return value

    def string(self, path: str, choices: tuple[str, ...] = (), default: Any = ...) -> str:
        value = self.get(path, default)
        self.check(isinstance(value, str), f"{path} must be a string", value)
        listed = ", ".join(choices)
        self.check(not choices or value in choices, f"{path} must be one of {listed}", value)
        return value

    def classifier(self) -> dict[str, Any]:
        path, classes = "classifier.classes", self.get("classifier.classes")
        # a string would iterate into one class per character
        self.check(isinstance(classes, list), f"{path} must be a list of class names", classes)
        self.check(len(classes) >= 2, f"{path} must list at least 2 classes", classes)
        for number, name in enumerate(classes):
            self.check(isinstance(name, str), f"{path}[{number}] must be a string", name)
            self.check(bool(name.strip()), f"{path}[{number}] is empty", name)
            self.check(name not in classes[:number], f"{path} lists {_show(name)} twice")
        count, want = self.get("classifier.num_classes", len(classes)), len(classes)
        problem = f"classifier.num_classes must be {want}, the number of classifier.classes"
        self.check(not isinstance(count, bool) and count == want, problem, count)
        return {"classes": tuple(classes), "pooling": self.string("classifier.pooling", POOLINGS)}

    def inputs(self, config: GPTConfig) -> dict[str, Any]:
        tokenizer = self.string("inputs.tokenizer", ("gpt2",), default="gpt2")  # the one we encode
        vocab = config.vocab_size  # the tokenizer's ids must not index past the embedding
        least = f"model.gpt_config.vocab_size must be at least {EOT_TOKEN_ID + 1}"
        self.check(vocab > EOT_TOKEN_ID, f"{least} for the gpt2 tokenizer", vocab)
        text = self.string("inputs.padding")
        try:
            padding = parse_padding(text)
        except (GPTClassifierError, ValueError):  # ValueError: int() of digits such as "²"
            self.check(
                False, f"inputs.padding must be one of {', '.join(PADDING_STRATEGIES)}", text
            )
        context = config.context_length
        max_length = self.integer("inputs.max_length", 1, context, " (the context length)")
        # predict pads every batch to pad_length: not shorter than the texts nor over the context
        path, length = "inputs.pad_length", self.get("inputs.pad_length")
        if padding.kind == "batch":
            self.check(length is None, f'{path} must be null with padding "batch"', length)
        else:
            tokens = f'{path} must be a number of tokens with padding "{padding}"'
            self.check(length is not None, tokens, length)
            why = " (inputs.max_length to the context length)"
            length = self.integer(path, max_length, context, why)
            required = {"fixed": padding.length, "context": context}.get(padding.kind, length)
            problem = f'{path} must be {required} with padding "{padding}"'
            self.check(length == required, problem, length)
        why = " (a token id of the vocabulary)"
        pad_token_id = self.integer("inputs.pad_token_id", 0, vocab - 1, why, EOT_TOKEN_ID)
        lengths = {"padding": str(padding), "max_length": max_length, "pad_length": length}
        return {**lengths, "tokenizer": tokenizer, "pad_token_id": pad_token_id}

    def model(self) -> dict[str, Any]:
        init = self.get("model.init", "")
        if init != "":  # runs written before the field existed have none
            init = self.string("model.init", ("pretrained", "random"))
        save = self.string("model.save", SAVE_LAYOUTS, default="full")
        base = None
        if save == "trainable":  # a source and its sha256 (and a seed for random weights)
            path, base = "model.base_weights", self.get("model.base_weights")
            given = isinstance(base, dict) and all(
                isinstance(base.get(key), str) and base[key] for key in ("source", "sha256")
            )
            self.check(given, f"{path} must hold a source and a sha256", base)
            if base["source"] == RANDOM_BASE:
                seed = base.get("seed")
                self.check(type(seed) is int and seed >= 0, f"{path}.seed must be a seed", seed)
        base_model = self.string("model.base_model", default="")
        return {"base_model": base_model, "init": init, "save": save, "base_weights": base}


@dataclass
class LoadedRun:
    model: GPTClassifier
    info: RunInfo


def write_model_files(
    model: GPTClassifier, info: RunInfo, folder: Path, tokenizer_dir: StrPath | None = None
) -> None:
    """The weights (or trained tensors), ``run.json`` and the tokenizer's files into ``folder``."""
    metadata = {"format": RUN_FORMAT, "version": __version__}
    if info.save == "trainable":  # the parameters it trains alone, LoRA adapters unmerged
        params = model.named_parameters()
        trained = {name: p.detach().cpu().contiguous() for name, p in params if p.requires_grad}
        with atomic_path(folder / TRAINED_FILE) as partial:
            weight_io.save_tensors(trained.items(), trained.values(), partial, metadata)
    else:
        merge_lora(model)  # LoRA adapters, if any, folded into their Linear
        with atomic_path(folder / WEIGHTS_FILE) as partial:  # a lazy model's frozen weights are
            weight_io.save_streamed(model, partial, metadata)  # read as written, module by module
    for name, path in (tokenizer_files(tokenizer_dir) or {}).items():
        (folder / TOKENIZER_DIR).mkdir(exist_ok=True)
        shutil.copyfile(path, folder / TOKENIZER_DIR / name)
    write_json(folder / RUN_FILE, info.to_dict())


def save_run(
    model: GPTClassifier, info: RunInfo, directory: StrPath, *, tokenizer_dir: StrPath | None = None
) -> Path:
    """Save ``model`` as a new run directory, in one transaction."""
    staged = StagedRun(check_output_dir(directory, overwrite=False)).start()
    try:
        write_model_files(model, info, staged.folder, tokenizer_dir)
        return staged.commit()
    except BaseException:
        staged.discard()
        raise


def read_run_info(directory: StrPath) -> RunInfo:
    run_file = (folder := Path(directory)) / RUN_FILE
    try:
        if not folder.is_dir():
            resume = f"gpt-classifier train --resume {folder} ends it"
            crashed = (StagedRun(folder).folder / MARKER_FILE).is_file()
            hint = f" (a crash interrupted its commit: {resume})" if crashed else ""
            raise GPTClassifierError(f"run directory not found: {folder}{hint}")
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


def _unreadable(path: Path, exc: OSError) -> GPTClassifierError:  # on path or its folder
    if isinstance(exc, PermissionError):
        return GPTClassifierError(f"cannot read {exc.filename or path}: permission denied")
    return GPTClassifierError(f"cannot read {path}: {exc.strerror or type(exc).__name__}")


def load_run(
    directory: StrPath, device: str | torch.device = "cpu", weights: str | None = None
) -> LoadedRun:
    """The classifier saved in ``directory``, in eval mode; ``weights``: a moved base's path."""
    info, folder = read_run_info(directory), Path(directory)
    trainable = info.save == "trainable"
    path = folder / (TRAINED_FILE if trainable else WEIGHTS_FILE)
    try:
        if not path.is_file():
            raise GPTClassifierError(f"{folder} has no {path.name}")
        verify_files(folder, [path.name])
        path.open("rb").close()  # safetensors says "No such file" for an unreadable one
        state = load_file(str(path))
    except OSError as exc:
        raise _unreadable(path, exc) from None
    except (SafetensorError, ValueError) as exc:
        raise GPTClassifierError(f"{path} is corrupt or truncated ({exc})") from None
    model = (
        load_trainable(state, info, weights, path) if trainable else _full_model(state, info, path)
    )
    model.to(device).eval().requires_grad_(False)
    model.run_info = info  # classify_review reads the trained lengths and class names from it
    return LoadedRun(model=model, info=info)


def run_tokenizer(directory: StrPath, tokenizer_dir: StrPath | None = None) -> tiktoken.Encoding:
    """The run's own tokenizer; a given ``tokenizer_dir`` must hold the same files."""
    stored = (folder := Path(directory)) / TOKENIZER_DIR
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


def _full_model(state: dict[str, torch.Tensor], info: RunInfo, weights: Path) -> GPTClassifier:
    # the sizes in run.json against the weights before building: a config edited to a huge width
    # or depth would take minutes, or overflow, on ``meta`` before any check
    cfg, where = info.gpt_config, f"{RUN_FILE}'s model.gpt_config"
    parts = [name.split(".") for name in state if name.startswith("gpt.trf_blocks.")]
    blocks = {int(part[2]) for part in parts if len(part) > 3 and part[2].isdecimal()}
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
    head = state.get("gpt.out_head.weight")
    if head is not None and head.shape[0] != len(info.classes):
        raise GPTClassifierError(
            f"{weights} has a head for {head.shape[0]} classes but {RUN_FILE} lists "
            f"{len(info.classes)} ({', '.join(info.classes)})"
        )
    with torch.device("meta"):
        model = GPTClassifier(GPTModel(cfg), len(info.classes), pooling=info.pooling)
    model.load_state_dict(check_state(state, model.state_dict(), weights, RUN_FILE), assign=True)
    return model


def base_weights_record(
    model: str | GPTConfig, weights_path: str | None, init: str, seed: int
) -> dict[str, Any]:
    """``model.base_weights`` of a run trained from these ``build_model`` arguments."""
    if init == RANDOM_BASE:
        gpt = weight_io.build_model(model, init=RANDOM_BASE, seed=seed, lazy=True)
        digest = _drawn_digest(weight_io.lazy_weights_of(gpt))
        return {"source": RANDOM_BASE, "seed": seed, "sha256": digest}
    source = os.path.abspath(os.path.expanduser(weights_path)) if weights_path else str(model)
    source = canonical_model_name(source) if is_model_name(source) else source
    return {"source": source, "sha256": _files_digest(weight_io.locate_weights(source)[0])}


def check_state(
    state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], path: Path, against: str
) -> dict[str, torch.Tensor]:
    """``state`` with the ``expected`` names and shapes, as finite float32 tensors."""
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        problem = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise GPTClassifierError(f"{path} does not match {against}: {problem}")
    checked = {}
    for name, tensor in ((name, state[name]) for name in expected):
        if (shape := tuple(tensor.shape)) != (want := tuple(expected[name].shape)):
            raise GPTClassifierError(f"{path}: tensor {name} has shape {shape}, expected {want}")
        if not tensor.dtype.is_floating_point:
            dtype = str(tensor.dtype).removeprefix("torch.")
            must = "weights must be float32"
            raise GPTClassifierError(f"{path}: tensor {name} has dtype {dtype}; {must}")
        checked[name] = tensor.to(torch.float32)  # float64 beyond float32's range: inf, refused
        if not bool(torch.isfinite(checked[name]).all()):
            raise GPTClassifierError(
                f"{path}: tensor {name} holds NaN or infinite values (a diverged training run "
                "or a corrupt file); train the model again"
            )
    return checked


def load_trainable(
    state: dict[str, torch.Tensor], info: RunInfo, moved_base: str | None, path: Path
) -> GPTClassifier:
    """The run's base (from ``moved_base`` if given) with the trained tensors ``state`` over it."""
    base, extra, cfg = info.base_weights or {}, info.extra or {}, info.gpt_config
    if base["source"] == RANDOM_BASE:
        gpt = weight_io.build_model(cfg, init=RANDOM_BASE, seed=base["seed"], lazy=True)
    else:
        source, expected = moved_base or base["source"], base["sha256"]
        named = f"base weights {base['source']} (sha256 {expected[:12]}…)"
        fetch = f"run `gpt-classifier download {source}` or " if is_model_name(source) else ""
        try:
            files = weight_io.locate_weights(source)[0]
        except GPTClassifierError as exc:
            raise GPTClassifierError(
                f"{named} not found ({exc}); {fetch}pass --weights PATH to a copy of them"
            ) from None
        if (actual := _files_digest(files)) != expected:
            raise GPTClassifierError(
                f"{source} has sha256 {actual[:12]}…, not the run's {named}; "
                "pass --weights PATH to the weights the run was trained on"
            )
        gpt = weight_io.build_model(cfg, weights=source, lazy=True)
    lazy = weight_io.lazy_weights_of(gpt)
    model = GPTClassifier(gpt, len(info.classes), pooling=info.pooling)
    weight_io.materialize_model(gpt)
    if base["source"] == RANDOM_BASE and _drawn_digest(lazy) != base["sha256"]:
        raise GPTClassifierError(
            f"the random base weights drawn from seed {base['seed']} differ from those the run "
            "was trained on (another torch version?); retrain with --save full"
        )
    lora = extra.get("lora") or {}
    rank, alpha = int(lora.get("rank", 16)), float(lora.get("alpha", 16.0))
    apply_trainable(model, str(extra.get("trainable", "all")), lora_rank=rank, lora_alpha=alpha)
    expected = {name: p for name, p in model.named_parameters() if p.requires_grad}
    with torch.no_grad():
        for name, value in check_state(state, expected, path, "run.json's trainable").items():
            expected[name].copy_(value)
    merge_lora(model)  # if the run trained LoRA adapters
    return model


def _files_digest(files: list[Path]) -> str:
    if len(files) == 1:
        return sha256_of(files[0])
    lines = "".join(f"{sha256_of(file)}  {file.name}\n" for file in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def _drawn_digest(lazy: weight_io.LazyWeights) -> str:
    """The sha256 of every base tensor, module by module (drawn now, or as materialised)."""
    digest = hashlib.sha256()
    for name in lazy.names:
        for _, tensor in lazy.stream(name):
            digest.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def wilson_interval(share: float, n: int) -> tuple[float, float]:
    """The 95 % Wilson score interval of a proportion ``share`` seen in ``n`` trials."""
    centre = (share + _Z95**2 / (2 * n)) / (1 + _Z95**2 / n)
    spread = _Z95 * math.sqrt(share * (1 - share) / n + _Z95**2 / (4 * n * n)) / (1 + _Z95**2 / n)
    return max(0.0, centre - spread), min(1.0, centre + spread)


def model_card(info: RunInfo, metrics: dict[str, Any] | None, usage: str, note: str = "") -> str:
    """The card's Markdown; ``usage``: how to load this folder; ``note``: format specifics."""
    data = (extra := info.extra or {}).get("data")
    lines = ["- Not recorded (the run was saved from Python, not by `train`)."]
    if isinstance(data, dict):
        lines = [f"- Source: `{data.get('source', 'unknown')}`"]
        for split, counts in (data.get("splits") or {}).items():
            lines.append(f"- {split}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    rows = ["| split | texts | accuracy | 95 % interval (Wilson) | macro F1 |", "|---" * 5 + "|"]
    for split, values in (metrics or {}).items():
        accuracy, n = values.get("accuracy"), values.get("num_examples")
        if type(accuracy) is float and type(n) is int and n >= 1:
            low, high = wilson_interval(accuracy, n)
            f1 = (values.get("macro_avg") or {}).get("f1")
            f1_text = f"{f1:.3f}" if isinstance(f1, float) else "-"
            shares = f"{100 * accuracy:.2f} % | {100 * low:.2f} % – {100 * high:.2f} %"
            rows.append(f"| {split} | {n} | {shares} | {f1_text} |")
    init = "random weights, not pretrained" if info.init == "random" else "pretrained weights"
    recipe = {
        "base model": f"`{info.base_model or 'gpt2'}` ({init})",
        "size": json.dumps(info.gpt_config.to_dict()),
        "pooling": info.pooling,
        "padding": info.padding,
        "texts cut to": f"{info.max_length} tokens",
        "trained parameters": extra.get("trainable", "not recorded"),
        "LoRA": extra.get("lora") and json.dumps(extra["lora"]),
        "training settings": extra.get("training") and json.dumps(extra["training"]),
    }
    return f"""# Text classifier: {", ".join(info.classes)}

A GPT-2 fine-tuned as a text classifier with gpt-classifier.

## Data
{chr(10).join(lines)}

## Recipe
{chr(10).join(f"- {key}: {value}" for key, value in recipe.items() if value)}

## Metrics
{chr(10).join(rows) if len(rows) > 2 else _NO_METRICS}

## Intended use
Sorting texts like the training texts into the classes {", ".join(info.classes)}.

## Limits
- Only texts like the training data: the metrics above hold for texts drawn as the test split was.
- A text longer than {info.max_length} tokens is cut to its first {info.max_length} tokens.
- The probabilities are the model's, not calibrated; check decisions that matter by hand.
{note}
## How to load it
{usage}
"""


def write_model_card(folder: Path, info: RunInfo, metrics: dict[str, Any] | None) -> None:
    write_text(folder / CARD_FILE, model_card(info, metrics, RUN_USAGE))
