"""pool_hidden: which positions each strategy reads, and why ``last`` is fragile with padding."""

from __future__ import annotations

import pytest
import torch

from gpt_classifier.classifier import (
    POOLINGS,
    GPTClassifier,
    Pooling,
    pool_hidden,
    validate_pooling,
)
from gpt_classifier.classifier.pooling import padding_reads
from gpt_classifier.config import EOT_TOKEN_ID
from gpt_classifier.errors import GPTClassifierError
from gpt_classifier.model import GPTModel


def _positions(batch: int, seq: int) -> torch.Tensor:
    """Hidden states whose value is the position index: (B, T, 2) with [t, 10 * b]."""
    t = torch.arange(seq, dtype=torch.float32)[None, :].expand(batch, seq)
    b = torch.arange(batch, dtype=torch.float32)[:, None].expand(batch, seq) * 10
    return torch.stack([t, b], dim=-1)


def test_each_pooling_reads_the_right_positions():
    hidden = _positions(3, 6)
    lengths = torch.tensor([6, 2, 4])
    assert pool_hidden(hidden, lengths, "last")[:, 0].tolist() == [5, 5, 5]
    assert pool_hidden(hidden, lengths, "first")[:, 0].tolist() == [0, 0, 0]
    assert pool_hidden(hidden, lengths, "last-real")[:, 0].tolist() == [5, 1, 3]
    # mean of 0..L-1 is (L-1)/2: padding positions do not count
    assert pool_hidden(hidden, lengths, "mean")[:, 0].tolist() == [2.5, 0.5, 1.5]
    # rows are not mixed up
    for pooling in POOLINGS:
        assert pool_hidden(hidden, lengths, pooling)[:, 1].tolist() == [0, 10, 20]


def test_no_lengths_means_every_position_is_real():
    hidden = torch.randn(2, 5, 4)
    full = torch.tensor([5, 5])
    for pooling in POOLINGS:
        torch.testing.assert_close(
            pool_hidden(hidden, None, pooling), pool_hidden(hidden, full, pooling)
        )
    torch.testing.assert_close(pool_hidden(hidden, None, "last-real"), hidden[:, -1])


def test_mean_ignores_padding_values():
    hidden = torch.randn(2, 5, 3)
    lengths = torch.tensor([3, 5])
    noisy = hidden.clone()
    noisy[0, 3:] = 1e6
    torch.testing.assert_close(
        pool_hidden(noisy, lengths, "mean"), pool_hidden(hidden, lengths, "mean")
    )
    torch.testing.assert_close(pool_hidden(hidden, lengths, "mean")[0], hidden[0, :3].mean(0))


def test_invalid_pooling_and_lengths_raise():
    hidden = torch.randn(2, 4, 3)
    with pytest.raises(GPTClassifierError, match="last, first, last-real, mean"):
        validate_pooling("max")
    for bad in (torch.tensor([0, 2]), torch.tensor([5, 2]), torch.tensor([-1, 2])):
        with pytest.raises(GPTClassifierError, match="between 1 and the sequence length 4"):
            pool_hidden(hidden, bad, "last-real")
    with pytest.raises(GPTClassifierError, match="shape"):
        pool_hidden(hidden, torch.tensor([1, 2, 3]), "mean")
    with pytest.raises(GPTClassifierError, match="integers"):
        pool_hidden(hidden, torch.tensor([1.0, 2.0]), "mean")


@pytest.fixture
def classifier(tiny_config) -> GPTClassifier:
    return GPTClassifier(GPTModel(tiny_config), num_classes=3).eval()


def test_last_real_uses_lengths_not_the_pad_id(classifier):
    # The text itself contains <|endoftext|> (also the pad id) in the middle and at its end.
    text = torch.tensor([[15496, EOT_TOKEN_ID, 995, 11, EOT_TOKEN_ID]])
    padded = torch.cat([text, torch.full((1, 3), EOT_TOKEN_ID)], dim=1)
    lengths = torch.tensor([5])
    with torch.no_grad():
        expected = classifier.gpt(text)[:, 4]  # the book: model(x)[:, -1, :]
        got = classifier(padded, lengths)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_padded_and_unpadded_agree_under_last_real(classifier):
    texts = [[15496, 995, 11, 314], [40, 716], [464, EOT_TOKEN_ID, 3290]]
    width = max(map(len, texts))
    padded = torch.tensor([t + [EOT_TOKEN_ID] * (width - len(t)) for t in texts])
    lengths = torch.tensor([len(t) for t in texts])
    with torch.no_grad():
        batch = classifier(padded, lengths)
        one_by_one = torch.cat([classifier(torch.tensor([t])) for t in texts])
    # causal mask: the padding to the right of a token cannot change its hidden state
    torch.testing.assert_close(batch, one_by_one, atol=1e-5, rtol=1e-5)


def test_last_on_right_padded_input_reads_padding(classifier):
    """The book's ``[:, -1, :]`` reads a pad token when a text is shorter than the batch."""
    classifier.pooling = Pooling.LAST
    text = torch.tensor([[40, 716, 257]])
    padded = torch.cat([text, torch.full((1, 4), EOT_TOKEN_ID)], dim=1)
    with torch.no_grad():
        unpadded = classifier(text)
        padded_logits = classifier(padded, torch.tensor([3]))
    assert not torch.allclose(unpadded, padded_logits, atol=1e-4)


def test_pooling_is_parsed_once_and_keeps_its_name():
    import json

    assert validate_pooling("last-real") is Pooling.LAST_REAL
    assert validate_pooling(Pooling.MEAN) is Pooling.MEAN
    assert str(Pooling.LAST_REAL) == f"{Pooling.LAST_REAL}" == "last-real"
    assert json.dumps({"pooling": Pooling.LAST_REAL}) == '{"pooling": "last-real"}'
    assert POOLINGS == ("last", "first", "last-real", "mean")


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("pad_length", [None, 32])
def test_padding_reads_is_the_one_rule_for_padding(tiny_config, pooling, causal, pad_length):
    reads = padding_reads(Pooling(pooling), causal, pad_length)
    per_batch = pad_length is None
    assert reads.pooled == (per_batch and pooling == "last")
    assert reads.attended == (per_batch and not causal)
    assert (reads.why is None) == (not reads.pooled and not reads.attended)
    model = GPTClassifier(GPTModel(tiny_config), 2, pooling=pooling)
    if not causal:
        model.gpt.disable_causal_mask()
    assert model.can_pack == (not any(padding_reads(Pooling(pooling), causal, None)))
