"""format_report, write_report_json and read_report_json."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gpt_classifier.errors import GPTClassifierError
from gpt_classifier.evaluation import (
    classification_metrics,
    format_report,
    read_report_json,
    write_report_json,
)

BINARY = ["ham", "spam"]


@pytest.fixture
def report() -> dict:
    p1 = np.array([0.1, 0.3, 0.6, 0.7, 0.8, 0.4, 0.9])
    return {
        "train": classification_metrics(
            [0, 0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1, 0], BINARY, probabilities=p1, loss=0.123456
        ),
        "validation": classification_metrics([0, 1, 1], [0, 1, 1], BINARY, loss=0.5),
        "test": classification_metrics([0, 1, 1, 0], [0, 1, 0, 0], BINARY, loss=1.25),
    }


def test_summary_table_has_the_numbers(report):
    text = format_report(report, BINARY)
    lines = text.splitlines()
    train_row = next(line for line in lines if line.startswith("train "))
    # split | n | loss | accuracy (percent, 2 decimals) | macro F1 | ROC-AUC
    assert train_row.split() == ["train", "7", "0.1235", "57.14%", "0.5714", "0.8333"]
    validation_row = next(line for line in lines if line.startswith("validation "))
    assert validation_row.split() == ["validation", "3", "0.5000", "100.00%", "1.0000", "-"]
    test_row = next(line for line in lines if line.startswith("test "))
    assert test_row.split()[:4] == ["test", "4", "1.2500", "75.00%"]
    # the summary comes first, in the report's split order
    assert text.index("train ") < text.index("validation ") < text.index("test ")


def test_per_split_details_and_confusion_matrix(report):
    text = format_report(report, BINARY)
    train = text[text.index("== train (n=7) ==") : text.index("== validation")]
    scores_part, matrix_part = train.split("Confusion matrix")
    rows = {line.split()[0]: line.split()[1:] for line in scores_part.splitlines() if line}
    assert rows["ham"] == ["0.6667", "0.5000", "0.5714", "4"]  # precision recall f1 support
    assert rows["spam"] == ["0.5000", "0.6667", "0.5714", "3"]
    assert "macro avg" in scores_part and "weighted avg" in scores_part
    lines = matrix_part.splitlines()
    header = next(line for line in lines if line.startswith("true"))
    assert header.split()[-2:] == ["ham", "spam"]
    cells = {line.split()[0]: line.split()[1:] for line in lines[lines.index(header) + 2 :] if line}
    assert cells == {"ham": ["2", "2"], "spam": ["1", "2"]}


def test_class_names_default_to_per_class_order(report):
    assert format_report(report) == format_report(report, BINARY)


def test_class_names_that_do_not_match_raise(report):
    with pytest.raises(ValueError, match="no per-class metrics"):
        format_report(report, ["ham", "eggs"])


def test_long_class_names_are_shortened_only_in_column_headers():
    names = ["a_really_long_class_name", "short"]
    text = format_report({"test": classification_metrics([0, 1], [0, 1], names)})
    assert "a_really_long_class_name" in text  # row label
    header = next(line for line in text.splitlines() if line.startswith("true"))
    assert "a_really_..." in header.split()


def test_partial_metrics_are_shown_with_dashes():
    text = format_report({"train": {"accuracy": 0.5}, "validation": {"loss": 0.7}})
    assert "50.00%" in text and "0.7000" in text
    assert "== train" not in text  # no per-class section without per-class metrics


def test_nan_loss_is_shown_and_round_trips(tmp_path):
    report = {"train": classification_metrics([0, 1], [0, 1], BINARY, loss=float("nan"))}
    assert "nan" in format_report(report)
    write_report_json(report, tmp_path / "metrics.json")
    assert math.isnan(read_report_json(tmp_path / "metrics.json")["train"]["loss"])


def test_json_round_trip_and_shape(report, tmp_path):
    path = tmp_path / "out" / "nested" / "metrics.json"
    write_report_json(report, path)
    assert read_report_json(path) == report
    raw = json.loads(path.read_text())
    assert list(raw) == ["train", "validation", "test"]
    assert raw["train"]["accuracy"] == pytest.approx(4 / 7)  # a fraction of 1
    assert raw["test"]["loss"] == 1.25
    assert path.read_text().startswith('{\n  "train": {\n    "accuracy"')  # indent 2


def test_write_replaces_atomically_and_leaves_no_temp_files(report, tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("old")
    write_report_json(report, path)
    assert read_report_json(path) == report
    with pytest.raises(TypeError):
        write_report_json({"train": {"accuracy": object()}}, path)
    assert read_report_json(path) == report  # the failed write left the old file as it was
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "object of splits"),
        ('{"train": 0.5}', "object of splits"),
    ],
)
def test_read_errors_are_user_errors(tmp_path, content, message):
    path = tmp_path / "metrics.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(GPTClassifierError, match=message):
        read_report_json(path)
