"""Using a trained classifier: the saved run directory and batched prediction."""

from .predict import Prediction, TextClassifier, classify_review
from .run_dir import LoadedRun, RunInfo, load_run, save_run

__all__ = [
    "LoadedRun",
    "Prediction",
    "RunInfo",
    "TextClassifier",
    "classify_review",
    "load_run",
    "save_run",
]
