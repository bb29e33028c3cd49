"""Dynamic batching: merged requests get exactly their own answers, budgets hold, the queue is
bounded, shutdown drains, failures and cancelled clients free their slots."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

for _module in ("fastapi", "prometheus_client", "swagger_ui_bundle"):
    pytest.importorskip(_module, reason="serving needs the 'serve' extra")
from fastapi.testclient import TestClient  # noqa: E402

from gpt_classifier.inference import TextClassifier  # noqa: E402
from gpt_classifier.serving import create_app  # noqa: E402
from gpt_classifier.serving.batching import (  # noqa: E402
    Batcher,
    BatchStats,
    ModelThread,
    QueueFull,
    ShuttingDown,
)

TEXTS = [
    "WINNER!! Claim your prize now",
    "see you at 5?",
    "ok",
    "Free entry in 2 a wkly comp to win FA Cup final tkts",
    "I'll call you later, in a meeting",
    "URGENT! Your mobile number has been awarded a prize",
    "lol",
    "can you pick up milk on the way home",
]
LONG_WAIT_MS = 60_000  # "wait for company" until a batch is full: makes merging deterministic


def _proba(classifier: TextClassifier, texts, **kwargs) -> torch.Tensor:
    """``predict_proba`` (a NumPy array, as scikit-learn's) as a tensor, to compare."""
    return torch.from_numpy(classifier.predict_proba(texts, **kwargs))


class PaddingClassifier(TextClassifier):
    """The run's classifier with packing turned off: the batcher's padded passes."""

    can_pack = False


@pytest.fixture(scope="module", params=["packed", "padded"])
def classifier(request, saved_run, tokenizer_dir):
    # float32: a packed pass equals the padded one up to float rounding, far below 1e-6
    kind = TextClassifier if request.param == "packed" else PaddingClassifier
    classifier = kind.from_run(
        saved_run, device="cpu", tokenizer_dir=tokenizer_dir, precision="fp32"
    )
    assert classifier.can_pack == (request.param == "packed")
    return classifier


def pass_method(classifier: TextClassifier) -> str:
    """The method the batcher runs a pass with."""
    return "forward_packed" if classifier.can_pack else "forward"


class Recorder:
    """Counts forward passes and the thread they ran on, around the real ``forward``."""

    def __init__(self, classifier: TextClassifier) -> None:
        self.classifier = classifier
        self.calls: list[tuple[int, str]] = []
        self.encode_threads: set[str] = set()
        self.real_forward = getattr(classifier, pass_method(classifier))
        self.real_encode = classifier.encode_texts

    def forward(self, encoded, *args):
        self.calls.append((len(encoded), threading.current_thread().name))
        return self.real_forward(encoded, *args)

    def batcher_calls(self) -> list[int]:
        """Texts per forward pass of the batcher (the tests' own reference calls left out)."""
        return [n for n, thread in self.calls if thread == "gpt-classifier-batcher"]

    def encode_texts(self, texts, **kwargs):
        self.encode_threads.add(threading.current_thread().name)
        return self.real_encode(texts, **kwargs)


@pytest.fixture
def recorder(classifier, monkeypatch):
    recorder = Recorder(classifier)
    monkeypatch.setattr(classifier, pass_method(classifier), recorder.forward)
    monkeypatch.setattr(classifier, "encode_texts", recorder.encode_texts)
    return recorder


def _submit(batcher: Batcher, classifier: TextClassifier, texts: list[str]):
    encoded, _ = classifier.encode_texts(texts)
    batcher.reserve(len(texts))
    return batcher.submit(encoded)


def test_requests_waiting_together_share_one_forward_pass(classifier, recorder):
    requests = [TEXTS[:3], TEXTS[3:4], TEXTS[4:]]
    batcher = Batcher(
        classifier, batch_wait_ms=LONG_WAIT_MS, max_batch_texts=len(TEXTS), max_batch_tokens=4096
    )
    futures = [_submit(batcher, classifier, texts) for texts in requests]
    results = [future.result(timeout=30) for future in futures]
    batcher.close()
    assert recorder.calls == [(len(TEXTS), "gpt-classifier-batcher")]
    for texts, got in zip(requests, results, strict=True):
        torch.testing.assert_close(got, _proba(classifier, texts), atol=1e-6, rtol=0)
    assert batcher.depth == 0


def test_forward_passes_keep_to_the_token_budget_and_sort_by_length(classifier, recorder):
    stats: list[BatchStats] = []
    budget = 24
    batcher = Batcher(classifier, batch_wait_ms=0, max_batch_tokens=budget, on_batch=stats.append)
    encoded, _ = classifier.encode_texts(TEXTS)
    assert max(len(ids) for ids in encoded) <= budget
    batcher.reserve(len(TEXTS))
    got = batcher.submit(encoded).result(timeout=30)
    batcher.close()
    torch.testing.assert_close(got, _proba(classifier, TEXTS), atol=1e-6, rtol=0)
    assert len(stats) > 1
    assert all(batch.tokens <= budget for batch in stats)
    assert sum(batch.texts for batch in stats) == len(TEXTS)
    assert sum(recorder.batcher_calls()) == len(TEXTS)


def test_a_text_longer_than_the_budget_runs_alone(classifier, recorder):
    stats: list[BatchStats] = []
    batcher = Batcher(classifier, batch_wait_ms=0, max_batch_tokens=2, on_batch=stats.append)
    texts = ["WINNER!! Claim your prize now", "see you at 5?"]
    got = _submit(batcher, classifier, texts).result(timeout=30)
    batcher.close()
    torch.testing.assert_close(got, _proba(classifier, texts), atol=1e-6, rtol=0)
    assert [batch.texts for batch in stats] == [1, 1]


def test_the_queue_is_bounded_in_texts(classifier):
    batcher = Batcher(classifier, max_queue=5)
    batcher.reserve(4)
    with pytest.raises(QueueFull, match="4 texts are queued and the queue holds 5"):
        batcher.reserve(2)
    batcher.reserve(1)
    assert batcher.depth == 5
    batcher.release(5)
    batcher.reserve(5)
    assert batcher.depth == 5


def test_close_finishes_queued_work_then_refuses_more(classifier):
    batcher = Batcher(classifier, batch_wait_ms=LONG_WAIT_MS, max_batch_texts=64)
    futures = [_submit(batcher, classifier, [text]) for text in TEXTS]
    assert not any(future.done() for future in futures)  # still waiting for company
    batcher.close(timeout=30)
    for text, future in zip(TEXTS, futures, strict=True):
        assert future.done()
        torch.testing.assert_close(future.result(), _proba(classifier, [text]), atol=1e-6, rtol=0)
    with pytest.raises(ShuttingDown):
        batcher.reserve(1)
    assert batcher.depth == 0


def test_a_failing_forward_fails_its_requests_and_the_worker_goes_on(classifier, monkeypatch):
    batcher = Batcher(classifier, batch_wait_ms=0)
    method = pass_method(classifier)
    real_forward = getattr(classifier, method)
    monkeypatch.setattr(
        classifier, method, lambda encoded, *_: (_ for _ in ()).throw(RuntimeError("boom"))
    )
    with pytest.raises(RuntimeError, match="boom"):
        _submit(batcher, classifier, TEXTS[:2]).result(timeout=30)
    assert batcher.depth == 0
    monkeypatch.setattr(classifier, method, real_forward)
    got = _submit(batcher, classifier, TEXTS[:2]).result(timeout=30)
    torch.testing.assert_close(got, _proba(classifier, TEXTS[:2]), atol=1e-6, rtol=0)
    batcher.close()


def test_a_cancelled_request_is_skipped_and_frees_its_slots(classifier, recorder):
    batcher = Batcher(classifier, batch_wait_ms=LONG_WAIT_MS, max_batch_texts=4)
    gone = _submit(batcher, classifier, TEXTS[:2])
    assert gone.cancel()  # the client went away while its texts were waiting
    kept = _submit(batcher, classifier, TEXTS[2:4])  # fills the batch: the worker goes
    torch.testing.assert_close(
        kept.result(timeout=30), _proba(classifier, TEXTS[2:4]), atol=1e-6, rtol=0
    )
    batcher.close()
    assert recorder.batcher_calls() == [2]
    assert batcher.depth == 0


def test_concurrent_http_requests_are_merged_and_get_their_own_answers(classifier, recorder):
    """Eight clients at once: one forward pass, each answer equal to a direct classify call,
    tokenising done by the request threads, the model run only by the batcher."""
    requests = [[text, TEXTS[(i + 3) % len(TEXTS)]] for i, text in enumerate(TEXTS)]
    app = create_app(
        classifier,
        batch_size=2 * len(TEXTS),  # the batch goes as soon as every request is in
        batch_wait_ms=LONG_WAIT_MS,
        max_batch_tokens=4096,
    )
    with TestClient(app) as client, ThreadPoolExecutor(len(requests)) as pool:
        responses = list(
            pool.map(lambda texts: client.post("/classify", json={"texts": texts}), requests)
        )
    assert recorder.calls == [(2 * len(TEXTS), "gpt-classifier-batcher")]
    assert "gpt-classifier-batcher" not in recorder.encode_threads
    for texts, response in zip(requests, responses, strict=True):
        assert response.status_code == 200
        predictions = response.json()["predictions"]
        expected = classifier.classify(texts)
        assert [p["label"] for p in predictions] == [p.label for p in expected]
        for got, want in zip(predictions, expected, strict=True):
            assert got["probabilities"] == pytest.approx(want.probabilities, abs=1e-6)


def test_a_pass_takes_the_oldest_text_with_the_lengths_nearest_it():
    from gpt_classifier.data.batching import best_padded_batch

    # Row 0 (10 tokens) goes with the other short texts, not padded to the long ones.
    assert sorted(best_padded_batch([10, 100, 11, 12, 9], 64, 1024)) == [0, 2, 3, 4]
    # The oldest text always goes, even when texts of other lengths would fill a pass better.
    assert 0 in best_padded_batch([50, 10, 10, 10, 10], 64, 1024)
    for lengths, max_texts, max_tokens in [
        ([30] * 40, 64, 1024),
        ([5, 80, 80, 80, 3, 7, 60, 9] * 5, 8, 256),
        ([200, 1, 2], 64, 100),  # longer than the budget: runs alone
    ]:
        rows = best_padded_batch(lengths, max_texts, max_tokens)
        assert 0 in rows and len(set(rows)) == len(rows) <= max_texts
        width = max(lengths[row] for row in rows)
        assert len(rows) == 1 or len(rows) * width <= max_tokens


def test_a_request_is_answered_as_soon_as_its_pass_is_done(classifier, monkeypatch):
    seen: list[bool] = []
    method = pass_method(classifier)
    real_forward = getattr(classifier, method)
    short: list = []

    def forward(encoded, *args):
        seen.append(bool(short) and short[0].done())
        return real_forward(encoded, *args)

    monkeypatch.setattr(classifier, method, forward)
    batcher = Batcher(classifier, batch_wait_ms=LONG_WAIT_MS, max_batch_tokens=12)
    short.append(_submit(batcher, classifier, ["ok"]))  # the oldest: first pass
    long = _submit(batcher, classifier, [TEXTS[3], TEXTS[5]])  # 12 tokens each: a pass each
    long.result(timeout=30)
    batcher.close()
    assert seen == [False, True, True]  # answered before the next passes ran
    torch.testing.assert_close(short[0].result(), _proba(classifier, ["ok"]), atol=1e-6, rtol=0)


def test_passes_run_in_the_thread_that_loaded_the_model(saved_run, tokenizer_dir):
    """``serve`` loads the run in its model thread and the batcher runs every pass there (one
    OpenMP team: see ``serving/batching.py``)."""
    thread = ModelThread()
    classifier = thread.call(
        TextClassifier.from_run, saved_run, tokenizer_dir=tokenizer_dir, precision="fp32"
    )
    ran_in: list[int] = []
    real_forward = classifier.forward_packed

    def forward_packed(encoded, *args):
        ran_in.append(threading.get_ident())
        return real_forward(encoded, *args)

    classifier.forward_packed = forward_packed
    batcher = Batcher(classifier, batch_wait_ms=0, model_thread=thread)
    got = _submit(batcher, classifier, TEXTS[:3]).result(timeout=30)
    batcher.close(timeout=30)
    torch.testing.assert_close(got, _proba(classifier, TEXTS[:3]), atol=1e-6, rtol=0)
    assert ran_in == [thread.ident] and thread.ident != threading.get_ident()


def test_the_model_thread_runs_calls_in_order_and_hands_back_errors():
    thread = ModelThread()
    order: list[int] = []
    futures = [thread.submit(order.append, n) for n in range(5)]
    assert [f.result(timeout=30) for f in futures] == [None] * 5 and order == list(range(5))
    with pytest.raises(ValueError, match="invalid literal"):
        thread.call(int, "not a number")
    assert thread.call(sum, [1, 2]) == 3  # still serving after an error
    thread.close(timeout=30)


def test_packed_rows_are_no_longer_than_the_context(saved_run, tokenizer_dir):
    classifier = TextClassifier.from_run(saved_run, tokenizer_dir=tokenizer_dir, precision="fp32")
    rows: list[int] = []
    real_forward = classifier.forward_packed

    def forward_packed(encoded, row_tokens):
        rows.append(row_tokens)
        return real_forward(encoded, row_tokens)

    classifier.forward_packed = forward_packed
    batcher = Batcher(classifier, batch_wait_ms=0, max_batch_tokens=4096)
    got = _submit(batcher, classifier, TEXTS).result(timeout=30)
    batcher.close(timeout=30)
    torch.testing.assert_close(got, _proba(classifier, TEXTS), atol=1e-6, rtol=0)
    assert rows and set(rows) == {classifier.model.cfg.context_length}
