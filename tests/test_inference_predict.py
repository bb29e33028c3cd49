"""Batched prediction: same answers as one at a time, in input order; the book's function."""

from __future__ import annotations

import pytest
import torch

from gpt_classifier.classifier import GPTClassifier
from gpt_classifier.errors import GPTClassifierError
from gpt_classifier.inference import RunInfo, TextClassifier, classify_review
from gpt_classifier.model import GPTModel

TEXTS = [
    "WINNER!! As a valued network customer you have been selected to receive a prize",
    "ok",
    "Are we still meeting for lunch tomorrow? Let me know when you leave the office",
    "Call now",
    "I'll be there in ten minutes",
]


def _proba(classifier: TextClassifier, texts, **kwargs) -> torch.Tensor:
    """``predict_proba`` (a NumPy array, as scikit-learn's) as a tensor, to compare."""
    return torch.from_numpy(classifier.predict_proba(texts, **kwargs))


def _predictor(tiny_config, tokenizer, pooling="last-real", pad_length=None, max_length=None):
    model = GPTClassifier(GPTModel(tiny_config), 2, pooling=pooling).eval()
    info = RunInfo(
        gpt_config=tiny_config,
        classes=("ham", "spam"),
        pooling=pooling,
        padding="batch" if pad_length is None else f"fixed:{pad_length}",
        max_length=max_length or pad_length or tiny_config.context_length,
        pad_length=pad_length,
    )
    model.run_info = info
    return TextClassifier(model, tokenizer, info, "cpu", precision="fp32")


@pytest.mark.parametrize(("pooling", "pad_length"), [("last-real", None), ("last", 24)])
def test_batches_agree_with_one_at_a_time_and_keep_order(
    tiny_config, tokenizer, pooling, pad_length
):
    predictor = _predictor(tiny_config, tokenizer, pooling, pad_length)
    together = _proba(predictor, TEXTS, batch_size=4)
    alone = torch.cat([_proba(predictor, [text]) for text in TEXTS])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(together.sum(-1), torch.ones(len(TEXTS)))


def test_repeated_texts_run_once_and_come_back_in_place(tiny_config, tokenizer, monkeypatch):
    predictor = _predictor(tiny_config, tokenizer)
    texts = [TEXTS[0], TEXTS[1], TEXTS[0], TEXTS[2], TEXTS[1], TEXTS[0]]
    rows_run = []
    forward = predictor.model.forward
    monkeypatch.setattr(
        predictor.model,
        "forward",
        lambda ids, lengths: rows_run.append(len(ids)) or forward(ids, lengths),
    )
    repeated = _proba(predictor, texts)
    assert sum(rows_run) == 3  # three distinct texts
    distinct = _proba(predictor, TEXTS[:3])
    torch.testing.assert_close(repeated, distinct[[0, 1, 0, 2, 1, 0]])


def test_classify_returns_labels_and_probabilities(tiny_config, tokenizer):
    predictions = _predictor(tiny_config, tokenizer).classify(TEXTS)
    assert [p.label for p in predictions] == [
        max(p.probabilities, key=p.probabilities.get) for p in predictions
    ]
    for prediction in predictions:
        assert prediction.label in ("ham", "spam")
        assert prediction.probability == prediction.probabilities[prediction.label]


def test_empty_text_is_an_error(tiny_config, tokenizer):
    with pytest.raises(GPTClassifierError, match="text 2 is empty"):
        _predictor(tiny_config, tokenizer).classify(["fine", "   "])


def test_long_texts_are_cut_to_the_trained_length_and_counted(tiny_config, tokenizer):
    predictor = _predictor(tiny_config, tokenizer, max_length=8)
    long_text = " ".join(["word"] * 50)
    assert _proba(predictor, [long_text, "short"]).shape == (2, 2)
    assert predictor.truncated == 1
    cut = tokenizer.decode(tokenizer.encode(long_text)[:8])
    torch.testing.assert_close(_proba(predictor, [long_text]), _proba(predictor, [cut]))


def test_classify_review_matches_the_predictor(tiny_config, tokenizer):
    for pooling, pad_length in [("last-real", None), ("last", 24)]:
        predictor = _predictor(tiny_config, tokenizer, pooling, pad_length)
        expected = [p.label for p in predictor.classify(TEXTS)]
        got = [classify_review(t, predictor.model, tokenizer, "cpu") for t in TEXTS]
        assert got == expected


# --- a saved run, explicit padding checks, the book's function with its own arguments ----------

# ``saved_run`` (conftest): a tiny run, last-real pooling, per-batch padding, cut to 12 tokens.


@pytest.fixture(scope="module")
def from_run(saved_run, tokenizer_dir):
    return TextClassifier.from_run(
        saved_run, device="cpu", tokenizer_dir=tokenizer_dir, precision="fp32"
    )


def test_from_run_classifies_with_labels_and_probabilities(from_run):
    predictions = from_run.classify(TEXTS)
    assert len(predictions) == len(TEXTS)
    for prediction in predictions:
        assert prediction.label in ("ham", "spam")
        assert set(prediction.probabilities) == {"ham", "spam"}
        assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
        assert prediction.probability == max(prediction.probabilities.values())
    assert from_run.classes == ("ham", "spam")
    assert not from_run.model.training


def test_from_run_batches_agree_with_one_at_a_time(from_run):
    texts = TEXTS + ["a", "b c", TEXTS[0]]  # ties in length, a duplicate
    for batch_size in (1, 2, 64):
        together = _proba(from_run, texts, batch_size=batch_size)
        alone = torch.cat([_proba(from_run, [text]) for text in texts])
        torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)
    assert torch.equal(together[0], together[-1])


def test_from_run_truncates_to_the_saved_max_length(from_run, tokenizer):
    long_text = TEXTS[2]  # 16 tokens, more than the 12 the run was trained with
    ids = tokenizer.encode(long_text)
    assert len(ids) > 12
    probabilities = _proba(from_run, [long_text, "ok"])
    assert from_run.truncated == 1
    with torch.no_grad():
        expected = torch.softmax(from_run.model(torch.tensor([ids[:12]])), -1)
    torch.testing.assert_close(probabilities[:1], expected, atol=1e-6, rtol=0)
    _proba(from_run, ["ok"])
    assert from_run.truncated == 0  # counts the last call only


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_strings_raise(from_run, text):
    with pytest.raises(GPTClassifierError, match="text 1 is empty"):
        from_run.classify([text])


def test_classify_review_rejects_the_empty_string(from_run):
    # whitespace-only texts are classified by classify_review (they are tokens), while
    # TextClassifier rejects them: see the report
    with pytest.raises(GPTClassifierError, match="empty"):
        classify_review("", from_run.model, from_run.tokenizer, "cpu")


def test_last_pooling_with_a_fixed_length_pads_to_it(tiny_config, tokenizer):
    predictor = _predictor(tiny_config, tokenizer, "last", pad_length=24)
    probabilities = _proba(predictor, TEXTS[:2])
    for row, text in enumerate(TEXTS[:2]):
        ids = tokenizer.encode(text)
        padded = torch.tensor([ids + [50256] * (24 - len(ids))])
        with torch.no_grad():
            expected = torch.softmax(predictor.model(padded), -1)[0]
            unpadded = torch.softmax(predictor.model(torch.tensor([ids])), -1)[0]
        torch.testing.assert_close(probabilities[row], expected, atol=1e-6, rtol=0)
        assert not torch.allclose(probabilities[row], unpadded, atol=1e-4)  # the pads matter


def test_last_pooling_without_a_fixed_length_never_pads(tiny_config, tokenizer):
    predictor = _predictor(tiny_config, tokenizer, "last", pad_length=None)
    texts = ["one two", "three four", "five six seven", "eight"]
    lengths = [len(tokenizer.encode(t)) for t in texts]
    for batch in predictor.plan_batches(lengths, 64):
        assert len({lengths[i] for i in batch}) == 1
    together = _proba(predictor, texts)
    alone = torch.cat([_proba(predictor, [text]) for text in texts])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)


def test_classify_review_with_the_books_arguments(from_run, tokenizer, saved_config):
    model = from_run.model
    for text in TEXTS:
        assert classify_review(text, model, tokenizer, "cpu") == from_run.classify([text])[0].label
    # the book passes max_length (and pads to it); a model without run_info gives class ids
    bare = GPTClassifier(GPTModel(saved_config), 2, pooling="last", head_seed=3).eval()
    for text in TEXTS:
        ids = tokenizer.encode(text)[:20]
        padded = torch.tensor([ids + [50256] * (20 - len(ids))])
        with torch.no_grad():
            expected = str(int(bare(padded).argmax(-1)))
        assert classify_review(text, bare, tokenizer, "cpu", max_length=20) == expected


def test_bf16_runs_keep_bf16_linear_weights_and_give_identical_probabilities(
    saved_run, tokenizer_dir, tokenizer
):
    from gpt_classifier.inference import load_run

    texts = ["WINNER!! Claim your prize now", "see you at 5?", "ok"]
    cached = TextClassifier.from_run(
        saved_run, device="cpu", tokenizer_dir=tokenizer_dir, precision="bf16"
    )
    linear = [m for m in cached.model.modules() if isinstance(m, torch.nn.Linear)]
    assert linear and all(m.weight.dtype == torch.bfloat16 for m in linear)
    run = load_run(saved_run)  # a model of its own, float32 weights cast at every pass
    plain = TextClassifier(run.model, tokenizer, run.info, "cpu", precision="bf16")
    assert torch.equal(_proba(cached, texts), _proba(plain, texts))
    fp32 = TextClassifier.from_run(
        saved_run, device="cpu", tokenizer_dir=tokenizer_dir, precision="fp32"
    )
    assert all(p.dtype == torch.float32 for p in fp32.model.parameters())


def test_one_text_gives_one_prediction_and_a_list_a_list(tiny_config, tokenizer):
    predictor = _predictor(tiny_config, tokenizer)
    one = predictor.classify(TEXTS[0])
    assert one == predictor.classify([TEXTS[0]])[0] == predictor(TEXTS[0])
    assert predictor.predict(TEXTS) == [p.label for p in predictor.classify(TEXTS)]
    with pytest.raises(GPTClassifierError, match="list of strings"):
        _proba(predictor, "hello")


def test_the_package_root_gives_the_classifier_and_runs_as_a_module():
    import subprocess
    import sys

    import gpt_classifier

    assert gpt_classifier.TextClassifier is TextClassifier
    out = subprocess.run(
        [sys.executable, "-m", "gpt_classifier", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and gpt_classifier.__version__ in out.stdout
