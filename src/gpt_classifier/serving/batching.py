"""Dynamic batching (docs/serving.md#how-requests-are-batched): concurrent requests' texts run in
token-budgeted passes, packed or grouped by length, admitted against a queue bounded in texts."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import torch

from ..classifier.pooling import padding_reads
from ..data.batching import TOKENS_PER_PASS, best_padded_batch, plan_batches
from ..inference.predict import TextClassifier

DEFAULT_BATCH_WAIT_MS = 5.0
DEFAULT_MAX_QUEUE = 1024
_HURRY_POLL_SECONDS = 0.05  # how soon a waiting batch notices hurry()
_CANDIDATE_BUDGETS = 4  # a pass is chosen among this many budgets of the oldest texts
T = TypeVar("T")


class ModelThread:
    """Calls run in order (a daemon: a process that never calls ``close`` exits). The server loads
    and runs every pass in one: each thread running OpenMP gets its own team of workers; a one-text
    pass of GPT-2 124M on 2 cores took 29 ms from a second thread, 17 ms from the loading one."""

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


class QueueFull(Exception):
    """More texts are waiting than the queue holds; the caller should retry later."""

    def __init__(self, depth: int, limit: int) -> None:
        message = f"server busy: {depth} texts are queued and the queue holds {limit}; retry later"
        super().__init__(message)


class ShuttingDown(Exception):
    """The batcher is draining before exit and takes no new work."""


@dataclass
class _Job:
    encoded: list[list[int]]
    future: Future[torch.Tensor]
    probabilities: torch.Tensor
    remaining: int  # texts not yet classified


class BatchStats(NamedTuple):  # one forward pass, for the metrics
    texts: int
    tokens: int  # padded
    seconds: float


class Batcher:
    """``reserve`` admits texts (or raises ``QueueFull``), ``submit`` runs their ids, ``release``
    frees a failed request's slots; the worker runs in ``model_thread`` or a thread of its own."""

    def __init__(
        self,
        classifier: TextClassifier,
        *,
        max_batch_tokens: int = TOKENS_PER_PASS,
        batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS,
        max_queue: int = DEFAULT_MAX_QUEUE,
        max_batch_texts: int = 64,
        on_batch: Callable[[BatchStats], None] | None = None,
        model_thread: ModelThread | None = None,
    ) -> None:
        if max_batch_tokens < 1 or max_queue < 1 or max_batch_texts < 1 or batch_wait_ms < 0:
            raise ValueError("batch limits must be positive and the wait window non-negative")
        self.classifier, self.on_batch = classifier, on_batch
        self.max_batch_tokens, self.max_batch_texts = max_batch_tokens, max_batch_texts
        self.batch_wait, self.max_queue = batch_wait_ms / 1000, max_queue
        self._cond = threading.Condition()
        self._pending: deque[tuple[_Job, int]] = deque()  # (request, index of its text)
        self.depth = self._pending_tokens = 0  # depth: texts admitted, not yet classified
        self._closing = self._hurry = False  # _hurry: set by a signal handler, read without lock
        self._model_thread, self._worker = model_thread, None  # the worker: a Future, once started

    def reserve(self, texts: int) -> None:
        with self._cond:
            if self._closing:
                raise ShuttingDown("the server is shutting down")
            if self.depth + texts > self.max_queue:
                raise QueueFull(self.depth, self.max_queue)
            self.depth += texts

    def release(self, texts: int) -> None:
        with self._cond:
            self.depth -= texts

    def submit(self, encoded: list[list[int]]) -> Future[torch.Tensor]:
        """Probabilities ``(len(encoded), num_classes)`` of ``reserve``d texts, in order."""
        probabilities = torch.empty(len(encoded), len(self.classifier.classes))
        job = _Job(encoded, Future(), probabilities, len(encoded))
        if not encoded:
            job.future.set_result(probabilities)
            return job.future
        with self._cond:
            if self._closing:
                self.depth -= len(encoded)
                raise ShuttingDown("the server is shutting down")
            if self._worker is None:  # a daemon: a process whose app never shut down exits
                thread = self._model_thread or ModelThread("gpt-classifier-batcher")
                self._model_thread, self._worker = thread, thread.submit(self._run)
            self._pending.extend((job, index) for index in range(len(encoded)))
            self._pending_tokens += sum(len(ids) for ids in encoded)
            self._cond.notify()
        return job.future

    def hurry(self) -> None:
        """Run what is queued at once (shutdown); takes no lock, so a signal handler may call it."""
        self._hurry = True

    def close(self, timeout: float | None = None) -> None:
        """Take no new work, finish every text already submitted, stop the worker."""
        with self._cond:
            self._closing = True
            self._cond.notify()
            worker = self._worker
        if worker is not None:
            with contextlib.suppress(FutureTimeout):  # still draining after the timeout
                worker.result(timeout)

    def _run(self) -> None:
        while (taken := self._take()) is not None:
            if taken:
                self._process(taken)

    def _take(self) -> list[tuple[_Job, int]] | None:
        """The texts of the next pass, after the wait window; the oldest always goes."""
        with self._cond:
            while not self._pending:
                if self._closing:
                    return None
                self._cond.wait()
            # The window starts now, also for texts queued during the last pass: their clients
            # send again within ms (from the oldest's arrival, passes held ~17 texts, not ~23).
            deadline = time.monotonic() + self.batch_wait
            while (
                not self._closing
                and not self._hurry
                and self._pending_tokens < self.max_batch_tokens
                and len(self._pending) < self.max_batch_texts
                and (left := deadline - time.monotonic()) > 0
            ):
                self._cond.wait(min(left, _HURRY_POLL_SECONDS))
            candidates: list[tuple[_Job, int]] = []
            tokens, limit = 0, _CANDIDATE_BUDGETS * self.max_batch_tokens
            while self._pending and len(candidates) < _CANDIDATE_BUDGETS * self.max_batch_texts:
                job, index = self._pending[0]
                size = len(job.encoded[index])
                if candidates and tokens + size > limit:
                    break
                self._pending.popleft()
                if job.future.cancelled():  # the client went away: skip its texts
                    self._pending_tokens -= size
                    self._finish(job)
                    continue
                candidates.append((job, index))
                tokens += size
            if not candidates:
                return []
            lengths = [len(job.encoded[index]) for job, index in candidates]
            chosen = set(self._choose_pass(lengths))
            left_over = [c for i, c in enumerate(candidates) if i not in chosen]
            self._pending.extendleft(reversed(left_over))
            self._pending_tokens -= sum(lengths[row] for row in chosen)
            return [candidates[row] for row in sorted(chosen)]

    def _choose_pass(self, lengths: Sequence[int]) -> list[int]:
        """Rows of ``lengths`` for the next pass; row 0 (the oldest text) is always in it."""
        texts, tokens = self.max_batch_texts, self.max_batch_tokens
        if self.classifier.can_pack:  # no padding: the oldest texts, in order, that fit
            return plan_batches(lengths, tokens, max_texts=texts, packed=True, sort=False)[0]
        info, model = self.classifier.info, self.classifier.model
        reads = padding_reads(model.pooling, model.cfg.causal, info.pad_length)
        if info.pad_length is not None or reads.pooled:
            # one pad length, or one text length per pass (position -1, unpadded): its own plan
            plans = self.classifier.plan_batches(lengths, texts, tokens)
            return next(rows for rows in plans if 0 in rows)
        return best_padded_batch(lengths, texts, tokens)

    def _process(self, taken: Sequence[tuple[_Job, int]]) -> None:
        encoded, packed = [job.encoded[index] for job, index in taken], self.classifier.can_pack
        try:
            started = time.perf_counter()
            if packed:
                # rows no longer than the context: attention over a row grows with its square
                rows = min(self.max_batch_tokens, self.classifier.model.cfg.context_length)
                probabilities = self.classifier.forward_packed(encoded, rows)
            else:
                probabilities = self.classifier.forward(encoded)
            elapsed = time.perf_counter() - started
        except Exception as exc:  # a bug or out of memory: fail these requests, keep serving
            for job in {id(job): job for job, _ in taken}.values():
                with contextlib.suppress(InvalidStateError):  # cancelled: the client went away
                    job.future.set_exception(exc)
            self.release(len(taken))
            return
        for (job, index), values in zip(taken, probabilities, strict=True):
            job.probabilities[index] = values
        if self.on_batch is not None:
            width = self.classifier.info.pad_length or max(len(ids) for ids in encoded)
            tokens = sum(len(ids) for ids in encoded) if packed else len(taken) * width
            self.on_batch(BatchStats(len(taken), tokens, elapsed))
        with self._cond:
            for job, _ in taken:
                self._finish(job)

    def _finish(self, job: _Job) -> None:  # lock held
        self.depth -= 1
        job.remaining -= 1
        if job.remaining == 0:
            with contextlib.suppress(InvalidStateError):  # cancelled: the client went away
                job.future.set_result(job.probabilities)
