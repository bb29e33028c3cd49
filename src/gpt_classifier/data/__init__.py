"""Datasets for classification: the built-in SMS Spam Collection or any labelled text file.

Typical use (what ``gpt-classifier train`` does)::

    prepared = prepare_dataset(data_file="reviews.csv")         # or no file: sms-spam
    encoded = encode_splits(prepared, tokenizer, "longest-train", config.context_length)
    train_loader = encoded.loader("train", batch_size=8, seed=123)
    for input_batch, target_batch, lengths, indices in train_loader:
        ...
    prepared.label_map.save(run_dir / "labels.json")
"""

from .encoding import (
    PAD_TOKEN_ID,
    PADDING_STRATEGIES,
    Batch,
    BucketBatchSampler,
    EncodedDataset,
    EncodedSplits,
    LengthStats,
    Padding,
    collate,
    encode_records,
    encode_splits,
    make_loader,
    parse_padding,
    resolve_padding,
)
from .labels import LabelMap, sort_labels
from .prepare import (
    DataSummary,
    PreparedData,
    prepare_dataset,
    read_splits,
    write_splits,
)
from .readers import (
    FORMATS,
    LABEL_COLUMNS,
    TEXT_COLUMNS,
    TEXT_FORMATS,
    Record,
    TextRow,
    detect_format,
    detect_text_format,
    read_records,
)
from .sms_spam import (
    SMS_SPAM_NAME,
    SMS_SPAM_SHA256,
    SMS_SPAM_URL,
    sms_spam_path,
)
from .splits import (
    BALANCE_METHODS,
    DEFAULT_FRACTIONS,
    DEFAULT_SEED,
    SPLIT_NAMES,
    DedupReport,
    balance_classes,
    class_counts,
    deduplicate,
    parse_fractions,
    split_sizes,
    stratified_split,
    write_split_file,
)
from .streaming import read_unlabelled

__all__ = [
    "BALANCE_METHODS",
    "DEFAULT_FRACTIONS",
    "DEFAULT_SEED",
    "FORMATS",
    "LABEL_COLUMNS",
    "PADDING_STRATEGIES",
    "PAD_TOKEN_ID",
    "SMS_SPAM_NAME",
    "SMS_SPAM_SHA256",
    "SMS_SPAM_URL",
    "SPLIT_NAMES",
    "TEXT_COLUMNS",
    "TEXT_FORMATS",
    "Batch",
    "BucketBatchSampler",
    "DataSummary",
    "DedupReport",
    "EncodedDataset",
    "EncodedSplits",
    "LabelMap",
    "LengthStats",
    "Padding",
    "PreparedData",
    "Record",
    "TextRow",
    "balance_classes",
    "class_counts",
    "collate",
    "deduplicate",
    "detect_format",
    "detect_text_format",
    "encode_records",
    "encode_splits",
    "make_loader",
    "parse_fractions",
    "parse_padding",
    "prepare_dataset",
    "read_records",
    "read_splits",
    "read_unlabelled",
    "resolve_padding",
    "sms_spam_path",
    "sort_labels",
    "split_sizes",
    "stratified_split",
    "write_split_file",
    "write_splits",
]
