"""Holding Ctrl-C back while the trained model is evaluated and saved."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class InterruptRequest:
    requested: bool = False


@contextmanager
def deferred_interrupts() -> Iterator[InterruptRequest]:
    """Within the block, SIGINT is recorded in ``requested`` instead of raised (main thread
    only: elsewhere signal handlers cannot be set and this does nothing)."""
    request = InterruptRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def record(signum: int, frame: object) -> None:
        request.requested = True

    previous = signal.signal(signal.SIGINT, record)
    try:
        yield request
    finally:
        signal.signal(signal.SIGINT, previous)
