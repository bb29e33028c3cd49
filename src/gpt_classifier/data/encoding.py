"""Tokenized datasets (encoded once, unpadded), padding strategies and loaders: the collate
function right-pads with ``<|endoftext|>`` and keeps each row's real length (pool at
``lengths - 1``, not at -1 of a padded row)."""

from __future__ import annotations

import functools
import itertools
import math
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler

from ..config import EOT_TOKEN_ID, GPT2_CONTEXT_LENGTH
from ..errors import GPTClassifierError
from ..tokenizer import encode
from .batching import plan_batches
from .prepare import DEFAULT_SEED, SPLIT_NAMES, LabelMap, PreparedData
from .readers import Record
from .windows import LongText, reads_all, window_texts

if TYPE_CHECKING:
    import tiktoken

PAD_TOKEN_ID = EOT_TOKEN_ID
PADDING_STRATEGIES = ("longest-train", "batch", "fixed:N", "context")


@dataclass(frozen=True)
class Padding:
    """A parsed padding strategy; ``length`` is N for ``fixed`` only."""

    kind: str
    length: int | None = None

    def __str__(self) -> str:
        return f"fixed:{self.length}" if self.kind == "fixed" else self.kind


def parse_padding(value: str | Padding) -> Padding:
    """``"longest-train"``, ``"batch"``, ``"fixed:N"`` or ``"context"`` -> ``Padding``."""
    if isinstance(value, Padding):
        return value
    text = value.strip().lower()
    kind, _, number = text.partition(":")
    if text in ("longest-train", "batch", "context"):
        return Padding(text)
    if kind == "fixed" and number.strip().isascii() and number.strip().isdigit() and int(number):
        return Padding("fixed", int(number))
    raise GPTClassifierError(
        f"invalid padding {value!r}; expected one of {', '.join(PADDING_STRATEGIES)} "
        "(N a positive number of tokens)"
    )


class EncodedDataset(Dataset):
    """Token ids (cut to ``max_length`` or in windows: ``text_index`` gives each row's text) and
    class ids; item ``i`` is ``(ids, label, i)``."""

    def __init__(
        self,
        input_ids: Sequence[Sequence[int]],
        labels: Sequence[int],
        max_length: int | None = None,
        long_text: LongText | None = None,
    ) -> None:
        self.original_lengths = [len(ids) for ids in input_ids]
        self.long_text = long_text or LongText()
        window = max_length or max(self.original_lengths, default=1)
        self.input_ids, self.text_index = window_texts(input_ids, window, self.long_text)
        self.labels = [int(labels[text]) for text in self.text_index or range(len(labels))]
        self.lengths = [len(ids) for ids in self.input_ids]
        self.max_length = max_length
        limit = max_length or math.inf
        self.truncated = sum(not reads_all(n, limit, self.long_text) for n in self.original_lengths)

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, index: int) -> tuple[list[int], int, int]:
        return self.input_ids[index], self.labels[index], index


def encode_records(
    records: Sequence[Record],
    tokenizer: tiktoken.Encoding,
    label_map: LabelMap,
    max_length: int | None = None,
    long_text: LongText | None = None,
) -> EncodedDataset:
    """Encode every text once and map labels to class ids (an unknown one names its line)."""
    if unknown := next((record for record in records if record.label not in label_map), None):
        raise GPTClassifierError(
            f"{unknown.where}: label {unknown.label!r} is not one of the classes "
            f"{', '.join(label_map.classes)}"
        )
    ids = [encode(tokenizer, record.text) for record in records]
    labels = [label_map.id_of(record.label) for record in records]
    return EncodedDataset(ids, labels, max_length, long_text)


class Batch(NamedTuple):
    """int64 right-padded ``input_ids`` (B, T), real ``lengths`` and dataset ``indices`` (B,);
    windows of longer texts: ``owners`` numbers their texts 0.. and ``labels`` has one per text."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    lengths: torch.Tensor
    indices: torch.Tensor
    owners: torch.Tensor | None = None

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """Move ids, labels and lengths to ``device``; ``indices`` stay on the CPU (cache keys)."""
        moved = (t.to(device, non_blocking=non_blocking) for t in self[:3])
        return Batch(*moved, self.indices, self.owners)


def pad_token_ids(
    rows: Sequence[Sequence[int]], width: int, pad_token_id: int = PAD_TOKEN_ID
) -> torch.Tensor:
    """``(len(rows), width)`` int64: each row's first ``width`` ids, right-padded."""
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    for row, ids in enumerate(rows):
        input_ids[row, : min(len(ids), width)] = torch.as_tensor(ids[:width], dtype=torch.long)
    return input_ids


def collate(
    items: Sequence[tuple[Sequence[int], int, int]],
    pad_length: int | None = None,
    pad_token_id: int = PAD_TOKEN_ID,
    text_index: Sequence[int] | None = None,
) -> Batch:
    """Right-pad to ``pad_length`` (longer rows cut), else to the longest row; ``text_index``: the
    rows are windows, numbered per text in ``Batch.owners``."""
    lengths = [len(ids) if pad_length is None else min(len(ids), pad_length) for ids, _, _ in items]
    width = pad_length if pad_length is not None else max(lengths, default=0)
    labels, owners = [label for _, label, _ in items], None
    if text_index is not None:
        number: dict[int, int] = {}  # a text's number in this batch, in order of appearance
        texts = [number.setdefault(text_index[i], len(number)) for _, _, i in items]
        labels = list(dict(zip(texts, labels, strict=True)).values())  # a text's windows share it
        owners = torch.tensor(texts, dtype=torch.long)
    indices = [index for _, _, index in items]
    longs = (torch.tensor(values, dtype=torch.long) for values in (labels, lengths, indices))
    return Batch(pad_token_ids([ids for ids, _, _ in items], width, pad_token_id), *longs, owners)


class _Batches(Sampler[list[int]]):
    """Batches of texts (a sampler, or a list shuffled each epoch by ``generator``) as batches of
    their rows: a text's windows in one batch (one loss)."""

    def __init__(
        self, texts: Any, rows_of: list[list[int]], generator: torch.Generator | None = None
    ) -> None:
        self.texts, self.rows_of, self.generator = texts, rows_of, generator

    def __len__(self) -> int:
        return len(self.texts)

    def __iter__(self) -> Iterator[list[int]]:
        texts, shuffle = self.texts, self.generator
        if shuffle is not None:
            texts = [texts[i] for i in torch.randperm(len(texts), generator=shuffle).tolist()]
        for batch in texts:
            yield [row for text in batch for row in self.rows_of[text]]


def make_loader(
    dataset: EncodedDataset,
    batch_size: int,
    *,
    shuffle: bool,
    drop_last: bool,
    seed: int = DEFAULT_SEED,
    pad_length: int | None,
    pad_token_id: int = PAD_TOKEN_ID,
    bucket_by_length: bool = False,
    equal_lengths: bool = False,
) -> DataLoader:
    """A seeded ``DataLoader`` of ``Batch`` (``pad_length=None``: to each batch's longest row);
    ``bucket_by_length`` (evaluation) groups similar lengths."""
    generator, owners = torch.Generator().manual_seed(seed), dataset.text_index
    key = None if owners is None else owners.__getitem__
    rows_of = [list(rows) for _, rows in itertools.groupby(range(len(dataset)), key)]
    if bucket_by_length:  # similar lengths together, longest first
        lengths = [sum(dataset.lengths[row] for row in rows) for rows in rows_of]
        equal = equal_lengths and owners is None  # one length a batch
        planned = plan_batches(lengths, math.inf, max_texts=batch_size, equal_lengths=equal)
        if drop_last and planned and len(planned[-1]) < batch_size:
            planned.pop()
        batches: Sampler[list[int]] = _Batches(planned, rows_of, generator if shuffle else None)
    else:
        every = range(len(rows_of))
        picks = RandomSampler(every, generator=generator) if shuffle else every
        batches = BatchSampler(picks, batch_size, drop_last)
        batches = batches if owners is None else _Batches(batches, rows_of)
    return DataLoader(
        dataset,
        batch_sampler=batches,
        collate_fn=functools.partial(
            collate, pad_length=pad_length, pad_token_id=pad_token_id, text_index=owners
        ),
        # as before the merge of the loaders: bucketed texts of one row draw the workers' seed
        # from torch's global generator (training runs stay reproducible across versions)
        generator=None if bucket_by_length and owners is None else generator,
    )


@dataclass(frozen=True)
class LengthStats:
    """Token lengths of one split before truncation, and how many exceed its ``max_length``."""

    count: int
    min: int | None
    median: float | None
    max: int | None
    max_length: int | None
    truncated: int

    @property
    def share_truncated(self) -> float:
        return self.truncated / self.count if self.count else 0.0

    @classmethod
    def of(cls, dataset: EncodedDataset) -> LengthStats:
        lengths, limit = dataset.original_lengths, dataset.max_length
        median = float(statistics.median(lengths)) if lengths else None
        shortest, longest = min(lengths, default=None), max(lengths, default=None)
        return cls(len(lengths), shortest, median, longest, limit, dataset.truncated)


@dataclass
class EncodedSplits:
    """Encoded splits and per split the pad length (None: per batch)."""

    train: EncodedDataset
    validation: EncodedDataset
    test: EncodedDataset
    padding: Padding
    context_length: int
    pad_lengths: dict[str, int | None]

    def split(self, name: str) -> EncodedDataset:
        return {"train": self.train, "validation": self.validation, "test": self.test}[name]

    @property
    def stats(self) -> dict[str, LengthStats]:
        return {name: LengthStats.of(self.split(name)) for name in SPLIT_NAMES}

    @property
    def longest_train(self) -> int:  # before truncation
        return max(self.train.original_lengths, default=0)

    def loader(self, name: str, batch_size: int = 8, **options: Any) -> DataLoader:
        """The book's loaders: train shuffled with ``drop_last``, the others in order; ``options``:
        ``make_loader``'s (``seed``, ``bucket_by_length``, ...)."""
        given = {key: value for key, value in options.items() if value is not None}
        order = dict.fromkeys(("shuffle", "drop_last"), name == "train") | given
        return make_loader(self.split(name), batch_size, pad_length=self.pad_lengths[name], **order)


def encode_splits(
    prepared: PreparedData,
    tokenizer: tiktoken.Encoding,
    padding: str | Padding = "longest-train",
    context_length: int = GPT2_CONTEXT_LENGTH,
    long_text: LongText | None = None,
) -> EncodedSplits:
    """Encode the three splits once, resolve the padding strategy, truncate, and measure:
    ``longest-train`` pads (and cuts validation and test) to the longest training text, ``batch``
    pads each batch to its longest row, ``fixed:N`` and ``context`` pad to N or the context."""
    strategy, labels = parse_padding(padding), prepared.label_map
    full = {name: encode_records(prepared.split(name), tokenizer, labels) for name in SPLIT_NAMES}
    if strategy.kind == "longest-train":
        longest = max(1, min(max(full["train"].original_lengths, default=0), context_length))
        limits = {"train": context_length, "validation": longest, "test": longest}
        pad_lengths: dict[str, int | None] = dict.fromkeys(SPLIT_NAMES, longest)
    else:
        if (strategy.length or 0) > context_length:
            raise GPTClassifierError(
                f"padding fixed:{strategy.length} is longer than the model's context length "
                f"({context_length} tokens)"
            )
        length = strategy.length or context_length  # fixed:N, else batch or context
        limits = dict.fromkeys(SPLIT_NAMES, length)
        pad_lengths = dict.fromkeys(SPLIT_NAMES, None if strategy.kind == "batch" else length)
    datasets = [
        EncodedDataset(full[name].input_ids, full[name].labels, limits[name], long_text)
        for name in SPLIT_NAMES
    ]
    return EncodedSplits(*datasets, strategy, context_length, pad_lengths)
