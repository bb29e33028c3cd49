"""Deduplication, balancing, stratified splits, split files, and prepare_dataset end to end."""

from __future__ import annotations

import csv
import random
from collections import Counter
from pathlib import Path

import pytest

from gpt_classifier.data import (
    LabelMap,
    Record,
    balance_classes,
    deduplicate,
    parse_fractions,
    prepare_dataset,
    read_splits,
    split_sizes,
    stratified_split,
    write_splits,
)
from gpt_classifier.errors import GPTClassifierError

# --- the SMS file (the full collection in ../shared/data, else the 400-row fixture) -------------


def test_real_dedup_counts(sms_spam_file, sms_spam):
    from gpt_classifier.data import read_records

    unique, report = deduplicate(read_records(sms_spam_file))
    assert report.dropped == sms_spam.duplicates_dropped and report.conflicts == 0
    assert len(unique) == sum(sms_spam.deduplicated.values())
    assert Counter(r.label for r in unique) == sms_spam.deduplicated
    if sms_spam.full:
        assert report.dropped == 403 and len(unique) == 5171
        assert Counter(r.label for r in unique) == {"ham": 4518, "spam": 653}


def test_real_default_prepare(sms_spam_file, sms_spam):
    prepared = prepare_dataset(data_file=sms_spam_file)
    s = prepared.summary
    assert s.raw == sms_spam.raw
    assert s.deduplicated == sms_spam.deduplicated
    assert s.duplicates_dropped == sms_spam.duplicates_dropped
    smaller = min(sms_spam.deduplicated.values())
    assert s.balanced == {"ham": smaller, "spam": smaller}
    assert s.splits == sms_spam.splits
    sizes = (len(prepared.train), len(prepared.validation), len(prepared.test))
    assert sizes == sms_spam.split_sizes
    assert prepared.label_map.classes == ("ham", "spam")
    assert s.overlap == 0
    texts = [r.text for r in prepared.train + prepared.validation + prepared.test]
    assert len(set(texts)) == len(texts) == 2 * smaller
    if sms_spam.full:
        assert s.raw == {"ham": 4827, "spam": 747} and s.balanced == {"ham": 653, "spam": 653}
        assert sizes == (914, 130, 262) and len(texts) == 1306


def test_real_book_balance_with_duplicates(sms_spam_file, sms_spam):
    prepared = prepare_dataset(data_file=sms_spam_file, keep_duplicates=True)
    smaller = min(sms_spam.raw.values())
    assert prepared.summary.balanced == {"ham": smaller, "spam": smaller}  # the book's 1,494
    assert prepared.summary.duplicates_dropped == 0
    sizes = {name: sum(c.values()) for name, c in prepared.summary.splits.items()}
    assert sizes == sms_spam.book_split_sizes
    if sms_spam.full:
        assert sizes == {"train": 1044, "validation": 148, "test": 302}


def test_real_no_balance_is_stratified(sms_spam_file, sms_spam):
    prepared = prepare_dataset(data_file=sms_spam_file, balance="none")
    splits = prepared.summary.splits
    assert splits == sms_spam.unbalanced_splits
    share = sms_spam.deduplicated["spam"] / sum(sms_spam.deduplicated.values())
    for counts in splits.values():  # spam share 653/5171 = 12.6% in every split of the full file
        tolerance = 0.005 if sms_spam.full else 0.02  # rounding to whole texts in small splits
        assert counts["spam"] / sum(counts.values()) == pytest.approx(share, abs=tolerance)
    if sms_spam.full:
        assert splits["train"] == {"ham": 3162, "spam": 457}
        assert share == 653 / 5171


def test_real_reproducible_by_seed(sms_spam_file):
    a = prepare_dataset(data_file=sms_spam_file, seed=123)
    b = prepare_dataset(data_file=sms_spam_file, seed=123)
    c = prepare_dataset(data_file=sms_spam_file, seed=7)
    assert [r.text for r in a.train] == [r.text for r in b.train]
    assert [r.text for r in a.test] == [r.text for r in b.test]
    assert [r.text for r in a.train] != [r.text for r in c.train]


def test_real_written_csvs_reload_identically(sms_spam_file, tmp_path):
    prepared = prepare_dataset(data_file=sms_spam_file)
    written = write_splits(prepared, tmp_path / "splits")
    assert sorted(p.name for p in written.values()) == [
        "labels.json",
        "test.csv",
        "train.csv",
        "validation.csv",
    ]
    reloaded = read_splits(tmp_path / "splits")
    assert reloaded.train == prepared.train
    assert reloaded.validation == prepared.validation
    assert reloaded.test == prepared.test
    assert reloaded.label_map == prepared.label_map == LabelMap.load(written["labels"])
    with (tmp_path / "splits" / "train.csv").open(newline="", encoding="utf-8") as handle:
        assert next(csv.reader(handle)) == ["Label", "Text"]


def test_real_book_style_csvs_load(sms_spam_file, sms_spam, tmp_path):
    """The book's train/validation/test.csv: Label,Text with ham=0, spam=1, pandas quoting."""
    prepared = prepare_dataset(data_file=sms_spam_file, keep_duplicates=True)
    mapping = {"ham": 0, "spam": 1}
    for name in ("train", "validation", "test"):
        with (tmp_path / f"{name}.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["Label", "Text"])
            writer.writerows([mapping[r.label], r.text] for r in prepared.split(name))
    book = prepare_dataset(
        train_file=tmp_path / "train.csv",
        validation_file=tmp_path / "validation.csv",
        test_file=tmp_path / "test.csv",
    )
    assert book.label_map.classes == ("0", "1")
    assert [r.text for r in book.train] == [r.text for r in prepared.train]
    per_class = {split: counts["spam"] for split, counts in sms_spam.book_splits.items()}
    assert Counter(r.label for r in book.train) == {
        "0": per_class["train"],
        "1": per_class["train"],
    }
    assert book.summary.splits["test"] == {"0": per_class["test"], "1": per_class["test"]}
    assert book.summary.overlap > 0  # the book keeps duplicates: some test texts are in train
    if sms_spam.full:
        assert per_class == {"train": 522, "validation": 74, "test": 151}


# --- small generated data ---------------------------------------------------------------------


def _records(counts: dict[str, int], prefix: str = "") -> list[Record]:
    return [
        Record(f"{prefix}{label} text {i}", label) for label, n in counts.items() for i in range(n)
    ]


def test_deduplicate_keeps_first_and_counts_conflicts():
    records = [
        Record("a", "x"),
        Record("b", "y"),
        Record("a", "x"),
        Record("a", "y"),
        Record("b", "y"),
    ]
    kept, report = deduplicate(records)
    assert kept == [Record("a", "x"), Record("b", "y")]
    assert (report.dropped, report.conflicts) == (3, 1)


def test_balance_undersamples_every_class_to_the_minority():
    records = _records({"a": 30, "b": 7, "c": 12})
    random.Random(0).shuffle(records)
    balanced = balance_classes(records, "undersample", seed=1)
    assert Counter(r.label for r in balanced) == {"a": 7, "b": 7, "c": 7}
    positions = [records.index(r) for r in balanced]
    assert positions == sorted(positions)  # original order kept
    assert balanced == balance_classes(records, "undersample", seed=1)
    assert balanced != balance_classes(records, "undersample", seed=2)
    assert balance_classes(records, "none") == records
    with pytest.raises(GPTClassifierError, match="unknown balance method 'over'"):
        balance_classes(records, "over")


def test_split_sizes_and_fractions():
    assert split_sizes(747, (0.7, 0.1, 0.2)) == (522, 74, 151)
    assert split_sizes(30, (0.7, 0.1, 0.2)) == (21, 3, 6)  # 30 * 0.7 is 20.999...
    assert split_sizes(1, (0.7, 0.1, 0.2)) == (1, 0, 0)
    assert parse_fractions("0.8,0.1,0.1") == (0.8, 0.1, 0.1)
    assert parse_fractions("0.8, 0.2") == (0.8, 0.2, 0.0)
    for bad in ("0.7,0.4", "a,b,c", "0.7,0.1,0.1,0.1", "0,0.5,0.5", "1.2,-0.1,-0.1"):
        with pytest.raises(GPTClassifierError, match="fractions"):
            parse_fractions(bad)


def test_stratified_split_multiclass():
    records = _records({"neg": 50, "neu": 30, "pos": 20})
    train, validation, test = stratified_split(records, (0.6, 0.2, 0.2), seed=5)
    assert Counter(r.label for r in train) == {"neg": 30, "neu": 18, "pos": 12}
    assert Counter(r.label for r in validation) == {"neg": 10, "neu": 6, "pos": 4}
    assert Counter(r.label for r in test) == {"neg": 10, "neu": 6, "pos": 4}
    assert sorted(train + validation + test, key=lambda r: r.text) == sorted(
        records, key=lambda r: r.text
    )
    assert [r.label for r in train[:10]] != sorted(r.label for r in train[:10])  # shuffled
    assert stratified_split(records, (0.6, 0.2, 0.2), seed=5) == (train, validation, test)


def _write_csv(path: Path, rows: list[tuple[str, str]], header=("label", "text")) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_prepare_multiclass_integer_labels(tmp_path):
    rows = [
        (str(label), f"text {label} {i}")
        for label, n in ((2, 20), (10, 30), (0, 25))
        for i in range(n)
    ]
    rows.append(("10", "text 10 0"))  # a duplicate
    path = _write_csv(tmp_path / "d.csv", rows)
    prepared = prepare_dataset(data_file=path, balance="none", seed=3)
    assert prepared.label_map.classes == ("0", "2", "10")
    assert prepared.summary.duplicates_dropped == 1
    assert prepared.summary.splits["train"] == {"0": 17, "2": 14, "10": 21}
    balanced = prepare_dataset(data_file=path, seed=3)
    assert balanced.summary.balanced == {"0": 20, "2": 20, "10": 20}


def test_prepare_from_split_files_errors(tmp_path):
    train = _write_csv(tmp_path / "train.csv", [("a", "x"), ("b", "y")])
    val = _write_csv(tmp_path / "val.csv", [("a", "z"), ("c", "w")])
    with pytest.raises(
        GPTClassifierError, match=r"val\.csv:3: label 'c' does not occur in the training"
    ):
        prepare_dataset(train_file=train, validation_file=val)
    one = _write_csv(tmp_path / "one.csv", [("a", "x"), ("a", "y")])
    with pytest.raises(GPTClassifierError, match=r"one\.csv: only the class 'a'; .*at least two"):
        prepare_dataset(train_file=one)
    with pytest.raises(GPTClassifierError, match=r"one\.csv: only the class 'a'"):
        prepare_dataset(data_file=one)
    with pytest.raises(GPTClassifierError, match="not both"):
        prepare_dataset(data_file=one, train_file=train)
    with pytest.raises(GPTClassifierError, match="without a training file"):
        prepare_dataset(test_file=val)
    only_train = prepare_dataset(train_file=train)
    assert only_train.validation == [] and only_train.test == []


def test_prepare_single_class_after_dedup(tmp_path):
    path = _write_csv(tmp_path / "d.csv", [("a", "x"), ("b", "x")])
    with pytest.raises(GPTClassifierError, match="after dropping duplicate texts: only the class"):
        prepare_dataset(data_file=path)


def test_write_splits_round_trip_with_awkward_texts(tmp_path):
    texts = ['quote " inside', "comma, here", "new\nline", "carriage\rreturn", " lead", "tab\tx"]
    rows = [(label, f"{t} {label}") for t in texts for label in ("a", "b")]
    path = _write_csv(tmp_path / "d.csv", rows)
    prepared = prepare_dataset(data_file=path, fractions="0.5,0.25,0.25")
    write_splits(prepared, tmp_path / "out")
    again = read_splits(tmp_path / "out")
    assert (again.train, again.validation, again.test) == (
        prepared.train,
        prepared.validation,
        prepared.test,
    )


def test_empty_test_split_round_trip(tmp_path):
    path = _write_csv(tmp_path / "d.csv", [(label, f"t{i}") for i, label in enumerate("ab" * 10)])
    prepared = prepare_dataset(data_file=path, fractions="0.8,0.2")
    assert len(prepared.test) == 0 and len(prepared.validation) == 4
    write_splits(prepared, tmp_path / "out")
    again = read_splits(tmp_path / "out")
    assert again.test == [] and again.validation == prepared.validation
    with pytest.raises(GPTClassifierError, match=r"test\.csv: no examples in the file"):
        prepare_dataset(
            train_file=tmp_path / "out" / "train.csv", test_file=tmp_path / "out" / "test.csv"
        )
