"""Evaluation: metrics (numpy only), the text/JSON report, training history; ``plots`` is imported
apart: matplotlib (~35 MB resident) loads only to draw, after a fine-tune's peak of memory."""

from .history import TrainingHistory
from .report import classification_metrics, format_report, read_report_json, write_report_json
