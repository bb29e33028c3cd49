"""The evaluation report ``{split: classification_metrics(...)}``, as text and as JSON."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import GPTClassifierError
from ..fileio import read_json, write_json

EvaluationReport = dict[str, dict[str, Any]]

_MAX_COLUMN_LABEL = 12  # confusion matrix column headers longer than this are shortened


def format_report(
    report: Mapping[str, Mapping[str, Any]], class_names: Sequence[str] | None = None
) -> str:
    """A summary table, then each split's per-class scores and confusion matrix (``-``: missing)."""
    summary, details = [], []
    for split, metrics in report.items():
        count = _fmt(metrics.get("num_examples"), "int")
        f1 = metrics.get("macro_avg", {}).get("f1")
        loss, f1, auc = map(_fmt, (metrics.get("loss"), f1, metrics.get("roc_auc")))
        summary.append([str(split), count, loss, _fmt(metrics.get("accuracy"), "percent"), f1, auc])
        if isinstance(metrics.get("per_class"), Mapping) and metrics["per_class"]:
            details.append(f"== {split} (n={count}) ==\n" + _format_split(metrics, class_names))
    header = ["split", "n", "loss", "accuracy", "macro F1", "ROC-AUC"]
    return "\n\n".join(["Summary", format_table(header, summary), *details]) + "\n"


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
    per_class = metrics["per_class"]
    names = [str(name) for name in class_names] if class_names is not None else list(per_class)
    missing = [name for name in names if name not in per_class]
    if missing:
        raise ValueError(f"report has no per-class metrics for {missing}")
    labelled = [(name, per_class[name], per_class[name].get("support")) for name in names]
    for label, key in (("macro avg", "macro_avg"), ("weighted avg", "weighted_avg")):
        if isinstance(metrics.get(key), Mapping):
            labelled.append((label, metrics[key], metrics.get("num_examples")))
    keys = ("precision", "recall", "f1")
    rows = [
        [label, *(_fmt(scores.get(key)) for key in keys), _fmt(count, "int")]
        for label, scores, count in labelled
    ]
    parts = [format_table(["class", *keys, "support"], rows)]
    matrix = metrics.get("confusion_matrix")
    rows_ok = isinstance(matrix, list) and len(matrix) == len(names)
    if rows_ok and all(isinstance(row, list) and len(row) == len(names) for row in matrix):
        cut = _MAX_COLUMN_LABEL - 3
        short = [name if len(name) <= _MAX_COLUMN_LABEL else name[:cut] + "..." for name in names]
        body = [
            [name, *(_fmt(count, "int") for count in row)]
            for name, row in zip(names, matrix, strict=True)
        ]
        parts.append(
            "Confusion matrix (rows: true class, columns: predicted class)\n"
            + format_table(["true \\ predicted", *short], body)
        )
    return "\n\n".join(parts)


def format_table(header: list[str], rows: list[list[str]], rule: bool = True) -> str:
    """Columns two spaces apart, the first left-aligned; ``rule``: dashes under the header."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        aligned = [cells[0].ljust(widths[0])]
        aligned += [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join(aligned).rstrip()

    dashes = ["  ".join("-" * width for width in widths)] if rule else []
    return "\n".join([line(header), *dashes, *(line(row) for row in rows)])


def _fmt(value: Any, kind: str = "float") -> str:
    """A number as a ``float`` (4 decimals), ``percent`` of 1 or ``int``; ``-`` if missing."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-"
    if kind == "float":
        return f"{value:.4f}"
    if not math.isfinite(value):
        return str(value) if kind == "percent" else "-"
    return f"{100.0 * value:.2f}%" if kind == "percent" else str(int(value))
