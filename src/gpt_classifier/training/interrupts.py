"""Holding Ctrl-C back while the trained model is evaluated and saved."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace


@contextmanager
def deferred_interrupts() -> Iterator[SimpleNamespace]:
    """Within the block, SIGINT is recorded in ``requested`` instead of raised (main thread
    only: elsewhere signal handlers cannot be set and this does nothing)."""
    request = SimpleNamespace(requested=False)
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = signal.signal(signal.SIGINT, lambda *_: setattr(request, "requested", True))
    try:
        yield request
    finally:
        signal.signal(signal.SIGINT, previous)
