"""The book's loss and accuracy functions on our classifier and on the book's plain GPTModel."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gpt_classifier.classifier import GPTClassifier
from gpt_classifier.data.encoding import Batch, collate
from gpt_classifier.evaluation.predictions import classifier_logits, predict_loader, unpack_batch
from gpt_classifier.model import GPTModel
from gpt_classifier.training import (
    calc_accuracy_loader,
    calc_loss_batch,
    calc_loss_loader,
    evaluate_model,
)

LN3 = math.log(3.0)


class KnownLogits(nn.Module):
    """Logits looked up from each row's first token: token 0 -> p = (.75, .25), token 1 ->
    (.25, .75), token 2 -> (.1, .9). ``lengths`` are recorded to check they are passed on."""

    TABLE = torch.tensor([[LN3, 0.0], [0.0, LN3], [0.0, math.log(9.0)]])

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.seen_lengths: list[torch.Tensor | None] = []

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        self.seen_lengths.append(lengths)
        return self.TABLE[inputs[:, 0]] + 0.0 * self.dummy


def _p(token: int, target: int) -> float:
    return {0: (0.75, 0.25), 1: (0.25, 0.75), 2: (0.1, 0.9)}[token][target]


def _book_batch(first_tokens: list[int], targets: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    inputs = torch.tensor(first_tokens)[:, None].repeat(1, 3)
    return inputs, torch.tensor(targets)


# Three book-style batches; their mean losses are known by hand.
BATCHES = [
    _book_batch([1, 1], [1, 0]),  # -(ln .75 + ln .25) / 2, one of two right
    _book_batch([0, 2], [0, 1]),  # -(ln .75 + ln .9) / 2, both right
    _book_batch([2], [0]),  # -ln .1, wrong
]
BATCH_LOSSES = [
    -(math.log(0.75) + math.log(0.25)) / 2,
    -(math.log(0.75) + math.log(0.9)) / 2,
    -math.log(0.1),
]


def test_calc_loss_batch_hand_checked():
    model = KnownLogits()
    for (inputs, targets), expected in zip(BATCHES, BATCH_LOSSES, strict=True):
        loss = calc_loss_batch(inputs, targets, model, "cpu")
        assert loss.item() == pytest.approx(expected, rel=1e-6)
        assert loss.requires_grad  # the training loop backpropagates through it


@pytest.mark.parametrize(
    ("num_batches", "expected"),
    [
        (None, sum(BATCH_LOSSES) / 3),
        (1, BATCH_LOSSES[0]),
        (2, (BATCH_LOSSES[0] + BATCH_LOSSES[1]) / 2),
        (10, sum(BATCH_LOSSES) / 3),  # more than the loader has: all of them
    ],
)
def test_calc_loss_loader_mean_of_batch_losses(num_batches, expected):
    assert calc_loss_loader(BATCHES, KnownLogits(), "cpu", num_batches) == pytest.approx(
        expected, rel=1e-6
    )


def test_calc_loss_loader_empty_is_nan():
    assert math.isnan(calc_loss_loader([], KnownLogits(), "cpu"))
    assert math.isnan(calc_loss_loader(BATCHES, KnownLogits(), "cpu", num_batches=0))


@pytest.mark.parametrize(
    ("num_batches", "expected"),
    [(None, 3 / 5), (1, 1 / 2), (2, 3 / 4), (3, 3 / 5), (99, 3 / 5)],
)
def test_calc_accuracy_loader_fraction_of_one(num_batches, expected):
    accuracy = calc_accuracy_loader(BATCHES, KnownLogits(), "cpu", num_batches)
    assert accuracy == pytest.approx(expected)


def test_calc_accuracy_loader_empty_is_nan():
    assert math.isnan(calc_accuracy_loader([], KnownLogits(), "cpu"))


def test_our_four_field_batch_passes_lengths():
    model = KnownLogits()
    batch = Batch(
        input_ids=torch.tensor([[1, 5, 50256], [0, 7, 8]]),
        labels=torch.tensor([1, 0]),
        lengths=torch.tensor([2, 3]),
        indices=torch.tensor([4, 9]),
    )
    assert calc_loss_loader([batch], model, "cpu") == pytest.approx(-math.log(0.75), rel=1e-6)
    assert calc_accuracy_loader([batch], model, "cpu") == 1.0
    assert all(torch.equal(seen, batch.lengths) for seen in model.seen_lengths)
    inputs, targets, lengths, _ = unpack_batch(batch)
    assert inputs is batch.input_ids and targets is batch.labels and lengths is batch.lengths
    assert unpack_batch(BATCHES[0])[2] is None


# --- a real GPTClassifier and the book's GPTModel ---------------------------------------------


def _constant_head(head: nn.Linear, bias: list[float]) -> None:
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor(bias))


def _book_model(config) -> GPTModel:
    """The book's recipe: a plain GPTModel whose out_head becomes Linear(emb_dim, 2)."""
    torch.manual_seed(1)
    model = GPTModel(config)
    model.out_head = nn.Linear(config.emb_dim, 2)
    return model.eval()


def _classifier(config, pooling: str = "last-real") -> GPTClassifier:
    torch.manual_seed(1)
    return GPTClassifier(GPTModel(config), 2, pooling=pooling).eval()


@pytest.mark.parametrize("kind", ["book", "ours"])
def test_known_predictions_from_a_constant_head(tiny_config, kind):
    model = _book_model(tiny_config) if kind == "book" else _classifier(tiny_config)
    head = model.out_head if kind == "book" else model.gpt.out_head
    _constant_head(head, [0.0, LN3])  # every text: p(class 1) = 0.75
    inputs = torch.randint(0, 100, (4, 5), generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([1, 1, 1, 0])
    loss = calc_loss_batch(inputs, targets, model, "cpu")
    expected = -(3 * math.log(0.75) + math.log(0.25)) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert calc_accuracy_loader([(inputs, targets)], model, "cpu") == 0.75


def test_book_model_reads_position_minus_one(tiny_config):
    model = _book_model(tiny_config)
    gen = torch.Generator().manual_seed(2)
    inputs = torch.randint(0, 100, (3, 6), generator=gen)
    targets = torch.tensor([0, 1, 1])
    logits = classifier_logits(model, inputs)
    with torch.no_grad():
        full = model(inputs)
    assert logits.shape == (3, 2)
    assert torch.equal(logits, full[:, -1, :])
    assert not torch.allclose(logits, full[:, 0, :])
    loss = calc_loss_batch(inputs, targets, model, "cpu")
    assert loss.item() == pytest.approx(F.cross_entropy(full[:, -1, :], targets).item(), rel=1e-6)
    # lengths are ignored for the book's model (it always reads position -1)
    same = calc_loss_batch(inputs, targets, model, "cpu", lengths=torch.tensor([1, 2, 3]))
    assert same.item() == pytest.approx(loss.item(), rel=1e-6)


def test_classifier_with_last_pooling_matches_the_book_model(tiny_config):
    """GPTClassifier(pooling='last') on unpadded input = the book's model(x)[:, -1, :]."""
    ours = _classifier(tiny_config, "last")
    book = GPTModel(tiny_config).eval()
    book.out_head = nn.Linear(tiny_config.emb_dim, 2)
    book.load_state_dict(ours.gpt.state_dict())
    gen = torch.Generator().manual_seed(3)
    inputs = torch.randint(0, 100, (4, 7), generator=gen)
    targets = torch.tensor([0, 1, 0, 1])
    assert calc_loss_loader([(inputs, targets)], ours, "cpu") == pytest.approx(
        calc_loss_loader([(inputs, targets)], book, "cpu"), rel=1e-5
    )


def test_last_real_pooling_with_padded_batches_equals_unpadded_rows(tiny_config):
    model = _classifier(tiny_config, "last-real")
    gen = torch.Generator().manual_seed(4)
    rows = [torch.randint(0, 100, (n,), generator=gen).tolist() for n in (5, 2, 7)]
    targets = [1, 0, 1]
    items = [(ids, label, i) for i, (ids, label) in enumerate(zip(rows, targets, strict=True))]
    batch = collate(items, pad_token_id=0)  # any pad id: last-real pooling never reads it
    assert batch.input_ids.shape == (3, 7)
    loss = calc_loss_batch(batch.input_ids, batch.labels, model, "cpu", batch.lengths)
    with torch.no_grad():
        one_by_one = torch.cat([model(torch.tensor([ids])) for ids in rows])
    expected = F.cross_entropy(one_by_one, torch.tensor(targets))
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    # the book's 2-tuple of the same padded batch reads the padding instead
    padded = calc_loss_batch(batch.input_ids, batch.labels, model, "cpu")
    assert padded.item() != pytest.approx(expected.item(), abs=1e-5)


# --- evaluate_model -------------------------------------------------------------------------


def test_evaluate_model_uses_eval_iter_batches_and_restores_mode():
    model = KnownLogits()
    val = [BATCHES[2], BATCHES[0]]
    model.train()
    train_loss, val_loss = evaluate_model(model, BATCHES, val, "cpu", eval_iter=2)
    assert train_loss == pytest.approx((BATCH_LOSSES[0] + BATCH_LOSSES[1]) / 2, rel=1e-6)
    assert val_loss == pytest.approx((BATCH_LOSSES[2] + BATCH_LOSSES[0]) / 2, rel=1e-6)
    assert model.training
    model.eval()
    evaluate_model(model, BATCHES, val, "cpu", eval_iter=1)
    assert not model.training


def test_evaluate_model_runs_in_eval_mode_without_grad(tiny_config):
    """Dropout is off during evaluation: two calls on a dropout model agree."""
    torch.manual_seed(5)
    model = GPTClassifier(GPTModel(tiny_config.replace(drop_rate=0.5)), 2).train()
    gen = torch.Generator().manual_seed(5)
    batch = (torch.randint(0, 100, (4, 6), generator=gen), torch.tensor([0, 1, 0, 1]))
    first = evaluate_model(model, [batch], [batch], "cpu", eval_iter=1)
    second = evaluate_model(model, [batch], [batch], "cpu", eval_iter=1)
    assert first == second
    assert first[0] == first[1]
    assert model.training


# --- predict_loader -------------------------------------------------------------------------


def test_predict_loader_mean_is_per_example(tiny_config):
    model = _classifier(tiny_config, "last-real")
    gen = torch.Generator().manual_seed(6)
    rows = [torch.randint(0, 100, (n,), generator=gen).tolist() for n in range(1, 11)]
    labels = [i % 2 for i in range(10)]
    items = [(ids, label, i) for i, (ids, label) in enumerate(zip(rows, labels, strict=True))]
    loader = [collate(items[a:b], pad_token_id=0) for a, b in ((0, 4), (4, 8), (8, 10))]

    targets, probabilities, loss = predict_loader(loader, model, "cpu")

    with torch.no_grad():
        logits = torch.cat([model(torch.tensor([ids])) for ids in rows])
    assert torch.equal(targets, torch.tensor(labels))
    assert probabilities.shape == (10, 2)
    assert torch.allclose(probabilities.sum(-1), torch.ones(10))
    assert torch.allclose(probabilities, torch.softmax(logits, -1), atol=1e-5)
    assert loss == pytest.approx(F.cross_entropy(logits, torch.tensor(labels)).item(), abs=1e-5)
    # the book's mean of batch means weights the small last batch too much
    assert calc_loss_loader(loader, model, "cpu") != pytest.approx(loss, abs=1e-5)


def test_predict_loader_hand_checked_and_empty():
    targets, probabilities, loss = predict_loader(BATCHES, KnownLogits(), "cpu")
    assert targets.tolist() == [1, 0, 0, 1, 0]
    expected = -sum(
        math.log(_p(token, target)) for token, target in [(1, 1), (1, 0), (0, 0), (2, 1), (2, 0)]
    )
    assert loss == pytest.approx(expected / 5, rel=1e-6)
    assert probabilities[4].tolist() == pytest.approx([0.1, 0.9], rel=1e-6)
    empty_targets, empty_probs, empty_loss = predict_loader([], KnownLogits(), "cpu")
    assert empty_targets.numel() == 0 and empty_probs.numel() == 0 and math.isnan(empty_loss)


def test_class_weights_weight_each_example_by_its_class():
    inputs, targets = _book_batch([1, 1, 2], [1, 0, 0])
    weights = torch.tensor([0.5, 2.0])  # class 0 weighs 0.5, class 1 weighs 2
    loss = calc_loss_batch(inputs, targets, KnownLogits(), "cpu", class_weights=weights)
    by_hand = (2.0 * -math.log(0.75) + 0.5 * -math.log(0.25) + 0.5 * -math.log(0.1)) / 3.0
    assert loss.item() == pytest.approx(by_hand, rel=1e-6)
    plain = calc_loss_batch(inputs, targets, KnownLogits(), "cpu")
    assert plain.item() == pytest.approx(-(math.log(0.75 * 0.25 * 0.1)) / 3, rel=1e-6)
