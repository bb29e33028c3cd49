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
