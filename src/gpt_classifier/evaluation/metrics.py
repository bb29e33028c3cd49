"""Classification metrics in numpy, as plain Python values; undefined ratios are ``0.0``, never
NaN, as scikit-learn's ``zero_division=0``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# Rows of ``probabilities`` must sum to 1 within this; it catches logits passed by mistake.
_PROBABILITY_SUM_TOLERANCE = 1e-3


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
    precision = _safe_divide(true_pos, matrix.sum(axis=0))  # over those predicted as each class
    recall = _safe_divide(true_pos, support)
    f1 = _safe_divide(2.0 * precision * recall, precision + recall)
    scores = {"precision": precision, "recall": recall, "f1": f1}
    weights = support / support.sum()
    roc_auc = method = None
    if probabilities is not None:
        probs = _probabilities(probabilities, len(true), num_classes)
        positives = [1] if num_classes == 2 else range(num_classes)
        aucs = [binary_roc_auc(true == index, probs[:, index]) for index in positives]
        defined = [auc for auc in aucs if auc is not None]
        if defined:
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
    n_pos = int(positive.sum())
    n_neg = int(positive.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return None
    # 1-based ranks in ascending order, tied scores sharing their average rank
    values = np.asarray(scores, dtype=np.float64)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse.reshape(-1)]
    u_statistic = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u_statistic / (n_pos * n_neg))


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.zeros(numerator.shape, dtype=np.float64)
    return np.divide(numerator, denominator, out=out, where=denominator != 0)


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


def _probabilities(probabilities: np.ndarray, n: int, num_classes: int) -> np.ndarray:
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.ndim == 1 and num_classes == 2:
        probs = np.stack([1.0 - probs, probs], axis=1)
    if probs.shape != (n, num_classes):
        raise ValueError(
            f"probabilities must have shape ({n}, {num_classes}), got {np.shape(probabilities)}"
        )
    if not np.all(np.isfinite(probs)) or probs.min() < 0.0 or probs.max() > 1.0:
        raise ValueError("probabilities must be finite and within [0, 1]")
    row_sums = probs.sum(axis=1)
    worst = float(row_sums[np.argmax(np.abs(row_sums - 1.0))])
    if abs(worst - 1.0) > _PROBABILITY_SUM_TOLERANCE:
        raise ValueError(
            "probabilities must sum to 1 over the classes (softmax output, not logits); "
            f"a row sums to {worst:.4g}"
        )
    return probs
