"""GPTClassifier: the new head, its seeded init, forward shapes, and the cache entry point."""

from __future__ import annotations

import pytest
import torch

from gpt_classifier.classifier import POOLINGS, GPTClassifier, Pooling
from gpt_classifier.errors import GPTClassifierError
from gpt_classifier.model import GPTModel


def _tokens(batch: int = 3, seq: int = 7) -> torch.Tensor:
    return torch.randint(0, 50257, (batch, seq), generator=torch.Generator().manual_seed(1))


def test_head_replaces_out_head_with_a_biased_linear(tiny_config):
    gpt = GPTModel(tiny_config)
    model = GPTClassifier(gpt, num_classes=4)
    assert model.gpt is gpt
    head = model.gpt.out_head
    assert isinstance(head, torch.nn.Linear)
    assert (head.in_features, head.out_features) == (tiny_config.emb_dim, 4)
    assert head.bias is not None
    assert model.num_classes == 4 and model.pooling is Pooling.LAST_REAL
    # the book's module tree stays visible
    for name in (
        "gpt.tok_emb.weight",
        "gpt.trf_blocks.0.att.W_query.weight",
        "gpt.final_norm.scale",
    ):
        assert name in dict(model.named_parameters())


def test_head_init_is_reproducible_and_leaves_the_global_rng_alone(tiny_config):
    gpt_a, gpt_b, gpt_c = GPTModel(tiny_config), GPTModel(tiny_config), GPTModel(tiny_config)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    head_a = GPTClassifier(gpt_a, 2, head_seed=7).gpt.out_head
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(999)  # a different global state gives the same head
    head_b = GPTClassifier(gpt_b, 2, head_seed=7).gpt.out_head
    head_c = GPTClassifier(gpt_c, 2, head_seed=8).gpt.out_head
    assert torch.equal(head_a.weight, head_b.weight) and torch.equal(head_a.bias, head_b.bias)
    assert not torch.equal(head_a.weight, head_c.weight)
    # PyTorch's default Linear init range
    bound = 1 / tiny_config.emb_dim**0.5
    assert head_a.weight.abs().max() <= bound and head_a.bias.abs().max() <= bound


@pytest.mark.parametrize("num_classes", [1, 0, -3, 2.0, True])
def test_num_classes_must_be_at_least_two(tiny_config, num_classes):
    with pytest.raises(GPTClassifierError, match="at least 2 classes"):
        GPTClassifier(GPTModel(tiny_config), num_classes=num_classes)


def test_unknown_pooling_raises(tiny_config):
    with pytest.raises(GPTClassifierError, match="valid poolings: last, first, last-real, mean"):
        GPTClassifier(GPTModel(tiny_config), 2, pooling="cls")


def test_forward_shapes(tiny_config):
    model = GPTClassifier(GPTModel(tiny_config), num_classes=3).eval()
    x = _tokens(4, 9)
    lengths = torch.tensor([9, 3, 1, 5])
    assert model(x).shape == (4, 3)
    assert model(x, lengths).shape == (4, 3)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_pooling_before_the_head_equals_pooling_the_token_logits(tiny_config, pooling):
    model = GPTClassifier(GPTModel(tiny_config), num_classes=3, pooling=pooling).eval()
    x = _tokens(3, 6)
    lengths = torch.tensor([6, 2, 4])
    with torch.no_grad():
        token_logits = model.gpt(x)  # (B, T, C), the book's model(x)
        got = model(x, lengths)
    rows = torch.arange(3)
    expected = {
        "last": token_logits[:, -1],
        "first": token_logits[:, 0],
        "last-real": token_logits[rows, lengths - 1],
        "mean": torch.stack([token_logits[i, : lengths[i]].mean(0) for i in range(3)]),
    }[pooling]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_forward_from_hidden_matches_forward_at_every_split(tiny_config, pooling):
    model = GPTClassifier(GPTModel(tiny_config), num_classes=2, pooling=pooling).eval()
    x = _tokens(3, 8)
    lengths = torch.tensor([8, 5, 2])
    with torch.no_grad():
        expected = model(x, lengths)
        for k in range(tiny_config.n_layers + 1):
            hidden = model.gpt.hidden_states(x, k)
            got = model.forward_from_hidden(hidden, k, lengths)
            torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


def test_forward_from_hidden_validates_start_block(tiny_config):
    model = GPTClassifier(GPTModel(tiny_config), num_classes=2)
    hidden = torch.zeros(1, 3, tiny_config.emb_dim)
    for bad in (-1, tiny_config.n_layers + 1):
        with pytest.raises(GPTClassifierError, match="start_block"):
            model.forward_from_hidden(hidden, bad)
    with pytest.raises(GPTClassifierError, match="hidden states"):
        model.forward_from_hidden(torch.zeros(1, 3, tiny_config.emb_dim + 1), 1)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_the_fast_path_equals_the_books_path_in_logits_and_gradients(tiny_config, pooling):
    """``forward`` (last block at the pooled positions) against ``forward(fast=False)`` (every
    block at every position, as the book reads ``model(x)[:, -1, :]``)."""
    torch.manual_seed(0)
    model = GPTClassifier(GPTModel(tiny_config), num_classes=3, pooling=pooling)
    with torch.no_grad():  # non-zero biases, so every term of the fast path is exercised
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    x = _tokens(4, 9)
    lengths = torch.tensor([9, 3, 1, 5])
    params = [p for p in model.parameters() if p.requires_grad]
    results = {}
    for fast in (True, False):
        logits = model(x, lengths, fast=fast)
        grads = torch.autograd.grad(logits.square().sum(), params, allow_unused=True)
        results[fast] = logits, grads
    torch.testing.assert_close(results[True][0], results[False][0], atol=1e-5, rtol=1e-5)
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    for name, got, expected in zip(names, results[True][1], results[False][1], strict=True):
        if expected is None:
            assert got is None or not got.any(), name
            continue
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4, msg=name)
