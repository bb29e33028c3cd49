"""The book's zero-shot baseline: prompt cut to the context, answers parsed and scored."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from gpt_classifier.data import Record
from gpt_classifier.errors import GPTClassifierError
from gpt_classifier.evaluation.predictions import parse_answer, zero_shot

CONTEXT = 16


class AlwaysSays(nn.Module):
    """Answers ``token`` at every step and records the inputs it was given."""

    def __init__(self, token: int, vocab: int = 50257) -> None:
        super().__init__()
        self.cfg = SimpleNamespace(context_length=CONTEXT)
        self.token, self.vocab = token, vocab
        self.inputs: list[list[int]] = []

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        self.inputs.append(idx[0].tolist())
        logits = torch.zeros(*idx.shape, self.vocab)
        logits[..., self.token] = 1.0
        return logits


def _records(*labels: str) -> list[Record]:
    return [Record(f"text {i}", label, "data.csv", i + 2) for i, label in enumerate(labels)]


def test_answers_are_scored_against_the_labels(tokenizer):
    yes = tokenizer.encode(" yes")[0]
    model = AlwaysSays(yes)
    result = zero_shot(model, tokenizer, _records("spam", "ham", "spam"), "spam", "ham")
    assert result.accuracy == pytest.approx(2 / 3)
    assert result.answers == {"yes": 3}
    assert [e["predicted"] for e in result.examples] == ["spam", "spam", "spam"]
    assert result.examples[0]["generated"] == " yes" * 5


def test_a_long_prompt_keeps_its_end_and_leaves_room_for_the_answer(tokenizer):
    model = AlwaysSays(tokenizer.encode(" no")[0])
    prompt = "word " * 40 + "{text} end of question"
    result = zero_shot(
        model, tokenizer, _records("ham"), "spam", "ham", prompt=prompt, max_new_tokens=3
    )
    asked = tokenizer.encode(prompt.format(text="text 0"))
    assert model.inputs[0] == asked[-(CONTEXT - 3) :]  # 13 tokens, ending with the question
    assert [len(ids) for ids in model.inputs] == [13, 14, 15]
    assert result.accuracy == 1.0 and result.answers == {"no": 1}


@pytest.mark.parametrize("max_new_tokens", [0, CONTEXT, CONTEXT + 5])
def test_max_new_tokens_must_leave_room_for_the_prompt(tokenizer, max_new_tokens):
    model = AlwaysSays(0)
    with pytest.raises(GPTClassifierError, match=f"between 1 and {CONTEXT - 1}"):
        zero_shot(model, tokenizer, _records("ham"), "spam", "ham", max_new_tokens=max_new_tokens)
    assert model.inputs == []


def test_parse_answer():
    assert parse_answer(" Yes, it is") == "yes"
    assert parse_answer("no.") == "no"
    assert parse_answer(" nothing here") is None
