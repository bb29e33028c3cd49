"""Using a trained classifier: the saved run directory and batched prediction."""

from ..runs.run_dir import LoadedRun, RunInfo, load_run, save_run
from .predict import Prediction, TextClassifier, classify_review
