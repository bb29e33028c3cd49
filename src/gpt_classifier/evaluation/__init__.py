"""Evaluation: metrics (numpy only), the text/JSON report, training history and figures."""

from .history import TrainingHistory
from .metrics import binary_roc_auc, classification_metrics, confusion_matrix
from .plots import plot_confusion_matrix, plot_training_history, plot_values
from .report import EvaluationReport, format_report, read_report_json, write_report_json

__all__ = [
    "EvaluationReport",
    "TrainingHistory",
    "binary_roc_auc",
    "classification_metrics",
    "confusion_matrix",
    "format_report",
    "plot_confusion_matrix",
    "plot_training_history",
    "plot_values",
    "read_report_json",
    "write_report_json",
]
