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
    together = predictor.predict_proba(TEXTS, batch_size=4)
    alone = torch.cat([predictor.predict_proba([text]) for text in TEXTS])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(together.sum(-1), torch.ones(len(TEXTS)))


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
    assert predictor.predict_proba([long_text, "short"]).shape == (2, 2)
    assert predictor.truncated == 1
    cut = tokenizer.decode(tokenizer.encode(long_text)[:8])
    torch.testing.assert_close(predictor.predict_proba([long_text]), predictor.predict_proba([cut]))


def test_classify_review_matches_the_predictor(tiny_config, tokenizer):
    for pooling, pad_length in [("last-real", None), ("last", 24)]:
        predictor = _predictor(tiny_config, tokenizer, pooling, pad_length)
        expected = [p.label for p in predictor.classify(TEXTS)]
        got = [classify_review(t, predictor.model, tokenizer, "cpu") for t in TEXTS]
        assert got == expected
