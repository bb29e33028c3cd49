"""Datasets: ``prepare_dataset`` -> ``encode_splits`` -> ``EncodedSplits.loader``."""

from .encoding import (
    PAD_TOKEN_ID,
    Batch,
    EncodedDataset,
    EncodedSplits,
    Padding,
    encode_records,
    encode_splits,
    make_loader,
    parse_padding,
)
from .labels import LabelMap, sort_labels
from .prepare import DataSummary, PreparedData, prepare_dataset, read_splits, write_splits
from .readers import FORMATS, LABEL_COLUMNS, TEXT_COLUMNS, Record, detect_format, read_records
from .sms_spam import SMS_SPAM_SHA256, sms_spam_path
from .splits import (
    BALANCE_METHODS,
    DEFAULT_FRACTIONS,
    DEFAULT_SEED,
    SPLIT_NAMES,
    balance_classes,
    deduplicate,
    parse_fractions,
    split_sizes,
    stratified_split,
    write_split_file,
)
from .streaming import read_unlabelled

__all__ = ["BALANCE_METHODS", "DEFAULT_FRACTIONS", "DEFAULT_SEED", "FORMATS", "LABEL_COLUMNS"]
__all__ += ["PAD_TOKEN_ID", "SMS_SPAM_SHA256", "SPLIT_NAMES", "TEXT_COLUMNS", "Batch"]
__all__ += ["DataSummary", "EncodedDataset", "EncodedSplits", "LabelMap", "Padding"]
__all__ += ["PreparedData", "Record", "balance_classes", "deduplicate", "detect_format"]
__all__ += ["encode_records", "encode_splits", "make_loader", "parse_fractions", "parse_padding"]
__all__ += ["prepare_dataset", "read_records", "read_splits", "read_unlabelled", "sms_spam_path"]
__all__ += ["sort_labels", "split_sizes", "stratified_split", "write_split_file", "write_splits"]
