"""Dynamic batching: one worker thread owns the model and merges concurrent requests.

Requests are tokenised by their callers (outside the worker), admitted against a bounded queue
counted in texts, then handed over as token ids. The worker waits a few milliseconds after the
first text arrives for others to join, takes the oldest waiting texts up to a token budget (so a
huge request is split across forward passes and later small ones are not stuck behind all of
it), runs them length-sorted in as few padded batches as the budget allows, and resolves each
request once all of its texts are done.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field

import torch

from ..inference.predict import TextClassifier

DEFAULT_MAX_BATCH_TOKENS = 1024  # TextClassifier's own budget: ~1k-row matmuls suit the CPU
DEFAULT_BATCH_WAIT_MS = 5.0
DEFAULT_MAX_QUEUE = 1024
_HURRY_POLL_SECONDS = 0.05  # how soon a waiting batch notices hurry()


class QueueFull(Exception):
    """More texts are waiting than the queue holds; the caller should retry later."""


class ShuttingDown(Exception):
    """The batcher is draining before exit and takes no new work."""


@dataclass
class _Job:
    encoded: list[list[int]]
    future: Future[torch.Tensor]
    probabilities: torch.Tensor
    remaining: int = field(init=False)

    def __post_init__(self) -> None:
        self.remaining = len(self.encoded)


@dataclass(frozen=True)
class BatchStats:
    """One forward pass, for the metrics: texts, padded tokens and seconds."""

    texts: int
    tokens: int
    seconds: float


class Batcher:
    """Merges concurrent classification requests into token-budgeted forward batches.

    ``reserve`` admits texts (or raises ``QueueFull``) before any tokenising is done, ``submit``
    hands over their token ids and returns a future of their probabilities, ``release`` returns
    slots of a request that failed before ``submit``. The worker thread starts on first use.
    """

    def __init__(
        self,
        classifier: TextClassifier,
        *,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS,
        max_queue: int = DEFAULT_MAX_QUEUE,
        max_batch_texts: int = 64,
        on_batch: Callable[[BatchStats], None] | None = None,
    ) -> None:
        if max_batch_tokens < 1 or max_queue < 1 or max_batch_texts < 1 or batch_wait_ms < 0:
            raise ValueError("batch limits must be positive and the wait window non-negative")
        self.classifier = classifier
        self.max_batch_tokens = max_batch_tokens
        self.batch_wait = batch_wait_ms / 1000
        self.max_queue = max_queue
        self.max_batch_texts = max_batch_texts
        self.on_batch = on_batch
        self._cond = threading.Condition()
        self._pending: deque[tuple[_Job, int]] = deque()  # (request, index of its text)
        self._pending_tokens = 0
        self._admitted = 0  # texts reserved and not yet classified: what the queue bound counts
        self._closing = False
        self._hurry = False  # set from a signal handler: read without the lock, polled
        self._worker: threading.Thread | None = None

    @property
    def depth(self) -> int:
        """Texts admitted and not yet classified (being tokenised, waiting or in a batch)."""
        return self._admitted

    def reserve(self, texts: int) -> None:
        with self._cond:
            if self._closing:
                raise ShuttingDown("the server is shutting down")
            if self._admitted + texts > self.max_queue:
                raise QueueFull(
                    f"{self._admitted} texts are queued and the queue holds {self.max_queue}"
                )
            self._admitted += texts

    def release(self, texts: int) -> None:
        with self._cond:
            self._admitted -= texts

    def submit(self, encoded: list[list[int]]) -> Future[torch.Tensor]:
        """Probabilities ``(len(encoded), num_classes)`` in order, once the worker ran them.

        The texts must have been ``reserve``d; an empty list resolves at once."""
        future: Future[torch.Tensor] = Future()
        job = _Job(encoded, future, torch.empty(len(encoded), len(self.classifier.classes)))
        if not encoded:
            future.set_result(job.probabilities)
            return future
        with self._cond:
            if self._closing:
                self._admitted -= len(encoded)
                raise ShuttingDown("the server is shutting down")
            self._start_worker()
            self._pending.extend((job, index) for index in range(len(encoded)))
            self._pending_tokens += sum(len(ids) for ids in encoded)
            self._cond.notify()
        return future

    def hurry(self) -> None:
        """Stop waiting for company: run what is queued at once (shutdown has begun).

        Safe to call from a signal handler: it takes no lock; the worker polls the flag."""
        self._hurry = True

    def close(self, timeout: float | None = None) -> None:
        """Take no new work, finish every text already submitted, stop the worker."""
        with self._cond:
            self._closing = True
            self._cond.notify()
            worker = self._worker
        if worker is not None:
            worker.join(timeout)

    def _start_worker(self) -> None:
        if self._worker is None:
            # A daemon, so a process whose app never ran its shutdown (tests) can still exit;
            # the server's lifespan calls close() to drain it properly.
            self._worker = threading.Thread(target=self._run, name="gpt-classifier-batcher")
            self._worker.daemon = True
            self._worker.start()

    def _run(self) -> None:
        while True:
            taken = self._take()
            if taken is None:
                return
            self._process(taken)

    def _take(self) -> list[tuple[_Job, int]] | None:
        """The oldest waiting texts that fit the token budget, after the wait window."""
        with self._cond:
            while not self._pending:
                if self._closing:
                    return None
                self._cond.wait()
            # Wait for company only while a batch could still grow: a full budget, or a
            # shutdown, goes at once.
            deadline = time.monotonic() + self.batch_wait
            while (
                not self._closing
                and not self._hurry
                and self._pending_tokens < self.max_batch_tokens
                and len(self._pending) < self.max_batch_texts
                and (left := deadline - time.monotonic()) > 0
            ):
                self._cond.wait(min(left, _HURRY_POLL_SECONDS))
            taken: list[tuple[_Job, int]] = []
            tokens = 0
            while self._pending:
                job, index = self._pending[0]
                size = len(job.encoded[index])
                if taken and tokens + size > self.max_batch_tokens:
                    break
                self._pending.popleft()
                self._pending_tokens -= size
                if job.future.cancelled():  # the client went away: skip its texts
                    self._finish(job, 1)
                    continue
                taken.append((job, index))
                tokens += size
            return taken

    def _process(self, taken: Sequence[tuple[_Job, int]]) -> None:
        encoded = [job.encoded[index] for job, index in taken]
        try:
            plans = self.classifier.plan_batches(
                [len(ids) for ids in encoded], self.max_batch_texts, self.max_batch_tokens
            )
            for rows in plans:
                started = time.perf_counter()
                probabilities = self.classifier.forward([encoded[row] for row in rows])
                elapsed = time.perf_counter() - started
                for row, values in zip(rows, probabilities, strict=True):
                    job, index = taken[row]
                    job.probabilities[index] = values
                if self.on_batch is not None:
                    width = self.classifier.info.pad_length or max(len(encoded[r]) for r in rows)
                    self.on_batch(BatchStats(len(rows), width * len(rows), elapsed))
        except Exception as exc:  # a bug or out of memory: fail these requests, keep serving
            for job in {id(job): job for job, _ in taken}.values():
                _settle(job.future, exception=exc)
            with self._cond:
                self._admitted -= len(taken)
            return
        for job, _ in taken:
            self._finish(job, 1)

    def _finish(self, job: _Job, texts: int) -> None:
        with self._cond:
            self._admitted -= texts
            job.remaining -= texts
            done = job.remaining == 0
        if done:
            _settle(job.future, result=job.probabilities)


def _settle(
    future: Future[torch.Tensor],
    result: torch.Tensor | None = None,
    exception: BaseException | None = None,
) -> None:
    # The awaiting side may have cancelled (client gone) at any moment; that is not an error.
    try:
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(result)
    except InvalidStateError:
        pass
