"""The one thread in which the server runs torch, loading and every pass: each thread running
OpenMP gets its own team of workers, and more of them than cores made a one-text pass of GPT-2
124M on 2 cores take 29 ms from a second thread, 17 ms from the loading one."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


class ModelThread:
    """Runs submitted calls in order; a daemon, so a process that never calls ``close`` exits."""

    def __init__(self, name: str = "gpt-classifier-model") -> None:
        self._calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()
        self.ident = self._thread.ident

    def submit(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """``function(*args, **kwargs)`` in the thread, after the calls submitted before it."""
        future: Future[T] = Future()
        self._calls.put((future, function, args, kwargs))
        return future

    def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self.submit(function, *args, **kwargs).result()

    def close(self, timeout: float | None = None) -> None:
        """Stop after the calls already submitted (waits up to ``timeout`` for them)."""
        self._calls.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _serve(self) -> None:
        while (item := self._calls.get()) is not None:
            future, function, args, kwargs = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(function(*args, **kwargs))
                except BaseException as exc:  # handed to the caller, who decides
                    future.set_exception(exc)
