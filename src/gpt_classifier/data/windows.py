"""Texts longer than the model reads, as windows of its length: ``truncate`` keeps the start (the
book's), ``head-tail`` the start and the end, ``chunks`` windows over the whole text (combined by
``classifier.pooling.combine_windows``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import GPTClassifierError

LONG_TEXT_MODES = ("truncate", "head-tail", "chunks")


def _positive(value: Any) -> bool:
    return type(value) is int and value >= 1


@dataclass(frozen=True)
class LongText:
    """How a text longer than the window is read; ``chunk_stride`` None: windows side by side."""

    mode: str = "truncate"
    head_fraction: float = 0.5  # head-tail: the share of the window taken from the start
    chunk_stride: int | None = None  # chunks: tokens from one window's start to the next
    max_chunks: int = 8  # chunks: the most windows a text costs (evenly spread, first and last)

    def __post_init__(self) -> None:
        stride, fraction, modes = self.chunk_stride, self.head_fraction, LONG_TEXT_MODES
        checks = (
            (self.mode in modes, f"long_text must be one of {', '.join(modes)}"),
            (type(fraction) in (int, float) and 0 <= fraction <= 1, "head_fraction: 0 to 1"),
            (stride is None or _positive(stride), "chunk_stride must be a positive integer"),
            (_positive(self.max_chunks), "max_chunks must be a positive integer"),
        )
        if problems := [why for valid, why in checks if not valid]:
            raise GPTClassifierError(f"invalid long-text reading {self}: {'; '.join(problems)}")

    @classmethod
    def from_dict(cls, values: Any, source: str) -> LongText:
        try:
            return cls(**values)
        except (TypeError, GPTClassifierError) as exc:
            raise GPTClassifierError(f"{source}: inputs.long_text is not valid ({exc})") from None


def _chunk_starts(total: int, length: int, long_text: LongText) -> list[int]:
    """Every window's start: ``chunk_stride`` apart, the last ending at the text's end."""
    stride = min(long_text.chunk_stride or length, length)
    return [*range(0, total - length, stride), total - length]


def text_windows(ids: Sequence[int], length: int, long_text: LongText) -> list[list[int]]:
    """The windows of one text (each at most ``length`` tokens); a text that fits is one."""
    if len(ids) <= length or long_text.mode == "truncate":
        return [list(ids[:length])]
    if long_text.mode == "head-tail":
        head = round(length * long_text.head_fraction)
        return [list(ids[:head]) + list(ids[len(ids) - (length - head) :])]
    starts = chunk_window_starts(len(ids), length, long_text)
    return [list(ids[start : start + length]) for start in starts]


def chunk_window_starts(total: int, length: int, long_text: LongText) -> list[int]:
    """Where the ``chunks`` windows of a text longer than ``length`` start (explain needs them)."""
    starts, keep = _chunk_starts(total, length, long_text), long_text.max_chunks
    if len(starts) > keep:  # evenly spread, the first and the last kept
        starts = [starts[round(i * (len(starts) - 1) / max(keep - 1, 1))] for i in range(keep)]
    return starts


def reads_all(total: int, length: int, long_text: LongText) -> bool:
    """Whether every token of a ``total``-token text is in its windows."""
    if total <= length or long_text.mode != "chunks":
        return total <= length
    return len(_chunk_starts(total, length, long_text)) <= long_text.max_chunks


def window_texts(
    texts: Sequence[Sequence[int]], length: int, long_text: LongText
) -> tuple[list[list[int]], list[int] | None]:
    """Every text's windows in order and the text each belongs to (None: one window a text)."""
    per_text = [text_windows(ids, length, long_text) for ids in texts]
    windows = [window for group in per_text for window in group]
    owners = [text for text, group in enumerate(per_text) for _ in group]
    return windows, (owners if len(windows) != len(texts) else None)
