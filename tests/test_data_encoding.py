"""Tokenized datasets, padding strategies, truncation counts, batches, bucketing."""

from __future__ import annotations

import pytest
import torch

from gpt_classifier.data import (
    PAD_TOKEN_ID,
    Batch,
    EncodedDataset,
    LabelMap,
    Padding,
    PreparedData,
    Record,
    encode_records,
    encode_splits,
    make_loader,
    parse_padding,
    prepare_dataset,
)
from gpt_classifier.data.encoding import pad_token_ids
from gpt_classifier.data.prepare import DataSummary
from gpt_classifier.errors import GPTClassifierError


class WordTokenizer:
    """One token per word (id = 100 + word length): lengths are easy to read in the tests."""

    def encode(self, text, allowed_special=()):
        return [100 + len(word) for word in text.split()]


def _prepared(train: list[int], validation: list[int], test: list[int]) -> PreparedData:
    """Records whose texts have the given numbers of words; labels alternate a, b, c."""

    def records(lengths, tag):
        return [
            Record(" ".join([f"w{tag}{i}"] * n), "abc"[i % 3], tag, i + 1)
            for i, n in enumerate(lengths)
        ]

    summary = DataSummary("test", {}, {}, {}, {})
    return PreparedData(
        records(train, "train"),
        records(validation, "val"),
        records(test, "test"),
        LabelMap(("a", "b", "c")),
        summary,
    )


PREPARED = _prepared(train=[3, 7, 5, 2, 6, 4], validation=[9, 1, 4], test=[8, 3])


def test_parse_padding():
    assert parse_padding("longest-train") == Padding("longest-train")
    assert parse_padding(" Batch ") == Padding("batch")
    assert parse_padding("fixed:64") == Padding("fixed", 64)
    assert str(parse_padding("fixed:64")) == "fixed:64"
    assert str(parse_padding("context")) == "context"
    assert parse_padding("context").kind == "context"
    for bad in ("fixed", "fixed:0", "fixed:x", "longest", ""):
        with pytest.raises(GPTClassifierError, match="invalid padding"):
            parse_padding(bad)


def _truncated(encoded) -> dict[str, int]:
    return {name: stats.truncated for name, stats in encoded.stats.items()}


def test_longest_train_pads_to_training_max_and_truncates_others():
    encoded = encode_splits(PREPARED, WordTokenizer(), "longest-train", context_length=100)
    assert encoded.pad_lengths == {"train": 7, "validation": 7, "test": 7}
    assert encoded.longest_train == 7
    assert _truncated(encoded) == {"train": 0, "validation": 1, "test": 1}
    assert encoded.validation.lengths == [7, 1, 4]
    assert encoded.stats["validation"].max == 9  # statistics are before truncation
    assert encoded.stats["validation"].share_truncated == pytest.approx(1 / 3)
    batch = next(iter(encoded.loader("validation", batch_size=8)))
    assert isinstance(batch, Batch)
    assert batch.input_ids.shape == (3, 7) and batch.input_ids.dtype == torch.long
    assert batch.lengths.tolist() == [7, 1, 4]
    assert batch.input_ids[1, 1:].eq(PAD_TOKEN_ID).all()  # right padding
    assert batch.input_ids[1, 0] != PAD_TOKEN_ID
    assert batch.labels.tolist() == [0, 1, 2] and batch.indices.tolist() == [0, 1, 2]


def test_longest_train_is_capped_by_context_length():
    encoded = encode_splits(PREPARED, WordTokenizer(), "longest-train", context_length=5)
    assert encoded.pad_lengths["train"] == 5
    assert _truncated(encoded) == {"train": 2, "validation": 1, "test": 1}
    assert encoded.longest_train == 7 and max(encoded.train.lengths) == 5


def test_batch_padding_pads_each_batch_to_its_longest():
    encoded = encode_splits(PREPARED, WordTokenizer(), "batch", context_length=100)
    assert encoded.pad_lengths == {"train": None, "validation": None, "test": None}
    assert _truncated(encoded) == {"train": 0, "validation": 0, "test": 0}
    loader = encoded.loader("train", batch_size=2, shuffle=False, drop_last=False)
    widths = [batch.input_ids.shape[1] for batch in loader]
    assert widths == [7, 5, 6]


def test_fixed_and_context_padding():
    fixed = encode_splits(PREPARED, WordTokenizer(), "fixed:4", context_length=100)
    assert fixed.pad_lengths == {"train": 4, "validation": 4, "test": 4}
    assert _truncated(fixed) == {"train": 3, "validation": 1, "test": 1}
    batch = next(iter(fixed.loader("test")))
    assert batch.input_ids.shape == (2, 4) and batch.lengths.tolist() == [4, 3]
    assert batch.input_ids[1, 3].item() == PAD_TOKEN_ID
    context = encode_splits(PREPARED, WordTokenizer(), "context", context_length=16)
    assert next(iter(context.loader("test"))).input_ids.shape == (2, 16)
    with pytest.raises(GPTClassifierError, match="fixed:32 is longer than the model's context"):
        encode_splits(PREPARED, WordTokenizer(), "fixed:32", context_length=16)


def test_book_loaders_shuffle_and_drop_last():
    encoded = encode_splits(PREPARED, WordTokenizer(), "longest-train", context_length=100)
    train, validation = (encoded.loader(name, 4, seed=123) for name in ("train", "validation"))
    assert len(train) == 1  # 6 examples, batch 4, drop_last
    assert [b.indices.tolist() for b in validation] == [[0, 1, 2]]
    first = [b.indices.tolist() for b in encoded.loader("train", 4, seed=123)]
    again = [b.indices.tolist() for b in encoded.loader("train", 4, seed=123)]
    assert first == again  # seeded
    orders = {
        tuple(b.indices.tolist()) for s in range(8) for b in encoded.loader("train", 6, seed=s)
    }
    assert len(orders) > 1  # shuffled


def test_unpacking_and_to_device():
    dataset = EncodedDataset([[1, 2, 3], [4]], [0, 1])
    loader = make_loader(dataset, 2, shuffle=False, drop_last=False, seed=0, pad_length=None)
    input_batch, target_batch, lengths, indices, owners = next(iter(loader))
    assert input_batch.tolist() == [[1, 2, 3], [4, PAD_TOKEN_ID, PAD_TOKEN_ID]]
    assert target_batch.tolist() == [0, 1] and lengths.tolist() == [3, 1]
    assert indices.tolist() == [0, 1] and owners is None  # one window a text
    moved = next(iter(loader)).to("cpu")
    assert isinstance(moved, Batch) and moved.lengths.tolist() == [3, 1]


def test_pad_token_ids_cuts_and_fills():
    ids = pad_token_ids([[1, 2, 3, 4], [5], []], 3, pad_token_id=0)
    assert ids.dtype == torch.long and ids.tolist() == [[1, 2, 3], [5, 0, 0], [0, 0, 0]]
    assert pad_token_ids([[7]], 2).tolist() == [[7, PAD_TOKEN_ID]]


def test_make_loader_pad_length_and_custom_pad_id():
    dataset = EncodedDataset([[5, 6, 7, 8], [9]], [1, 0])
    loader = make_loader(
        dataset, 2, shuffle=False, drop_last=False, seed=0, pad_length=3, pad_token_id=0
    )
    batch = next(iter(loader))
    assert batch.input_ids.tolist() == [[5, 6, 7], [9, 0, 0]]  # longer rows cut to pad_length
    assert batch.lengths.tolist() == [3, 1]


def test_bucketing_groups_by_length_and_order_can_be_restored():
    lengths = [3, 9, 1, 7, 2, 8, 5, 4, 6]
    dataset = EncodedDataset([[7] * n for n in lengths], [i % 2 for i in range(9)])
    loader = make_loader(
        dataset, 4, shuffle=False, drop_last=False, seed=0, pad_length=None, bucket_by_length=True
    )
    batches = list(loader)
    assert [b.lengths.tolist() for b in batches] == [[9, 8, 7, 6], [5, 4, 3, 2], [1]]
    assert [b.input_ids.shape[1] for b in batches] == [9, 5, 1]
    restored = [0] * len(lengths)  # the indices lead back to dataset order
    for batch in batches:
        for index, length in zip(batch.indices.tolist(), batch.lengths.tolist(), strict=True):
            restored[index] = length
    assert restored == lengths
    shuffled = make_loader(
        dataset, 4, shuffle=True, drop_last=True, seed=0, pad_length=None, bucket_by_length=True
    )
    assert len(shuffled) == 2
    assert sorted(len(b.indices) for b in shuffled) == [4, 4]


def test_encode_records_rejects_unknown_labels():
    records = [Record("a b", "x", "val.csv", 2), Record("c", "z", "val.csv", 3)]
    with pytest.raises(
        GPTClassifierError, match=r"val\.csv:3: label 'z' is not one of the classes"
    ):
        encode_records(records, WordTokenizer(), LabelMap(("x", "y")))


def test_real_tokenizer_multiclass_file(tmp_path, tokenizer):
    lines = ["label\ttext"]
    for i in range(12):
        lines.append(f"{['neg', 'neu', 'pos'][i % 3]}\tReview number {i}: " + "very " * i + "good")
    path = tmp_path / "reviews.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    prepared = prepare_dataset(data_file=path, fractions="0.5,0.25,0.25", seed=1)
    encoded = encode_splits(prepared, tokenizer, "longest-train", context_length=1024)
    assert prepared.label_map.classes == ("neg", "neu", "pos")
    expected = max(len(tokenizer.encode(r.text)) for r in prepared.train)
    assert encoded.longest_train == encoded.pad_lengths["test"] == expected
    batch = next(iter(encoded.loader("train", batch_size=2)))
    assert batch.input_ids.shape == (2, expected)
    row = batch.input_ids[0, : batch.lengths[0]].tolist()
    assert tokenizer.decode(row) == prepared.train[batch.indices[0]].text


def test_equal_length_buckets_never_pad():
    lengths = [3, 5, 3, 3, 5, 2, 3]
    dataset = EncodedDataset([[7] * n for n in lengths], [0] * len(lengths))
    order = {"shuffle": False, "drop_last": False, "pad_length": None, "bucket_by_length": True}
    batches = [b.indices.tolist() for b in make_loader(dataset, 2, **order, equal_lengths=True)]
    assert batches == [[1, 4], [0, 2], [3, 6], [5]]  # longest first, never two lengths
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
