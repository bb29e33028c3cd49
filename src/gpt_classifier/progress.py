"""Progress on stderr: a live bar on a terminal, else a line every half minute (no redraws)."""

import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")
HEARTBEAT_SECONDS = 30.0


class Heartbeat(AbstractContextManager):
    """tqdm's ``update``/``set_postfix``/``close`` for a non-terminal; silent unless ``enabled``."""

    def __init__(self, total: int | None, desc: str, unit: str, initial: int, enabled: bool):
        self.total, self.desc, self.unit, self.n, self.enabled = total, desc, unit, initial, enabled
        self.started = self.last = time.monotonic()
        self.postfix = ""

    def update(self, count: int = 1) -> None:
        self.n += count
        now = time.monotonic()
        if self.enabled and now - self.last >= HEARTBEAT_SECONDS:
            self.last = now
            done = f"{self.n:,}/{self.total:,}" if self.total else f"{self.n:,}"
            share = f" ({100 * self.n / self.total:.0f} %)" if self.total else ""
            line = f"{self.desc}: {done} {self.unit}{share}, {now - self.started:.0f} s"
            print(line + self.postfix, file=sys.stderr, flush=True)

    def set_postfix(self, **values: object) -> None:
        self.postfix = "".join(f", {k} {v}" for k, v in values.items())

    def close(self, *exc: object) -> None:
        pass

    __exit__ = close


def progress_bar(total: int | None, desc: str, unit: str, enabled: bool = True, **bar: Any) -> Any:
    """A tqdm bar on a terminal, a :class:`Heartbeat` elsewhere, nothing when not ``enabled``."""
    if enabled and sys.stderr.isatty():
        return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, **bar)
    return Heartbeat(total, desc, unit, bar.get("initial", 0), enabled)


def tracked(items: Iterable[T], total: int, desc: str, *, enabled: bool = True) -> Iterator[T]:
    """``items``, advancing a :func:`progress_bar` by one each."""
    with progress_bar(total, desc, enabled=enabled, unit="batches", leave=False) as bar:
        for item in items:
            yield item
            bar.update(1)
