"""The evaluation report ``{split: classification_metrics(...)}``, as text and as JSON. The text
shows the splits in order, what it knows of each, and ``-`` for what is missing."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import GPTClassifierError
from ..fileio import read_json, write_json

EvaluationReport = dict[str, dict[str, Any]]

_MISSING = "-"
_MAX_COLUMN_LABEL = 12  # confusion matrix column headers longer than this are shortened


def format_report(
    report: Mapping[str, Mapping[str, Any]], class_names: Sequence[str] | None = None
) -> str:
    """A summary table (split, n, loss, accuracy, macro F1, ROC-AUC), then each split's
    per-class scores and confusion matrix, in ``class_names``' order (default: ``per_class``'s)."""
    summary_rows = [
        [
            str(split),
            _fmt_int(metrics.get("num_examples")),
            _fmt_float(metrics.get("loss")),
            _fmt_percent(metrics.get("accuracy")),
            _fmt_float(metrics.get("macro_avg", {}).get("f1")),
            _fmt_float(metrics.get("roc_auc")),
        ]
        for split, metrics in report.items()
    ]
    sections = [
        "Summary",
        format_table(["split", "n", "loss", "accuracy", "macro F1", "ROC-AUC"], summary_rows),
    ]
    for split, metrics in report.items():
        details = _format_split(metrics, class_names)
        if details:
            heading = f"== {split} (n={_fmt_int(metrics.get('num_examples'))}) =="
            sections.append(heading + "\n" + details)
    return "\n\n".join(sections) + "\n"


def write_report_json(report: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Indented JSON, written atomically; a NaN loss is written ``NaN`` and read back."""
    write_json(path, report)


def read_report_json(path: str | os.PathLike[str]) -> EvaluationReport:
    """A report written by :func:`write_report_json`; a one-line error if it is not one."""
    report = read_json(path, "evaluation report")
    if not isinstance(report, dict) or not all(isinstance(v, dict) for v in report.values()):
        raise GPTClassifierError(
            f"evaluation report {path} must be a JSON object of splits, each an object of metrics"
        )
    return report


def _format_split(metrics: Mapping[str, Any], class_names: Sequence[str] | None) -> str:
    per_class = metrics.get("per_class")
    if not isinstance(per_class, Mapping) or not per_class:
        return ""
    names = [str(name) for name in class_names] if class_names is not None else list(per_class)
    missing = [name for name in names if name not in per_class]
    if missing:
        raise ValueError(f"report has no per-class metrics for {missing}")

    rows = [_score_row(name, per_class[name], per_class[name].get("support")) for name in names]
    for label, key in (("macro avg", "macro_avg"), ("weighted avg", "weighted_avg")):
        if isinstance(metrics.get(key), Mapping):
            rows.append(_score_row(label, metrics[key], metrics.get("num_examples")))
    parts = [format_table(["class", "precision", "recall", "f1", "support"], rows)]

    matrix = metrics.get("confusion_matrix")
    if _is_square(matrix, len(names)):
        header = ["true \\ predicted"] + [_shorten(name) for name in names]
        body = [
            [name] + [_fmt_int(count) for count in row]
            for name, row in zip(names, matrix, strict=True)
        ]
        parts.append(
            "Confusion matrix (rows: true class, columns: predicted class)\n"
            + format_table(header, body)
        )
    return "\n\n".join(parts)


def _score_row(label: str, scores: Mapping[str, Any], support: Any) -> list[str]:
    return [
        label,
        *(_fmt_float(scores.get(k)) for k in ("precision", "recall", "f1")),
        _fmt_int(support),
    ]


def format_table(header: list[str], rows: list[list[str]], rule: bool = True) -> str:
    """Columns separated by two spaces, the first left-aligned, the rest right-aligned; ``rule``:
    a line of dashes under the header."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    dashes = ["  ".join("-" * width for width in widths)] if rule else []
    return "\n".join([line(header), *dashes, *(line(row) for row in rows)])


def _is_square(matrix: Any, size: int) -> bool:
    return (
        isinstance(matrix, list)
        and len(matrix) == size
        and all(isinstance(row, list) and len(row) == size for row in matrix)
    )


def _shorten(name: str) -> str:
    return name if len(name) <= _MAX_COLUMN_LABEL else name[: _MAX_COLUMN_LABEL - 3] + "..."


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fmt_float(value: Any) -> str:
    return f"{value:.4f}" if _is_number(value) else _MISSING


def _fmt_percent(value: Any) -> str:
    if not _is_number(value):
        return _MISSING
    return f"{100.0 * value:.2f}%" if math.isfinite(value) else str(value)


def _fmt_int(value: Any) -> str:
    return str(int(value)) if _is_number(value) and math.isfinite(value) else _MISSING
