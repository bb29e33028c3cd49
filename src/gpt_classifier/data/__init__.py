"""Datasets: the SMS Spam Collection or any labelled file, read, split, encoded and batched
(``prepare_dataset`` -> ``encode_splits`` -> ``EncodedSplits.loader``)."""

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

__all__ = ["BALANCE_METHODS", "DEFAULT_FRACTIONS", "DEFAULT_SEED", "FORMATS", "LABEL_COLUMNS"]
__all__ += ["PADDING_STRATEGIES", "PAD_TOKEN_ID", "SMS_SPAM_NAME", "SMS_SPAM_SHA256"]
__all__ += ["SMS_SPAM_URL", "SPLIT_NAMES", "TEXT_COLUMNS", "TEXT_FORMATS", "Batch"]
__all__ += ["BucketBatchSampler", "DataSummary", "DedupReport", "EncodedDataset", "EncodedSplits"]
__all__ += ["LabelMap", "LengthStats", "Padding", "PreparedData", "Record", "TextRow"]
__all__ += ["balance_classes", "class_counts", "collate", "deduplicate", "detect_format"]
__all__ += ["encode_records", "encode_splits", "make_loader", "parse_fractions", "parse_padding"]
__all__ += ["prepare_dataset", "read_records", "read_splits", "read_unlabelled", "resolve_padding"]
__all__ += ["sms_spam_path", "sort_labels", "split_sizes", "stratified_split", "write_split_file"]
__all__ += ["write_splits"]
