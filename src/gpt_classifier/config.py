"""Model configuration: the book's keys as a dataclass, with the four GPT-2 sizes by name."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import GPTClassifierError
from .fileio import read_json

GPT2_VOCAB_SIZE = 50257
GPT2_CONTEXT_LENGTH = 1024
EOT_TOKEN_ID = 50256  # "<|endoftext|>": GPT-2's only special token, used as pad id too
GPT2_SIZES: dict[str, dict[str, int]] = {
    "gpt2": {"emb_dim": 768, "n_layers": 12, "n_heads": 12},
    "gpt2-medium": {"emb_dim": 1024, "n_layers": 24, "n_heads": 16},
    "gpt2-large": {"emb_dim": 1280, "n_layers": 36, "n_heads": 20},
    "gpt2-xl": {"emb_dim": 1600, "n_layers": 48, "n_heads": 25},
}
_BOOK = {"gpt2-small": "124M", "gpt2-medium": "355M", "gpt2-large": "774M", "gpt2-xl": "1558M"}
# The book's names ("gpt2-small (124M)"), parameter counts and Hugging Face ids: the same sizes.
MODEL_ALIASES: dict[str, str] = {"gpt2-small": "gpt2"} | {
    alias: size
    for (book, params), size in zip(_BOOK.items(), GPT2_SIZES, strict=True)
    for alias in (f"{book} ({params})", params, f"openai-community/{size}")
}
_LOWERED = {alias.lower(): size for alias, size in MODEL_ALIASES.items()}


@dataclass(frozen=True)
class GPTConfig:
    """Hyperparameters of a GPT-2-style model, named as in the book's ``GPT_CONFIG_124M``."""

    vocab_size: int = GPT2_VOCAB_SIZE
    context_length: int = GPT2_CONTEXT_LENGTH
    emb_dim: int = 768
    n_heads: int = 12
    n_layers: int = 12
    drop_rate: float = 0.0
    qkv_bias: bool = True
    # Not in the book's dict: an experiment switch (the book's bonus table, "no causal mask").
    causal: bool = True

    def __post_init__(self) -> None:
        problems = []
        for key in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                problems.append(f"{key} must be a positive integer (got {value!r})")
        if not problems and self.emb_dim % self.n_heads:
            problems.append(
                f"emb_dim ({self.emb_dim}) must be divisible by n_heads ({self.n_heads})"
            )
        rate = self.drop_rate
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= rate < 1.0:
            problems.append(f"drop_rate must be a number in [0, 1) (got {rate!r})")
        for key in ("qkv_bias", "causal"):
            if not isinstance(value := getattr(self, key), bool):
                problems.append(f"{key} must be true or false (got {value!r})")
        if problems:
            raise GPTClassifierError("invalid model config: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> GPTConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> GPTConfig:
        if not isinstance(values, dict):
            raise GPTClassifierError(
                f"{source}: the model config must be a JSON object (got {type(values).__name__})"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        if unknown := sorted(set(values) - known):
            raise GPTClassifierError(
                f"{source}: unknown config key(s) {', '.join(unknown)}; "
                f"expected some of {', '.join(sorted(known))}"
            )
        try:
            return cls(**values)
        except GPTClassifierError as exc:
            raise GPTClassifierError(f"{source}: {exc}") from None

    @classmethod
    def from_name(cls, name: str) -> GPTConfig:
        return cls(**GPT2_SIZES[canonical_model_name(name)])


def canonical_model_name(name: str) -> str:
    """Map a GPT-2 size name or alias to one of ``GPT2_SIZES``; raise listing the valid names."""
    key = name.strip()
    if size := key if key in GPT2_SIZES else _LOWERED.get(key.lower()):
        return size
    valid = ", ".join(list(GPT2_SIZES) + [f'"{a}"' for a in MODEL_ALIASES if "(" in a])
    raise GPTClassifierError(f"unknown model {name!r}; valid names: {valid}")


def is_model_name(name: str) -> bool:
    return name.strip() in GPT2_SIZES or name.strip().lower() in _LOWERED


def resolve_config(model: str | GPTConfig | dict[str, Any]) -> GPTConfig:
    """A config from a GPT-2 name, a JSON file path, a plain dict (the book's) or a GPTConfig."""
    if isinstance(model, GPTConfig):
        return model
    if isinstance(model, dict):
        return GPTConfig.from_dict(model)
    if not is_model_name(model) and (model.endswith(".json") or Path(model).is_file()):
        return GPTConfig.from_dict(read_json(model, "config file"), source=model)
    return GPTConfig.from_name(model)  # an unknown name raises, listing the valid ones
