"""LabelMap: stable class order, ids, JSON round trip, errors."""

from __future__ import annotations

import pytest

from gpt_classifier.data import LabelMap, sort_labels
from gpt_classifier.errors import GPTClassifierError


def test_string_labels_sorted_ham_is_zero():
    label_map = LabelMap.from_labels(["spam", "ham", "ham", "spam"])
    assert label_map.classes == ("ham", "spam")
    assert label_map.id_of("ham") == 0 and label_map.id_of("spam") == 1
    assert label_map.encode(["spam", "ham"]) == [1, 0]
    assert label_map.decode([0, 1]) == ["ham", "spam"]
    assert len(label_map) == label_map.num_classes == 2
    assert "spam" in label_map and "eggs" not in label_map


def test_integer_labels_in_numeric_order():
    assert sort_labels(["10", "2", "1", "0"]) == ["0", "1", "2", "10"]
    assert sort_labels(["-1", "1", "0"]) == ["-1", "0", "1"]
    assert sort_labels(["10", "2", "b"]) == ["10", "2", "b"]  # not all integers: by string


def test_json_round_trip(tmp_path):
    label_map = LabelMap.from_labels(["negative", "neutral", "positive", "négatif"])
    assert LabelMap.from_json(label_map.to_json()) == label_map
    assert LabelMap.from_dict(label_map.to_dict()) == label_map
    path = tmp_path / "labels.json"
    label_map.save(path)
    assert LabelMap.load(path) == label_map


def test_errors():
    label_map = LabelMap(("ham", "spam"))
    with pytest.raises(GPTClassifierError, match="unknown label 'eggs'; known classes: ham, spam"):
        label_map.id_of("eggs")
    with pytest.raises(GPTClassifierError, match="class id 2 out of range"):
        label_map.name_of(2)
    with pytest.raises(GPTClassifierError, match="twice"):
        LabelMap(("a", "a"))
    with pytest.raises(GPTClassifierError, match="at least one class"):
        LabelMap(())
    with pytest.raises(GPTClassifierError, match="invalid JSON"):
        LabelMap.from_json("{", "labels.json")
    with pytest.raises(GPTClassifierError, match="labels.json: expected an object"):
        LabelMap.from_dict(["ham"], "labels.json")


def test_load_missing_file(tmp_path):
    with pytest.raises(GPTClassifierError, match="label map file not found"):
        LabelMap.load(tmp_path / "labels.json")
