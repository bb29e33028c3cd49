"""gpt-classifier: a from-scratch GPT-2 (chapter 6 of *Build a Large Language Model (From Scratch)*)
fine-tuned into a text classifier."""

from .config import GPTConfig
from .errors import GPTClassifierError

__version__ = "0.1.0"

__all__ = [
    "GPTConfig",
    "GPTModel",
    "GPTClassifierError",
    "TextClassifier",
    "load_pretrained",
    "__version__",
]


def __getattr__(name: str):
    # Lazy so that `import gpt_classifier` stays cheap (no torch) for tools that only need the
    # config, and for the command line, which must catch a Ctrl-C while torch imports.
    if name == "GPTModel":
        from .model import GPTModel

        return GPTModel
    if name == "load_pretrained":
        from .weights import load_pretrained

        return load_pretrained
    if name == "TextClassifier":
        from .inference import TextClassifier

        return TextClassifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
