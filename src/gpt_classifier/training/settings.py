"""Options several commands share, the training settings and the presets, each written once."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..data import BALANCE_METHODS, DEFAULT_FRACTIONS, DEFAULT_SEED, FORMATS
from ..data.windows import LONG_TEXT_MODES
from ..errors import GPTClassifierError
from ..precision import PRECISIONS
from ..tokenizer import TOKENIZER_DIR_ENV

MAX_SEED = 2**63 - 1  # torch.manual_seed's largest


def opt(help: str = "", default: Any = None, **cli: Any) -> Any:
    """A field with its help and how ``cli/options.py`` shows it (``cli=False``: no flag)."""
    return field(default=default, metadata={"help": help, **cli})


# What a value must be (the words of the error) -> the test it passes.
RULES: dict[str, Callable[[Any], bool]] = {
    "a positive integer": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
    "a positive finite number": lambda v: isinstance(v, int | float) and math.isfinite(v) and v > 0,
    "a finite number >= 0": lambda v: isinstance(v, int | float) and math.isfinite(v) and v >= 0,
    "between 0 and 2**63-1": lambda v: isinstance(v, int) and 0 <= v <= MAX_SEED,
    ">= 1": lambda v: v is None or v >= 1,
    "positive": lambda v: v is None or v > 0,
}


def rule_problems(owner: Any, rules: dict[str, str]) -> list[str]:
    """``<name> must be <rule> (got <value>)`` for each attribute of ``owner`` failing its rule."""
    return [
        f"{name} must be {rule} (got {getattr(owner, name)!r})"
        for name, rule in rules.items()
        if not RULES[rule](getattr(owner, name))
    ]


@dataclass(frozen=True)
class TrainSettings:
    """How the classifier is optimised; the defaults are the book's."""

    epochs: int = 5
    batch_size: int = 8
    lr: float = 5e-5
    weight_decay: float = 0.1
    eval_freq: int = 50
    eval_iter: int = 5
    grad_accum_steps: int = 1
    seed: int = DEFAULT_SEED
    select_best: bool = False

    def __post_init__(self) -> None:
        counts = ("epochs", "batch_size", "eval_freq", "eval_iter", "grad_accum_steps")
        rules = dict.fromkeys(counts, "a positive integer")
        rules.update(lr="a positive finite number", weight_decay="a finite number >= 0")
        if problems := rule_problems(self, {**rules, "seed": "between 0 and 2**63-1"}):
            raise GPTClassifierError("invalid training settings: " + "; ".join(problems))


# The default recipe optimises as the book does (TrainSettings' defaults). The book's preset is
# chapter 6 exactly: every text padded to the longest training text, the last position read,
# duplicates kept (the book's split has them), every class undersampled to the smallest.
_DEFAULT_RECIPE = dataclasses.asdict(TrainSettings()) | dict(padding="batch", pooling="last-real")
_DEFAULT_RECIPE.update(trainable="last-block", keep_duplicates=False, balance="weighted")
_BOOK = dict(padding="longest-train", pooling="last", keep_duplicates=True, balance="undersample")
PRESETS: dict[str, dict[str, Any]] = {"default": _DEFAULT_RECIPE, "book": _DEFAULT_RECIPE | _BOOK}


def over_preset(options: Any, keys: Any) -> dict[str, Any]:
    """``keys`` of ``options``, each None replaced by the preset's value."""
    name = getattr(options, "preset", "default")
    if name not in PRESETS:
        raise GPTClassifierError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    values = {key: getattr(options, key) for key in keys}
    return {key: PRESETS[name][key] if value is None else value for key, value in values.items()}


@dataclass(kw_only=True)
class CacheOptions:
    cache_dir: str | None = opt(
        "Folder of the frozen-prefix disk cache (default: prefix-cache in $GPT_CLASSIFIER_CACHE "
        "or ~/.cache/gpt-classifier).",
        path="dir",
    )


@dataclass(kw_only=True)
class TokenizerOptions:
    tokenizer_dir: str | None = opt(
        "GPT-2's vocab.bpe and encoder.json, for offline use.", path="dir", envvar=TOKENIZER_DIR_ENV
    )


@dataclass(kw_only=True)
class ModelOptions(TokenizerOptions):
    model: str = opt(
        "A GPT-2 size (gpt2 ... gpt2-xl, or the book's names) or a config JSON.", "gpt2"
    )
    weights: str | None = opt(
        "Local weights: a .safetensors file or a Hugging Face model folder.", path="any"
    )
    init: str = opt(
        "pretrained: OpenAI's weights (downloaded, or --weights); random: untrained.",
        "pretrained",
        choices=("pretrained", "random"),
    )


@dataclass(kw_only=True)
class DeviceOptions:
    device: str = opt("auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps.", "auto")


@dataclass(kw_only=True)
class PrecisionOptions(DeviceOptions):
    precision: str = opt(
        "fp32: the saved metrics are evaluate's, read off the frozen layers' states; bf16 (auto: "
        "where the hardware runs it fast) speeds those layers up, the report then costs a "
        "float32 pass of the whole model.",
        "fp32",
        choices=PRECISIONS,
    )


@dataclass(kw_only=True)
class InferencePrecisionOptions(DeviceOptions):
    precision: str = opt(
        "fp32: a text's result never depends on its batch; bf16 (auto: where the hardware runs "
        "it fast) is faster but moves probabilities by ~1e-3 with the batch.",
        "fp32",
        choices=PRECISIONS,
    )


@dataclass(kw_only=True)
class ReadOptions:
    fmt: str | None = opt(
        "File format, else from the suffix (headerless .tsv/.txt: sms).",
        flag="--format",
        choices=FORMATS,
    )
    text_column: str | None = opt("Text column (default: text, sentence, ...).")
    label_column: str | None = opt("Label column (default: label, class, ...).")
    lenient: bool = opt("A CSV quote that runs over many lines is a warning, not an error.", False)


@dataclass(kw_only=True)
class DataOptions:
    data_file: str | None = opt(
        "One labelled file to split (default: the sms-spam dataset, downloaded).", path="file"
    )
    train_file: str | None = opt("Ready-made training split.", path="file")
    validation_file: str | None = opt("Ready-made validation split.", path="file")
    test_file: str | None = opt("Ready-made test split.", path="file")


@dataclass(kw_only=True)
class SplitOptions(ReadOptions, DataOptions):
    """How one labelled file is split: the same flags, the same splits in every command."""

    preset: str = opt(
        "book: chapter 6 exactly; flags override it.", "default", choices=tuple(PRESETS)
    )
    balance: str | None = opt(
        "weighted: every row kept, the training loss weighted by class; undersample: rows "
        "dropped down to the smallest class; none.",
        choices=BALANCE_METHODS,
        preset=True,
    )
    keep_duplicates: bool | None = opt(
        "Keep repeated texts.", flag="--keep-duplicates/--drop-duplicates", preset=True
    )
    fractions: str | tuple[float, float, float] = opt(
        "Train,validation,test shares of the stratified split.", DEFAULT_FRACTIONS
    )
    seed: int | None = opt("Seed of the split (and of training).", min=0, max=MAX_SEED, preset=True)

    def dataset_args(self) -> dict[str, Any]:
        """``prepare_dataset``'s keyword arguments: the source, the split over the preset."""
        chosen = over_preset(self, ("balance", "keep_duplicates", "seed"))
        chosen["fractions"] = self.fractions
        fields = (*dataclasses.fields(DataOptions), *dataclasses.fields(ReadOptions))
        return {f.name: getattr(self, f.name) for f in fields} | chosen


@dataclass(kw_only=True)
class PaddingOptions:
    padding: str | None = opt("batch, longest-train, fixed:N or context.", preset=True)


@dataclass(kw_only=True)
class LongTextOptions:
    """How a text longer than the model's context is read (recorded in run.json)."""

    long_text: str = opt(
        "truncate: its first tokens (the book's; no cost for texts that fit); head-tail: its "
        "first and last tokens; chunks: windows over all of it, their logits averaged.",
        "truncate",
        choices=LONG_TEXT_MODES,
    )
    head_fraction: float = opt(
        "head-tail: the share of the context kept from the start.", 0.5, min=0, max=1
    )
    chunk_stride: int | None = opt(
        "chunks: tokens between window starts (default: the context, no overlap).", min=1
    )
    max_chunks: int = opt("chunks: the most windows per text (evenly spread).", 8, min=1)
