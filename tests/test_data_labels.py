"""LabelMap: stable class order, ids, JSON round trip, errors."""

from __future__ import annotations

import pytest

from gpt_classifier.data import LabelMap, sort_labels
from gpt_classifier.errors import GPTClassifierError


def test_string_labels_sorted_ham_is_zero():
    label_map = LabelMap.from_labels(["spam", "ham", "ham", "spam"])
    assert label_map.classes == ("ham", "spam")
    assert label_map.id_of("ham") == 0 and label_map.id_of("spam") == 1
    assert len(label_map) == label_map.num_classes == 2
    assert "spam" in label_map and "eggs" not in label_map


def test_integer_labels_in_numeric_order():
    assert sort_labels(["10", "2", "1", "0"]) == ["0", "1", "2", "10"]
    assert sort_labels(["-1", "1", "0"]) == ["-1", "0", "1"]
    assert sort_labels(["10", "2", "b"]) == ["10", "2", "b"]  # not all integers: by string


def test_json_round_trip(tmp_path):
    label_map = LabelMap.from_labels(["negative", "neutral", "positive", "négatif"])
    path = tmp_path / "labels.json"
    label_map.save(path)
    assert LabelMap.load(path) == label_map
    assert label_map.classes == ("negative", "neutral", "négatif", "positive")


def test_errors(tmp_path):
    label_map = LabelMap(("ham", "spam"))
    with pytest.raises(GPTClassifierError, match="unknown label 'eggs'; known classes: ham, spam"):
        label_map.id_of("eggs")
    with pytest.raises(GPTClassifierError, match="twice"):
        LabelMap(("a", "a"))
    with pytest.raises(GPTClassifierError, match="at least one class"):
        LabelMap(())
    path = tmp_path / "labels.json"
    path.write_text("{")
    with pytest.raises(GPTClassifierError, match="not valid JSON"):
        LabelMap.load(path)
    path.write_text('["ham"]')
    with pytest.raises(GPTClassifierError, match="labels.json: expected an object"):
        LabelMap.load(path)


def test_load_missing_file(tmp_path):
    with pytest.raises(GPTClassifierError, match="label map file not found"):
        LabelMap.load(tmp_path / "labels.json")
