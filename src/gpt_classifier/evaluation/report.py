"""Classification metrics in numpy, as plain Python values (undefined ratios are ``0.0``, never
NaN, as scikit-learn's ``zero_division=0``), and the evaluation report ``{split: metrics}`` as text
and as JSON."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import GPTClassifierError
from ..fileio import read_json, write_json


def classification_metrics(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
    probabilities: np.ndarray | None = None,
    loss: float | None = None,
) -> dict[str, Any]:
    """Score predicted class ids against true ones; ``probabilities`` give the ROC-AUC (binary,
    else scikit-learn's one-vs-rest macro mean over classes with positives and negatives)."""
    names = [str(name) for name in class_names]
    if len(names) < 2:
        raise ValueError(f"need at least two class names, got {len(names)}")
    if len(set(names)) != len(names):
        raise ValueError(f"class names must be unique, got {names}")
    num_classes = len(names)
    true = _class_ids(y_true, "y_true", num_classes)
    pred = _class_ids(y_pred, "y_pred", num_classes)
    if true.shape != pred.shape:
        raise ValueError(f"y_true and y_pred differ in length ({true.shape[0]} vs {pred.shape[0]})")
    if len(true) == 0:
        raise ValueError("no examples to evaluate (y_true is empty)")
    matrix = confusion_matrix(true, pred, num_classes)
    true_pos = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1).astype(np.float64)  # examples of each true class
    with np.errstate(divide="ignore", invalid="ignore"):  # 0 / 0: NaN, then 0.0
        precision = np.nan_to_num(true_pos / matrix.sum(axis=0))  # of those predicted as each
        recall = np.nan_to_num(true_pos / support)
        f1 = np.nan_to_num(2.0 * precision * recall / (precision + recall))
    scores = {"precision": precision, "recall": recall, "f1": f1}
    weights = support / support.sum()
    roc_auc = method = None
    if probabilities is not None:
        probs = np.asarray(probabilities, dtype=np.float64)
        if probs.ndim == 1 and num_classes == 2:
            probs = np.stack([1.0 - probs, probs], axis=1)
        if probs.shape != (len(true), num_classes):
            raise ValueError(
                f"probabilities must have shape ({len(true)}, {num_classes}), "
                f"got {np.shape(probabilities)}"
            )
        if not np.all(np.isfinite(probs)) or probs.min() < 0.0 or probs.max() > 1.0:
            raise ValueError("probabilities must be finite and within [0, 1]")
        row_sums = probs.sum(axis=1)
        worst = float(row_sums[np.argmax(np.abs(row_sums - 1.0))])
        if abs(worst - 1.0) > 1e-3:  # catches logits passed by mistake
            raise ValueError(
                "probabilities must sum to 1 over the classes (softmax output, not logits); "
                f"a row sums to {worst:.4g}"
            )
        positives = [1] if num_classes == 2 else range(num_classes)
        aucs = [binary_roc_auc(true == index, probs[:, index]) for index in positives]
        if defined := [auc for auc in aucs if auc is not None]:
            roc_auc = float(np.mean(defined))
            method = "binary" if num_classes == 2 else "one-vs-rest macro"
    return {
        "accuracy": float(np.mean(true == pred)),
        "loss": None if loss is None else float(loss),
        "num_examples": len(true),
        "per_class": {
            name: {**{key: float(v[i]) for key, v in scores.items()}, "support": int(support[i])}
            for i, name in enumerate(names)
        },
        "macro_avg": {key: float(v.mean()) for key, v in scores.items()},
        "weighted_avg": {key: float(weights @ v) for key, v in scores.items()},
        "confusion_matrix": matrix.tolist(),
        "roc_auc": roc_auc,
        "roc_auc_method": method,
    }


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Entry ``[i, j]``: examples of true class ``i`` predicted as ``j``."""
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def binary_roc_auc(is_positive: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve, Mann-Whitney ``U / (n_pos * n_neg)``; ``None`` without both."""
    positive = np.asarray(is_positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    # 1-based ranks in ascending order, tied scores sharing their average rank
    values = np.asarray(scores, dtype=np.float64)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse.reshape(-1)]
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _class_ids(values: Sequence[int] | np.ndarray, name: str, num_classes: int) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size and array.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold integer class ids, got dtype {array.dtype}")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array) & (array == np.round(array))):
        raise ValueError(f"{name} must hold integer class ids, got non-integer values")
    array = array.astype(np.int64)
    if array.size and (array.min() < 0 or array.max() >= num_classes):
        bad = int(array.min() if array.min() < 0 else array.max())
        raise ValueError(
            f"{name} holds class id {bad}, outside 0..{num_classes - 1} "
            f"for {num_classes} class names"
        )
    return array


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


def read_report_json(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
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
    if missing := [name for name in names if name not in per_class]:
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
        short = [name if len(name) <= 12 else name[:9] + "..." for name in names]  # 12 wide at most
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
    lines = []
    for cells in [header, *([["-" * width for width in widths]] if rule else []), *rows]:
        aligned = [cells[0].ljust(widths[0])]
        aligned += [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        lines.append("  ".join(aligned).rstrip())
    return "\n".join(lines)


def _fmt(value: Any, kind: str = "float") -> str:
    """A number as a ``float`` (4 decimals), ``percent`` of 1 or ``int``; ``-`` if missing."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-"
    if kind == "float":
        return f"{value:.4f}"
    if not math.isfinite(value):
        return str(value) if kind == "percent" else "-"
    return f"{100.0 * value:.2f}%" if kind == "percent" else str(int(value))
