"""TrainingHistory: recording points, and the JSON round trip."""

from __future__ import annotations

import json

import pytest

from gpt_classifier.errors import GPTClassifierError
from gpt_classifier.evaluation import TrainingHistory


def test_record_and_round_trip_through_json():
    history = TrainingHistory()
    history.record_losses(0.0, 0, 2.5, 2.6)
    history.record_losses(0.38, 400, 0.9, 1.1)
    history.record_accuracies(1, 1046, 0.875, 0.85)
    assert history.epochs_seen == [0.0, 0.38]
    assert history.examples_seen == [0, 400]
    assert history.train_accs == [0.875] and history.val_accs == [0.85]

    data = json.loads(json.dumps(history.to_dict()))
    assert data == {
        "epochs_seen": [0.0, 0.38],
        "examples_seen": [0, 400],
        "train_losses": [2.5, 0.9],
        "val_losses": [2.6, 1.1],
        "acc_epochs_seen": [1.0],
        "acc_examples_seen": [1046],
        "train_accs": [0.875],
        "val_accs": [0.85],
    }
    assert TrainingHistory.from_dict(data) == history


def test_to_dict_is_a_copy():
    history = TrainingHistory(
        train_losses=[1.0], val_losses=[1.0], epochs_seen=[0], examples_seen=[0]
    )
    history.to_dict()["train_losses"].append(5.0)
    assert history.train_losses == [1.0]


def test_missing_keys_are_empty_lists():
    history = TrainingHistory.from_dict(
        {"train_accs": [0.5], "val_accs": [0.4], "acc_epochs_seen": [1], "acc_examples_seen": [10]}
    )
    assert history.train_losses == [] and history.acc_examples_seen == [10]


def test_lengths_must_agree():
    with pytest.raises(ValueError, match="differ in length"):
        TrainingHistory(
            epochs_seen=[0.0, 1.0], examples_seen=[0], train_losses=[1.0], val_losses=[1.0]
        )
    with pytest.raises(GPTClassifierError, match="history.json: .*train_accs=2"):
        TrainingHistory.from_dict(
            {"train_accs": [0.1, 0.2], "val_accs": [0.1]}, source="history.json"
        )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"train_loss": [1.0]}, "unknown keys"),
        ({"train_losses": None}, "train_losses must be a list of numbers"),
        (
            {"train_losses": ["x"], "val_losses": [1.0], "epochs_seen": [0], "examples_seen": [0]},
            "train_losses",
        ),
        ({"train_losses": "10"}, "train_losses must be a list"),
        ([1, 2], "JSON object"),
    ],
)
def test_from_dict_errors_are_user_errors(values, message):
    with pytest.raises(GPTClassifierError, match=message):
        TrainingHistory.from_dict(values)
