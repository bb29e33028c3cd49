"""Classification metrics in numpy: accuracy, per-class precision/recall/F1, confusion matrix,
ROC-AUC.

Everything returned is plain Python (``int``, ``float``, ``None``, lists, dicts) so that it goes
straight into ``json.dump``. Undefined ratios (a class that is never predicted has no precision)
are reported as ``0.0``, never NaN, as scikit-learn does with ``zero_division=0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# Rows of ``probabilities`` must sum to 1 within this; it catches logits passed by mistake.
_PROBABILITY_SUM_TOLERANCE = 1e-3


def _class_names(class_names: Sequence[str]) -> list[str]:
    names = [str(name) for name in class_names]
    if len(names) < 2:
        raise ValueError(f"need at least two class names, got {len(names)}")
    if len(set(names)) != len(names):
        raise ValueError(f"class names must be unique, got {names}")
    return names


def _roc_auc(
    true: np.ndarray, probabilities: np.ndarray | None, n: int, num_classes: int
) -> tuple[float | None, str | None]:
    """Binary ROC-AUC of class 1, or the macro mean of one-vs-rest AUCs over the classes that
    have both positives and negatives; ``(None, None)`` where undefined."""
    if probabilities is None:
        return None, None
    probs = _probabilities(probabilities, n, num_classes)
    if num_classes == 2:
        auc = binary_roc_auc(true == 1, probs[:, 1])
        return auc, ("binary" if auc is not None else None)
    aucs = [binary_roc_auc(true == k, probs[:, k]) for k in range(num_classes)]
    defined = [auc for auc in aucs if auc is not None]
    if not defined:
        return None, None
    return float(np.mean(defined)), "one-vs-rest macro"


def classification_metrics(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
    probabilities: np.ndarray | None = None,
    loss: float | None = None,
) -> dict[str, Any]:
    """Score predicted class ids against true ones.

    ``y_true`` and ``y_pred`` hold class ids ``0 .. len(class_names) - 1``. ``probabilities``, if
    given, is the softmax output, shape ``(n, num_classes)`` (or ``(n,)`` holding the probability
    of class 1 when there are two classes); it is used only for ROC-AUC. ``loss`` is stored as
    given (the mean cross-entropy over the same examples, computed by the caller).

    Returns a dict with ``accuracy`` (fraction of 1), ``loss`` (``None`` when not given),
    ``num_examples``, ``per_class`` ``{name: {precision, recall, f1, support}}`` in
    ``class_names`` order, ``macro_avg`` and ``weighted_avg`` ``{precision, recall, f1}``,
    ``confusion_matrix`` (rows are true classes, columns predicted ones), ``roc_auc`` and
    ``roc_auc_method``:

    * two classes: ``roc_auc`` is the area under the ROC curve of the probability of class index 1
      (``roc_auc_method == "binary"``);
    * more classes: the unweighted mean of the one-vs-rest AUCs of each class's probability
      (``"one-vs-rest macro"``), taken over the classes that have both positive and negative
      examples in ``y_true``; with every class present this equals scikit-learn's
      ``roc_auc_score(..., multi_class="ovr", average="macro")``;
    * ``None`` (method ``None``) without ``probabilities``, or when no class has both positive and
      negative examples (e.g. ``y_true`` holds a single class).

    Raises ``ValueError`` on inputs that do not fit together (lengths, ids out of range,
    probability shape, duplicate class names).
    """
    names = _class_names(class_names)
    num_classes = len(names)
    true = _class_ids(y_true, "y_true", num_classes)
    pred = _class_ids(y_pred, "y_pred", num_classes)
    if true.shape != pred.shape:
        raise ValueError(f"y_true and y_pred differ in length ({true.shape[0]} vs {pred.shape[0]})")
    n = int(true.shape[0])
    if n == 0:
        raise ValueError("no examples to evaluate (y_true is empty)")

    matrix = confusion_matrix(true, pred, num_classes)
    true_pos = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1).astype(np.float64)  # examples of each true class
    predicted = matrix.sum(axis=0).astype(np.float64)  # examples predicted as each class
    precision = _safe_divide(true_pos, predicted)
    recall = _safe_divide(true_pos, support)
    f1 = _safe_divide(2.0 * precision * recall, precision + recall)

    per_class = {
        name: {
            "precision": float(precision[k]),
            "recall": float(recall[k]),
            "f1": float(f1[k]),
            "support": int(support[k]),
        }
        for k, name in enumerate(names)
    }
    weights = support / support.sum()

    roc_auc, roc_auc_method = _roc_auc(true, probabilities, n, num_classes)
    return {
        "accuracy": float(np.mean(true == pred)),
        "loss": None if loss is None else float(loss),
        "num_examples": n,
        "per_class": per_class,
        "macro_avg": {
            "precision": float(precision.mean()),
            "recall": float(recall.mean()),
            "f1": float(f1.mean()),
        },
        "weighted_avg": {
            "precision": float(weights @ precision),
            "recall": float(weights @ recall),
            "f1": float(weights @ f1),
        },
        "confusion_matrix": matrix.tolist(),
        "roc_auc": roc_auc,
        "roc_auc_method": roc_auc_method,
    }


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``(num_classes, num_classes)``: entry ``[i, j]`` is the number of examples of true
    class ``i`` predicted as ``j``. Expects validated integer id arrays of equal length."""
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def binary_roc_auc(is_positive: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve: the probability that a random positive scores higher than a
    random negative, ties counting one half.

    Computed as the Mann-Whitney U statistic, ``U / (n_pos * n_neg)``, with tied scores given
    their average rank. ``None`` when there are no positives or no negatives.
    """
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
    if array.dtype.kind == "b":
        array = array.astype(np.int64)
    elif array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise ValueError(f"{name} must hold integer class ids, got non-integer values")
        array = array.astype(np.int64)
    elif array.dtype.kind not in "iu":
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
    worst = float(np.max(np.abs(row_sums - 1.0)))
    if worst > _PROBABILITY_SUM_TOLERANCE:
        raise ValueError(
            "probabilities must sum to 1 over the classes (softmax output, not logits); "
            f"a row sums to {float(row_sums[np.argmax(np.abs(row_sums - 1.0))]):.4g}"
        )
    return probs
