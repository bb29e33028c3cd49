"""Classification metrics in numpy: accuracy, per-class precision/recall/F1, confusion matrix,
ROC-AUC. All plain Python (straight into ``json.dump``); undefined ratios (a class never
predicted has no precision) are ``0.0``, never NaN, as scikit-learn's ``zero_division=0``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# Rows of ``probabilities`` must sum to 1 within this; it catches logits passed by mistake.
_PROBABILITY_SUM_TOLERANCE = 1e-3


def _roc_auc(
    true: np.ndarray, probabilities: np.ndarray | None, n: int, num_classes: int
) -> tuple[float | None, str | None]:
    if probabilities is None:
        return None, None
    probs = _probabilities(probabilities, n, num_classes)
    if num_classes == 2:
        auc = binary_roc_auc(true == 1, probs[:, 1])
        return auc, ("binary" if auc is not None else None)
    aucs = [binary_roc_auc(true == k, probs[:, k]) for k in range(num_classes)]
    defined = [auc for auc in aucs if auc is not None]
    return (float(np.mean(defined)), "one-vs-rest macro") if defined else (None, None)


def classification_metrics(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
    probabilities: np.ndarray | None = None,
    loss: float | None = None,
) -> dict[str, Any]:
    """Score predicted class ids ``0 .. len(class_names) - 1`` against true ones.

    ``probabilities`` (softmax output ``(n, classes)``, or ``(n,)`` of class 1 for two classes)
    is used only for ROC-AUC: binary (of class 1) for two classes, else the macro mean of the
    one-vs-rest AUCs over the classes with both positives and negatives (scikit-learn's
    ``multi_class="ovr"`` when every class is present); ``None`` where undefined. ``loss`` is
    stored as given. The confusion matrix's rows are true classes. Inputs that do not fit
    together raise ``ValueError``.
    """
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
    n = int(true.shape[0])
    if n == 0:
        raise ValueError("no examples to evaluate (y_true is empty)")
    matrix = confusion_matrix(true, pred, num_classes)
    roc_auc, roc_auc_method = _roc_auc(true, probabilities, n, num_classes)
    return {
        "accuracy": float(np.mean(true == pred)),
        "loss": None if loss is None else float(loss),
        "num_examples": n,
        **_per_class_scores(matrix, names),
        "confusion_matrix": matrix.tolist(),
        "roc_auc": roc_auc,
        "roc_auc_method": roc_auc_method,
    }


def _per_class_scores(matrix: np.ndarray, names: list[str]) -> dict[str, Any]:
    """``per_class`` precision, recall, F1 and support, and their macro and weighted means."""
    true_pos = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1).astype(np.float64)  # examples of each true class
    predicted = matrix.sum(axis=0).astype(np.float64)  # examples predicted as each class
    precision = _safe_divide(true_pos, predicted)
    recall = _safe_divide(true_pos, support)
    f1 = _safe_divide(2.0 * precision * recall, precision + recall)
    scores = {"precision": precision, "recall": recall, "f1": f1}
    weights = support / support.sum()
    per_class = {
        name: {**{key: float(v[k]) for key, v in scores.items()}, "support": int(support[k])}
        for k, name in enumerate(names)
    }
    return {
        "per_class": per_class,
        "macro_avg": {key: float(v.mean()) for key, v in scores.items()},
        "weighted_avg": {key: float(weights @ v) for key, v in scores.items()},
    }


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Entry ``[i, j]``: examples of true class ``i`` predicted as ``j``."""
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def binary_roc_auc(is_positive: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (a random positive scores above a random negative, ties half):
    Mann-Whitney ``U / (n_pos * n_neg)`` with average ranks; ``None`` without both classes."""
    positive = np.asarray(is_positive, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos = int(positive.sum())
    n_neg = int(positive.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(scores)
    u_statistic = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u_statistic / (n_pos * n_neg))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values`` in ascending order; tied values share their average rank."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    last_rank = np.cumsum(counts)  # rank of the last member of each group of equal values
    mean_rank = last_rank - (counts - 1) / 2.0
    return mean_rank[inverse.reshape(-1)]


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise ``numerator / denominator``, 0.0 where the denominator is 0."""
    out = np.zeros_like(numerator, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _class_ids(values: Sequence[int] | np.ndarray, name: str, num_classes: int) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        return array.astype(np.int64)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise ValueError(f"{name} must hold integer class ids, got non-integer values")
    elif array.dtype.kind not in "biu":
        raise ValueError(f"{name} must hold integer class ids, got dtype {array.dtype}")
    array = array.astype(np.int64)
    low, high = int(array.min()), int(array.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise ValueError(
            f"{name} holds class id {bad}, outside 0..{num_classes - 1} "
            f"for {num_classes} class names"
        )
    return array


def _probabilities(probabilities: np.ndarray, n: int, num_classes: int) -> np.ndarray:
    """Validate and return probabilities as ``(n, num_classes)`` float64."""
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
    worst = int(np.argmax(np.abs(row_sums - 1.0)))
    if abs(row_sums[worst] - 1.0) > _PROBABILITY_SUM_TOLERANCE:
        raise ValueError(
            "probabilities must sum to 1 over the classes (softmax output, not logits); "
            f"a row sums to {float(row_sums[worst]):.4g}"
        )
    return probs
