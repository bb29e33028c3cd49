"""Dynamic batching: one worker thread owns the model and merges concurrent requests.

Requests are tokenised by their callers (outside the worker), admitted against a bounded queue
counted in texts, then handed over as token ids. The worker waits a few milliseconds after the
first text arrives for others to join, then runs one forward pass at a time within a token
budget (so a huge request is split across passes and later small ones are not stuck behind all
of it). Where the model allows it (``TextClassifier.can_pack``: the default runs) a pass packs
the oldest waiting texts end to end, with no padding at all; otherwise it pads, and takes the
oldest waiting text with the waiting texts nearest to it in length, so that little is padded.
A request is resolved as soon as all of its texts are done.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

import torch

from ..classifier.pooling import padding_reads
from ..inference.predict import TextClassifier
from .model_thread import ModelThread

DEFAULT_MAX_BATCH_TOKENS = 1024  # TextClassifier's own budget: ~1k-row matmuls suit the CPU
DEFAULT_BATCH_WAIT_MS = 5.0
DEFAULT_MAX_QUEUE = 1024
_HURRY_POLL_SECONDS = 0.05  # how soon a waiting batch notices hurry()
# A pass is chosen among the oldest waiting texts worth this many budgets: enough to group
# similar lengths, few enough to plan in microseconds.
_CANDIDATE_BUDGETS = 4
# What one forward pass costs beyond its tokens, in tokens: measured for GPT-2 124M on a CPU
# core, a one-token pass takes as long as ~75 tokens of a large one (every weight is read once
# a pass). It only weighs fewer, fuller passes against less padding.
PASS_COST_TOKENS = 75


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
    slots of a request that failed before ``submit``. The worker starts on first use, in
    ``model_thread`` (the thread that loaded the classifier, see ``model_thread``), or in a
    thread of its own.
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
        model_thread: ModelThread | None = None,
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
        self._model_thread = model_thread
        self._worker: Future[None] | None = None

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
            with contextlib.suppress(FutureTimeout):  # still draining after the timeout
                worker.result(timeout)

    def _start_worker(self) -> None:
        if self._worker is None:
            # The model thread is a daemon, so a process whose app never ran its shutdown
            # (tests) can still exit; the server's lifespan calls close() to drain it properly.
            if self._model_thread is None:
                self._model_thread = ModelThread("gpt-classifier-batcher")
            self._worker = self._model_thread.submit(self._run)

    def _run(self) -> None:
        while True:
            taken = self._take()
            if taken is None:
                return
            self._process(taken)

    def _take(self) -> list[tuple[_Job, int]] | None:
        """The texts of the next forward pass, after the wait window: the oldest waiting text
        and the waiting texts closest to it in length, within the token budget.

        One pass at a time, not every waiting text at once: the texts left over wait with the
        ones arriving meanwhile, so the next pass can again group similar lengths (less
        padding). The oldest text always goes, so no text waits behind later ones for ever."""
        with self._cond:
            while not self._pending:
                if self._closing:
                    return None
                self._cond.wait()
            # Wait for company only while a batch could still grow: a full budget, or a
            # shutdown, goes at once. The window starts now, also for texts that queued up
            # during the previous pass: the clients answered by that pass send their next
            # requests within a few milliseconds, and waiting for them makes fewer, fuller
            # passes, each paying once the fixed cost of reading every weight (tried: starting
            # the window at the oldest text's arrival split 32 clients into passes of ~17
            # texts instead of ~23, and lowered throughput).
            deadline = time.monotonic() + self.batch_wait
            while (
                not self._closing
                and not self._hurry
                and self._pending_tokens < self.max_batch_tokens
                and len(self._pending) < self.max_batch_texts
                and (left := deadline - time.monotonic()) > 0
            ):
                self._cond.wait(min(left, _HURRY_POLL_SECONDS))
            candidates = self._candidates()
            if not candidates:
                return []
            lengths = [len(job.encoded[index]) for job, index in candidates]
            chosen = set(self._choose_pass(lengths))
            taken = [candidates[row] for row in sorted(chosen)]
            left_over = [c for row, c in enumerate(candidates) if row not in chosen]
            self._pending.extendleft(reversed(left_over))
            self._pending_tokens -= sum(lengths[row] for row in chosen)
            return taken

    def _choose_pass(self, lengths: Sequence[int]) -> list[int]:
        """Rows of ``lengths`` for the next pass; row 0 (the oldest text) is always in it."""
        if self.classifier.can_pack:  # no padding: the oldest texts, in order, that fit
            return take_in_order(lengths, self.max_batch_texts, self.max_batch_tokens)
        info, model = self.classifier.info, self.classifier.model
        reads = padding_reads(model.pooling, model.cfg.causal, info.pad_length)
        if info.pad_length is not None or reads.pooled:
            # Every pass is padded to the same length, or (the book's position -1 without a
            # pad length) only texts of one length may share it: the classifier's own plan.
            plans = self.classifier.plan_batches(
                lengths, self.max_batch_texts, self.max_batch_tokens
            )
            return next(rows for rows in plans if 0 in rows)
        return choose_pass(lengths, self.max_batch_texts, self.max_batch_tokens)

    def _candidates(self) -> list[tuple[_Job, int]]:
        """The oldest waiting texts (a few budgets' worth) to choose a pass from; texts of
        requests whose client went away are dropped here. Called with the lock held."""
        candidates: list[tuple[_Job, int]] = []
        tokens = 0
        limit = _CANDIDATE_BUDGETS * self.max_batch_tokens
        while self._pending and len(candidates) < _CANDIDATE_BUDGETS * self.max_batch_texts:
            job, index = self._pending[0]
            size = len(job.encoded[index])
            if candidates and tokens + size > limit:
                break
            self._pending.popleft()
            if job.future.cancelled():  # the client went away: skip its texts
                self._pending_tokens -= size
                self._finish_locked(job, 1)
                continue
            candidates.append((job, index))
            tokens += size
        return candidates

    def _process(self, taken: Sequence[tuple[_Job, int]]) -> None:
        """One forward pass; its requests' texts are done at once (a request whose texts all
        ran is answered while the next pass runs)."""
        if not taken:
            return
        encoded = [job.encoded[index] for job, index in taken]
        try:
            started = time.perf_counter()
            if self.classifier.can_pack:
                # rows no longer than the context: attention over a row grows with its square
                rows = min(self.max_batch_tokens, self.classifier.model.cfg.context_length)
                probabilities = self.classifier.forward_packed(encoded, rows)
            else:
                probabilities = self.classifier.forward(encoded)
            elapsed = time.perf_counter() - started
        except Exception as exc:  # a bug or out of memory: fail these requests, keep serving
            for job in {id(job): job for job, _ in taken}.values():
                _settle(job.future, exception=exc)
            with self._cond:
                self._admitted -= len(taken)
            return
        for (job, index), values in zip(taken, probabilities, strict=True):
            job.probabilities[index] = values
        if self.on_batch is not None:
            if self.classifier.can_pack:
                tokens = sum(len(ids) for ids in encoded)
            else:
                tokens = len(taken) * (
                    self.classifier.info.pad_length or max(len(ids) for ids in encoded)
                )
            self.on_batch(BatchStats(len(taken), tokens, elapsed))
        for job, _ in taken:
            self._finish(job, 1)

    def _finish(self, job: _Job, texts: int) -> None:
        with self._cond:
            self._finish_locked(job, texts)

    def _finish_locked(self, job: _Job, texts: int) -> None:
        self._admitted -= texts
        job.remaining -= texts
        if job.remaining == 0:
            _settle(job.future, result=job.probabilities)


def take_in_order(lengths: Sequence[int], max_texts: int, max_tokens: int) -> list[int]:
    """The rows of one packed pass: the first texts while their tokens fit in ``max_tokens``
    (row 0 always goes)."""
    taken, tokens = [0], lengths[0]
    for row in range(1, min(len(lengths), max_texts)):
        if tokens + lengths[row] > max_tokens:
            break
        taken.append(row)
        tokens += lengths[row]
    return taken


def choose_pass(lengths: Sequence[int], max_texts: int, max_tokens: int) -> list[int]:
    """The rows of one padded pass that includes row 0, chosen for the most real tokens per
    unit of work: for each width from row 0's length up, the longest texts that fit under it
    (as many as the budget allows); a pass costs its padded tokens plus
    ``PASS_COST_TOKENS`` (reading every weight once, Python overhead)."""
    order = sorted(range(len(lengths)), key=lambda row: lengths[row])
    best: list[int] = [0]
    best_score = -1.0
    for width in sorted({n for n in lengths if n >= lengths[0]}):
        room = max(1, min(max_texts, max_tokens // width))
        fitting = [row for row in order if lengths[row] <= width][-room:]
        if 0 not in fitting:
            fitting = fitting[1:] + [0]  # the oldest text goes instead of the shortest
        padded = len(fitting) * max(lengths[row] for row in fitting)
        score = sum(lengths[row] for row in fitting) / (PASS_COST_TOKENS + padded)
        if score > best_score:
            best, best_score = fitting, score
    return best


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
