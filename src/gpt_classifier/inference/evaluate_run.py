"""Evaluating a saved run on its splits or another labelled file, as its training report did."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..classifier.pooling import padding_reads
from ..data import SPLIT_NAMES, LabelMap, encode_records, make_loader, read_records, read_splits
from ..evaluation.predictions import EVAL_BATCH_SIZE, evaluate_split
from ..precision import resolve_device, resolve_precision
from ..progress import tracked
from ..runs.run_dir import load_run, read_run_info, run_tokenizer


def evaluate_run(
    run_dir: str | os.PathLike[str],
    *,
    data_file: str | os.PathLike[str] | None = None,
    fmt: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    lenient: bool = False,
    tokenizer_dir: str | os.PathLike[str] | None = None,
    weights: str | None = None,
    device: str = "auto",
    precision: str = "fp32",
    progress: bool = False,
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """``({split: metrics}, class names)``: the run's saved splits, or ``data_file`` as one
    split named ``data``; in ``fp32`` the run's own splits give its ``metrics.json`` exactly."""
    info = read_run_info(run_dir)  # a clear error for a bad run directory before any other work
    device_ = resolve_device(device)
    precision_ = resolve_precision(precision, device_)
    model = load_run(run_dir, device_, weights).model
    tokenizer = run_tokenizer(run_dir, tokenizer_dir)
    label_map = LabelMap(info.classes)
    if data_file is not None:
        splits = {"data": read_records(data_file, fmt, text_column, label_column, lenient=lenient)}
    else:
        prepared = read_splits(Path(run_dir) / "data")
        splits = {name: prepared.split(name) for name in SPLIT_NAMES if prepared.split(name)}
    # As at training time: cut to the trained length, padded to the run's pad length (if any).
    max_length = min(info.max_length, info.gpt_config.context_length)
    equal = padding_reads(model.pooling, model.cfg.causal, info.pad_length).pooled
    order = {"shuffle": False, "drop_last": False, "bucket_by_length": True, "equal_lengths": equal}
    pads = {"pad_length": info.pad_length, "pad_token_id": info.pad_token_id}
    report = {}
    for name, records in splits.items():
        dataset = encode_records(records, tokenizer, label_map, max_length, info.long_text)
        loader = make_loader(dataset, EVAL_BATCH_SIZE, **order, **pads)
        loader = tracked(loader, len(loader), f"evaluate {name}", enabled=progress)
        report[name] = evaluate_split(model, loader, device_, precision_, label_map.classes)
    return report, list(label_map.classes)
