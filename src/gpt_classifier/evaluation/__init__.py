"""Evaluation: metrics (numpy only), the text/JSON report, training history and figures."""

from .history import TrainingHistory
from .metrics import binary_roc_auc, classification_metrics, confusion_matrix
from .report import format_report, read_report_json, write_report_json


def __getattr__(name: str):
    # matplotlib (~35 MB resident) loads only when a figure is drawn: a fine-tune draws its
    # figures at the end, after its peak of memory, not before it.
    if name in ("plot_confusion_matrix", "plot_training_history", "plot_values"):
        from . import plots

        return getattr(plots, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
