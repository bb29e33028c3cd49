"""The book's generation functions: greedy, context cropping, eos, top-k and temperature."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gpt_classifier.config import GPTConfig
from gpt_classifier.generation import (
    generate,
    generate_text_simple,
    text_to_token_ids,
    token_ids_to_text,
)
from gpt_classifier.weights import build_model

VOCAB = 10


class NextTokenModel(nn.Module):
    """Predicts ``last token + 1`` (mod VOCAB) and records the lengths it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.seen_lengths: list[int] = []

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        self.seen_lengths.append(idx.shape[1])
        logits = torch.zeros(*idx.shape, VOCAB)
        logits.scatter_(2, ((idx + 1) % VOCAB).unsqueeze(-1), 5.0)
        return logits


@pytest.fixture(scope="module")
def tiny_model():
    config = GPTConfig(context_length=128, emb_dim=32, n_heads=4, n_layers=2)
    return build_model(config, init="random", seed=1)


def test_greedy_shape_and_determinism(tiny_model):
    idx = torch.randint(0, 50257, (2, 5))
    out = generate_text_simple(tiny_model, idx, max_new_tokens=6, context_size=128)
    assert out.shape == (2, 11)
    assert torch.equal(out[:, :5], idx)  # the prompt is kept
    again = generate_text_simple(tiny_model, idx, max_new_tokens=6, context_size=128)
    assert torch.equal(out, again)


def test_greedy_follows_argmax():
    out = generate_text_simple(NextTokenModel(), torch.tensor([[3]]), 4, context_size=8)
    assert out.tolist() == [[3, 4, 5, 6, 7]]


def test_context_is_cropped():
    model = NextTokenModel()
    generate_text_simple(model, torch.tensor([[0, 1, 2, 3, 4, 5]]), 3, context_size=4)
    assert model.seen_lengths == [4, 4, 4]


def test_stops_at_eos_without_appending_it():
    out = generate(NextTokenModel(), torch.tensor([[3]]), 10, context_size=8, eos_id=6)
    assert out.tolist() == [[3, 4, 5]]


def test_batch_rows_that_finished_are_padded_with_eos():
    idx = torch.tensor([[4], [1]])
    out = generate(NextTokenModel(), idx, max_new_tokens=10, context_size=8, eos_id=6)
    assert out.tolist() == [[4, 5, 6, 6, 6], [1, 2, 3, 4, 5]]


def test_top_k_1_equals_greedy(tiny_model):
    idx = torch.randint(0, 50257, (2, 4))
    greedy = generate(tiny_model, idx, 8, context_size=128)
    torch.manual_seed(5)
    top1 = generate(tiny_model, idx, 8, context_size=128, temperature=1.5, top_k=1)
    assert torch.equal(greedy, top1)


def test_temperature_sampling_is_seeded(tiny_model):
    idx = torch.randint(0, 50257, (1, 4))
    runs = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        runs.append(generate(tiny_model, idx, 12, context_size=128, temperature=5.0, top_k=50))
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_generation_restores_training_mode(tiny_model):
    tiny_model.train()
    try:
        generate(tiny_model, torch.tensor([[1, 2]]), 2, context_size=128)
        assert tiny_model.training
    finally:
        tiny_model.eval()


def test_invalid_arguments():
    model = NextTokenModel()
    with pytest.raises(ValueError, match="n_tokens >= 1"):
        generate(model, torch.zeros(1, 0, dtype=torch.long), 3, context_size=4)
    with pytest.raises(ValueError, match="temperature"):
        generate(model, torch.tensor([[1]]), 3, context_size=4, temperature=-1.0)
    with pytest.raises(ValueError, match="top_k"):
        generate(model, torch.tensor([[1]]), 3, context_size=4, top_k=0)


def test_text_round_trip(tokenizer):
    ids = text_to_token_ids("Every effort moves you<|endoftext|>", tokenizer)
    assert ids.shape == (1, 5) and ids.dtype == torch.long
    assert ids[0, -1].item() == 50256  # the special token is allowed, as in the book
    assert token_ids_to_text(ids, tokenizer) == "Every effort moves you<|endoftext|>"
    assert token_ids_to_text([15496, 11], tokenizer) == "Hello,"
