"""gpt-classifier: a from-scratch GPT-2 (chapter 6 of *Build a Large Language Model (From Scratch)*)
fine-tuned into a text classifier."""

import importlib
from typing import TYPE_CHECKING, Any

from .config import GPTConfig
from .errors import GPTClassifierError

if TYPE_CHECKING:
    from .inference import TextClassifier

__version__ = "0.1.0"

# Imported on first use: `import gpt_classifier` stays cheap, and the CLI can catch a Ctrl-C
# while torch imports.
_LAZY = {
    "GPTModel": ".model",
    "load_pretrained": ".weights",
    "TextClassifier": ".inference",
    "explain": ".inference.explain",
}
__all__ = ["GPTConfig", "GPTClassifierError", "train", "__version__", *_LAZY]


def train(**options: Any) -> "TextClassifier":
    """``gpt-classifier train`` with its options as keyword arguments; the run as a classifier."""
    from .inference import TextClassifier
    from .training.api import train_run

    run_dir = train_run(**options).run_dir
    loading = {name: options[name] for name in ("device", "tokenizer_dir") if name in options}
    return TextClassifier.from_run(run_dir, precision=options.get("precision", "auto"), **loading)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name], __name__), name)
