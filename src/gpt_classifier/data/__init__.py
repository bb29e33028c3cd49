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
from .prepare import (
    BALANCE_METHODS,
    DEFAULT_FRACTIONS,
    DEFAULT_SEED,
    SMS_SPAM_SHA256,
    SPLIT_NAMES,
    DataSummary,
    LabelMap,
    PreparedData,
    balance_classes,
    deduplicate,
    parse_fractions,
    prepare_dataset,
    read_splits,
    sms_spam_path,
    sort_labels,
    split_sizes,
    stratified_split,
    write_split_file,
    write_splits,
)
from .readers import (
    FORMATS,
    LABEL_COLUMNS,
    TEXT_COLUMNS,
    Record,
    detect_format,
    read_records,
    read_unlabelled,
)
