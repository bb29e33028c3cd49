"""classification_metrics and binary_roc_auc against hand-computed values and brute force."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from gpt_classifier.evaluation.report import binary_roc_auc, classification_metrics

BINARY = ["ham", "spam"]
THREE = ["neg", "neutral", "pos"]


def brute_force_auc(is_positive, scores) -> float:
    """Fraction of (positive, negative) pairs ranked correctly, ties counting one half."""
    pos = [s for s, p in zip(scores, is_positive, strict=True) if p]
    neg = [s for s, p in zip(scores, is_positive, strict=True) if not p]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_binary_hand_computed():
    # confusion matrix [[2, 2], [1, 2]]
    m = classification_metrics([0, 0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1, 0], BINARY, loss=0.25)
    assert m["confusion_matrix"] == [[2, 2], [1, 2]]
    assert m["num_examples"] == 7
    assert m["loss"] == 0.25
    assert m["accuracy"] == pytest.approx(4 / 7)
    ham, spam = m["per_class"]["ham"], m["per_class"]["spam"]
    assert ham == pytest.approx({"precision": 2 / 3, "recall": 1 / 2, "f1": 4 / 7, "support": 4})
    assert spam == pytest.approx({"precision": 1 / 2, "recall": 2 / 3, "f1": 4 / 7, "support": 3})
    assert m["macro_avg"] == pytest.approx({"precision": 7 / 12, "recall": 7 / 12, "f1": 4 / 7})
    assert m["weighted_avg"] == pytest.approx({"precision": 25 / 42, "recall": 4 / 7, "f1": 4 / 7})
    assert m["roc_auc"] is None and m["roc_auc_method"] is None  # no probabilities given
    assert list(m["per_class"]) == BINARY


def test_three_classes_with_a_class_never_predicted():
    # class "pos" (2) is never predicted: precision 0/0 -> 0.0, recall 0/2, f1 0.0
    m = classification_metrics([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 0, 0], THREE)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [2, 0, 0]]
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["per_class"]["neg"] == pytest.approx(
        {"precision": 1 / 3, "recall": 1 / 2, "f1": 2 / 5, "support": 2}
    )
    assert m["per_class"]["neutral"] == pytest.approx(
        {"precision": 2 / 3, "recall": 1.0, "f1": 4 / 5, "support": 2}
    )
    assert m["per_class"]["pos"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert m["macro_avg"] == pytest.approx({"precision": 1 / 3, "recall": 1 / 2, "f1": 2 / 5})
    assert m["weighted_avg"] == pytest.approx(m["macro_avg"])  # equal supports
    assert m["loss"] is None


def test_class_absent_from_y_true_counts_as_zero_in_macro_average():
    # "pos" has no true examples (recall 0/0) but is predicted once (precision 0/1)
    m = classification_metrics([0, 0, 1], [0, 2, 1], THREE)
    assert m["per_class"]["pos"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["per_class"]["neg"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2}
    )
    assert m["macro_avg"]["recall"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    # weighted by support: "pos" weighs nothing
    assert m["weighted_avg"]["recall"] == pytest.approx((2 * 0.5 + 1 * 1.0) / 3)


def test_everything_wrong_gives_zeros_not_nan():
    m = classification_metrics([0, 0, 0], [1, 1, 1], BINARY, probabilities=[0.9, 0.8, 0.7])
    assert m["accuracy"] == 0.0
    for scores in [*m["per_class"].values(), m["macro_avg"], m["weighted_avg"]]:
        assert all(np.isfinite(value) for value in scores.values())
    assert m["per_class"]["spam"]["precision"] == 0.0
    assert m["roc_auc"] is None  # only one class present in y_true
    json.dumps(m, allow_nan=False)


def test_result_is_plain_json():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 50)
    probs = rng.dirichlet(np.ones(3), 50).astype(np.float32)
    m = classification_metrics(y, probs.argmax(1), THREE, probs, loss=np.float32(0.5))
    assert json.loads(json.dumps(m, allow_nan=False)) == m
    assert type(m["accuracy"]) is float and type(m["num_examples"]) is int
    assert type(m["loss"]) is float and type(m["roc_auc"]) is float


def test_roc_auc_hand_computed():
    assert binary_roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    # ties between a positive and a negative count one half: (0.5 + 1 + 1 + 1) / 4
    assert binary_roc_auc(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.2, 0.9])) == 0.875
    assert binary_roc_auc(np.array([0, 1, 0, 1]), np.full(4, 0.3)) == 0.5


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_with_ties_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 60)
    scores = np.round(rng.random(60), 1)  # only 11 distinct values: many ties
    assert binary_roc_auc(y == 1, scores) == pytest.approx(brute_force_auc(y == 1, scores))


def test_roc_auc_perfect_and_inverted_classifiers():
    y = [0, 0, 1, 1, 1]
    p1 = np.array([0.1, 0.2, 0.7, 0.8, 0.9])
    perfect = classification_metrics(y, (p1 > 0.5).astype(int), BINARY, np.stack([1 - p1, p1], 1))
    assert perfect["roc_auc"] == 1.0
    assert perfect["roc_auc_method"] == "binary"
    inverted = classification_metrics(y, (p1 < 0.5).astype(int), BINARY, 1 - p1)
    assert inverted["roc_auc"] == 0.0


def test_roc_auc_none_with_a_single_class():
    m = classification_metrics([1, 1, 1], [1, 0, 1], BINARY, probabilities=[0.9, 0.4, 0.8])
    assert m["roc_auc"] is None and m["roc_auc_method"] is None


def test_one_dimensional_binary_scores_equal_two_columns():
    y = [0, 1, 1, 0, 1]
    p1 = np.array([0.2, 0.6, 0.4, 0.4, 0.9])
    one = classification_metrics(y, [0, 1, 0, 0, 1], BINARY, p1)
    two = classification_metrics(y, [0, 1, 0, 0, 1], BINARY, np.stack([1 - p1, p1], 1))
    assert one == two
    assert one["roc_auc"] == pytest.approx(brute_force_auc(np.array(y) == 1, p1))


def test_multiclass_roc_auc_is_one_vs_rest_macro():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 40)
    probs = np.round(rng.dirichlet(np.ones(3), 40), 1)
    probs /= probs.sum(1, keepdims=True)
    m = classification_metrics(y, probs.argmax(1), THREE, probs)
    expected = np.mean([brute_force_auc(y == k, probs[:, k]) for k in range(3)])
    assert m["roc_auc"] == pytest.approx(expected)
    assert m["roc_auc_method"] == "one-vs-rest macro"


def test_multiclass_roc_auc_skips_a_class_absent_from_y_true():
    y = np.array([0, 0, 1, 1])  # class 2 never occurs: its one-vs-rest AUC is undefined
    probs = np.array([[0.7, 0.2, 0.1], [0.5, 0.3, 0.2], [0.4, 0.5, 0.1], [0.1, 0.8, 0.1]])
    m = classification_metrics(y, probs.argmax(1), THREE, probs)
    expected = np.mean([brute_force_auc(y == k, probs[:, k]) for k in (0, 1)])
    assert m["roc_auc"] == pytest.approx(expected)


def test_accepts_tensors_bools_and_integral_floats():
    as_list = classification_metrics([0, 1, 1], [0, 1, 0], BINARY)
    assert classification_metrics(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]), BINARY) == (
        as_list
    )
    assert classification_metrics(np.array([False, True, True]), [0.0, 1.0, 0.0], BINARY) == (
        as_list
    )


@pytest.mark.parametrize(
    ("y_true", "y_pred", "names", "probabilities", "message"),
    [
        ([0, 1, 1], [0, 1], BINARY, None, "differ in length"),
        ([0, 1, 2], [0, 1, 1], BINARY, None, "outside 0..1"),
        ([0, 1, 1], [0, -1, 1], BINARY, None, "class id -1"),
        ([0, 1.5], [0, 1], BINARY, None, "integer class ids"),
        (["a", "b"], [0, 1], BINARY, None, "integer class ids"),
        ([[0, 1]], [[0, 1]], BINARY, None, "one-dimensional"),
        ([], [], BINARY, None, "no examples"),
        ([0, 1], [0, 1], ["ham", "ham"], None, "unique"),
        ([0, 0], [0, 0], ["only"], None, "at least two"),
        ([0, 1], [0, 1], BINARY, np.ones((2, 3)) / 3, "shape"),
        ([0, 1], [0, 1], BINARY, np.array([[2.0, -1.0], [0.5, 0.5]]), "within"),
        ([0, 1], [0, 1], BINARY, np.array([[0.2, 0.3], [0.5, 0.5]]), "sum to 1"),
        ([0, 1], [0, 1], BINARY, np.array([[np.nan, 1.0], [0.5, 0.5]]), "finite"),
        ([0, 1], [0, 1], THREE, np.array([0.4, 0.6]), "shape"),
    ],
)
def test_invalid_inputs_raise_value_error(y_true, y_pred, names, probabilities, message):
    with pytest.raises(ValueError, match=message):
        classification_metrics(y_true, y_pred, names, probabilities)


@pytest.mark.parametrize(("num_classes", "seed"), [(2, 0), (2, 1), (3, 2), (5, 3)])
def test_matches_scikit_learn(num_classes, seed):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    n = 200
    y = rng.integers(0, num_classes, n)
    logits = rng.normal(size=(n, num_classes)) + 1.5 * np.eye(num_classes)[y]
    logits = np.round(logits, 1)  # ties
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    pred = probs.argmax(1)
    pred[:7] = num_classes - 1  # some extra errors
    names = [f"c{k}" for k in range(num_classes)]
    m = classification_metrics(y, pred, names, probs)

    labels = list(range(num_classes))
    assert (
        m["confusion_matrix"] == sklearn_metrics.confusion_matrix(y, pred, labels=labels).tolist()
    )
    assert m["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(y, pred))
    p, r, f, s = sklearn_metrics.precision_recall_fscore_support(
        y, pred, labels=labels, zero_division=0
    )
    for k, name in enumerate(names):
        assert m["per_class"][name] == pytest.approx(
            {"precision": p[k], "recall": r[k], "f1": f[k], "support": s[k]}
        )
    for average in ("macro", "weighted"):
        p, r, f, _ = sklearn_metrics.precision_recall_fscore_support(
            y, pred, labels=labels, average=average, zero_division=0
        )
        assert m[f"{average}_avg"] == pytest.approx({"precision": p, "recall": r, "f1": f})
    if num_classes == 2:
        expected_auc = sklearn_metrics.roc_auc_score(y, probs[:, 1])
    else:
        expected_auc = sklearn_metrics.roc_auc_score(y, probs, multi_class="ovr", average="macro")
    assert m["roc_auc"] == pytest.approx(expected_auc)
