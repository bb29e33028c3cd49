"""The book's loss/accuracy functions and the training loop around them."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from gpt_classifier.classifier import GPTClassifier, apply_trainable
from gpt_classifier.data.encoding import Batch, collate
from gpt_classifier.evaluation.predictions import predict_loader
from gpt_classifier.model import GPTModel
from gpt_classifier.training import (
    TrainSettings,
    calc_accuracy_loader,
    calc_loss_batch,
    calc_loss_loader,
    evaluate_model,
    train_classifier,
    train_classifier_simple,
)

# Small models (conftest's tiny_config) on hand-made batches: steps can be replayed by hand and
# the weights scripted, so the checks are exact.


def _small_model(config, trainable: str = "last-block", seed: int = 0) -> GPTClassifier:
    torch.manual_seed(seed)
    model = GPTClassifier(GPTModel(config), 2, head_seed=seed)
    apply_trainable(model, trainable)
    return model


def _examples(n: int, seed: int = 0, width: int = 8) -> list[tuple[list[int], int, int]]:
    """``n`` examples of 3..width tokens, label = whether token 7 occurs (learnable)."""
    gen = torch.Generator().manual_seed(seed)
    items = []
    for index in range(n):
        length = int(torch.randint(3, width + 1, (1,), generator=gen))
        ids = torch.randint(8, 100, (length,), generator=gen).tolist()
        label = index % 2
        if label:
            ids[int(torch.randint(0, length, (1,), generator=gen))] = 7
        items.append((ids, label, index))
    return items


def _batches(items, batch_size: int, pad_length: int | None = None) -> list[Batch]:
    return [
        collate(items[i : i + batch_size], pad_length=pad_length, pad_token_id=0)
        for i in range(0, len(items), batch_size)
    ]


def _sgd(model, lr: float = 0.1) -> torch.optim.SGD:
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)


def _run(model, train, val, optimizer, **settings):
    return train_classifier(
        model,
        train,
        val,
        optimizer,
        "cpu",
        TrainSettings(**settings),
        progress=False,
        log=lambda _message: None,
    )


def _params(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


class _InterruptingLoader:
    def __init__(self, loader, after: int) -> None:
        self.loader, self.after = loader, after

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for i, batch in enumerate(self.loader):
            if i == self.after:
                raise KeyboardInterrupt
            yield batch


# --- the book's loss and accuracy functions --------------------------------------------------


def test_book_model_reads_the_last_position(tiny_config):
    """The book's plain GPTModel with a 2-way out_head: logits of position -1."""
    gpt = GPTModel(tiny_config)
    gpt.out_head = nn.Linear(tiny_config.emb_dim, 2)
    inputs = torch.randint(0, 100, (4, 6))
    targets = torch.tensor([0, 1, 1, 0])
    expected = nn.functional.cross_entropy(gpt(inputs)[:, -1, :], targets)
    torch.testing.assert_close(calc_loss_batch(inputs, targets, gpt, "cpu"), expected)
    book_loader = [(inputs, targets), (inputs, targets)]  # the book's 2-tuples
    assert calc_loss_loader(book_loader, gpt, "cpu") == pytest.approx(expected.item(), rel=1e-6)
    predicted = gpt(inputs)[:, -1, :].argmax(-1)
    accuracy = (predicted == targets).float().mean().item()
    assert calc_accuracy_loader(book_loader, gpt, "cpu", num_batches=1) == pytest.approx(accuracy)


def test_loader_functions_respect_num_batches_and_restore_mode(tiny_config):
    model = _small_model(tiny_config)
    loader = _batches(_examples(40), 8)
    losses = [calc_loss_batch(b[0], b[1], model, "cpu", b[2]).item() for b in loader]
    assert calc_loss_loader(loader, model, "cpu", num_batches=2) == pytest.approx(
        sum(losses[:2]) / 2, rel=1e-5
    )
    assert calc_loss_loader(loader, model, "cpu") == pytest.approx(
        sum(losses) / len(losses), rel=1e-5
    )
    model.train()
    train_loss, val_loss = evaluate_model(model, loader, loader, "cpu", eval_iter=1)
    assert model.training and train_loss == pytest.approx(losses[0], rel=1e-5)
    targets, probabilities, mean_loss = predict_loader(loader, model, "cpu")
    picked = probabilities[torch.arange(len(targets)), targets]
    assert mean_loss == pytest.approx(-picked.log().mean().item(), rel=1e-4)
    correct = (probabilities.argmax(-1) == targets).sum().item()
    assert calc_accuracy_loader(loader, model, "cpu") == correct / 40
    first = (probabilities[:8].argmax(-1) == targets[:8]).sum().item()
    assert calc_accuracy_loader(loader, model, "cpu", num_batches=1) == first / 8


def test_gradient_accumulation_matches_one_large_batch(tiny_config):
    items = _examples(16)

    def run(batch_size: int, accum: int) -> list[torch.Tensor]:
        model = _small_model(tiny_config, "all")
        loader = _batches(items, batch_size, pad_length=8)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        _run(
            model,
            loader,
            loader,
            optimizer,
            epochs=1,
            batch_size=batch_size,
            eval_freq=1000,
            eval_iter=1,
            grad_accum_steps=accum,
        )
        return [p.detach().clone() for p in model.parameters()]

    for a, b in zip(run(8, 1), run(4, 2), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


# --- the book's evaluation schedule ----------------------------------------------------------


def test_evaluation_points_follow_the_book(tiny_config):
    items = _examples(14)
    train, val = _batches(items[:10], 2), _batches(items[10:], 2)  # 5 steps an epoch
    model = _small_model(tiny_config)
    initial = copy.deepcopy(model)
    result = _run(model, train, val, _sgd(model), epochs=2, eval_freq=2, eval_iter=1)
    h = result.history

    # global steps 0..9; evaluated after steps 0, 2, 4, 6, 8 (the first after one step)
    assert h.examples_seen == [2, 6, 10, 14, 18]
    assert h.epochs_seen == pytest.approx([0.2, 0.6, 1.0, 1.4, 1.8])
    assert len(h.train_losses) == len(h.val_losses) == 5
    # accuracies once per epoch
    assert h.acc_epochs_seen == [1.0, 2.0]
    assert h.acc_examples_seen == [10, 20]
    assert len(h.train_accs) == len(h.val_accs) == 2
    # the last epoch's accuracies are those of the final model on eval_iter batches
    assert h.train_accs[-1] == calc_accuracy_loader(train, model, "cpu", 1)
    assert h.val_accs[-1] == calc_accuracy_loader(val, model, "cpu", 1)
    assert result.global_steps == 10
    assert result.epochs_completed == 2
    assert result.examples_seen == 20
    assert len(result.step_losses) == 10
    assert not result.interrupted and result.best_epoch is None
    assert not model.training  # left in eval mode

    # the first point is the loss on eval_iter batches after exactly one optimizer step
    replay = initial
    optimizer = _sgd(replay)
    replay.train()
    batch = train[0]
    torch.nn.functional.cross_entropy(
        replay(batch.input_ids, batch.lengths), batch.labels
    ).backward()
    optimizer.step()
    replay.eval()
    assert h.train_losses[0] == pytest.approx(calc_loss_loader(train, replay, "cpu", 1), abs=1e-6)
    assert h.val_losses[0] == pytest.approx(calc_loss_loader(val, replay, "cpu", 1), abs=1e-6)


def test_accuracies_use_eval_iter_batches_of_the_final_model(tiny_config):
    items = _examples(16, seed=1)
    train, val = _batches(items[:12], 3), _batches(items[12:], 2)
    model = _small_model(tiny_config)
    result = _run(model, train, val, _sgd(model), epochs=1, eval_freq=100, eval_iter=2)
    assert result.history.train_losses == [pytest.approx(result.history.train_losses[0])]
    assert result.history.train_accs[0] == calc_accuracy_loader(train, model, "cpu", 2)
    assert result.history.val_accs[0] == calc_accuracy_loader(val, model, "cpu", 2)


# --- best epoch ----------------------------------------------------------------------------------


class ScriptedOptimizer(torch.optim.SGD):
    """Sets the head's bias to the next value of a script at every step: full control over
    which class the model predicts after each epoch."""

    def __init__(self, model: GPTClassifier, script: list[list[float]]) -> None:
        super().__init__([p for p in model.parameters() if p.requires_grad], lr=0.0)
        self.model = model
        self.script = list(script)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ARG002
        head = self.model.gpt.out_head
        head.weight.zero_()
        head.bias.copy_(torch.tensor(self.script.pop(0)))


def test_select_best_restores_the_best_epoch(tiny_config):
    items = _examples(8, seed=3)
    train = _batches(items[:4], 2)  # two steps an epoch
    val = [collate([(ids, 1, i) for ids, _, i in items[4:]], pad_token_id=0)]  # all class 1
    ones, zeros = [0.0, 5.0], [5.0, 0.0]
    # after epoch 1: class 0 (val acc 0); epoch 2: class 1 (acc 1); epoch 3: class 0 (acc 0)
    script = [ones, zeros, zeros, [0.0, 4.0], ones, zeros]

    model = _small_model(tiny_config, "head")
    frozen_before = {n: p for n, p in _params(model).items() if "out_head" not in n}
    result = _run(
        model,
        train,
        val,
        ScriptedOptimizer(model, script),
        epochs=3,
        eval_freq=100,
        eval_iter=1,
        select_best=True,
    )
    assert result.best_epoch == 2
    assert result.history.val_accs == [0.0, 1.0, 0.0]
    assert model.gpt.out_head.bias.tolist() == [0.0, 4.0]  # epoch 2's weights, not the last
    assert calc_accuracy_loader(val, model, "cpu") == 1.0
    for name, value in _params(model).items():
        if name in frozen_before:
            assert torch.equal(value, frozen_before[name]), name

    last = _small_model(tiny_config, "head")
    plain = _run(
        last, train, val, ScriptedOptimizer(last, script), epochs=3, eval_freq=100, eval_iter=1
    )
    assert plain.best_epoch is None
    assert last.gpt.out_head.bias.tolist() == zeros


def test_select_best_keeps_the_first_of_equal_epochs(tiny_config):
    items = _examples(6, seed=4)
    train = _batches(items[:2], 2)  # one step an epoch
    val = [collate([(ids, 1, i) for ids, _, i in items[2:]], pad_token_id=0)]
    model = _small_model(tiny_config, "head")
    result = _run(
        model,
        train,
        val,
        ScriptedOptimizer(model, [[0.0, 1.0], [0.0, 2.0]]),
        epochs=2,
        eval_freq=100,
        eval_iter=1,
        select_best=True,
    )
    assert result.best_epoch == 1
    assert model.gpt.out_head.bias.tolist() == [0.0, 1.0]


# --- Ctrl-C --------------------------------------------------------------------------------------


def test_keyboard_interrupt_mid_epoch_keeps_a_usable_model(tiny_config):
    items = _examples(14, seed=5)
    batches, val = _batches(items[:10], 2), _batches(items[10:], 2)
    model = _small_model(tiny_config, "all")
    reference = copy.deepcopy(model)
    messages: list[str] = []

    result = train_classifier(
        model,
        _InterruptingLoader(batches, 3),
        val,
        _sgd(model),
        "cpu",
        TrainSettings(epochs=2, eval_freq=2, eval_iter=1),
        progress=False,
        log=messages.append,
    )

    assert result.interrupted
    assert result.epochs_completed == 0
    assert result.global_steps == 3
    assert result.examples_seen == 6
    assert len(result.history.examples_seen) == 2  # after steps 0 and 2
    assert result.history.train_accs == []
    assert any("interrupted" in message for message in messages)
    assert not model.training
    with torch.no_grad():
        logits = model(val[0].input_ids, val[0].lengths)
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()

    # the weights are those after the third (last finished) step
    _run(reference, batches[:3], val, _sgd(reference), epochs=1, eval_freq=2, eval_iter=1)
    for name, value in _params(model).items():
        assert torch.equal(value, _params(reference)[name]), name


def test_keyboard_interrupt_before_the_first_step(tiny_config):
    items = _examples(4, seed=6)
    model = _small_model(tiny_config)
    before = _params(model)
    result = _run(
        model,
        _InterruptingLoader(_batches(items, 2), 0),
        _batches(items, 2),
        _sgd(model),
        epochs=1,
        eval_freq=1,
        eval_iter=1,
        select_best=True,
    )
    assert result.interrupted and result.global_steps == 0 and result.best_epoch is None
    assert all(torch.equal(v, before[n]) for n, v in _params(model).items())


# --- the book's function -------------------------------------------------------------------------


def test_train_classifier_simple_returns_the_books_five_tuple(tiny_config, capsys):
    items = _examples(12, seed=7)
    train, val = _batches(items[:8], 2), _batches(items[8:], 2)
    model = _small_model(tiny_config)
    out = train_classifier_simple(
        model, train, val, _sgd(model), "cpu", num_epochs=2, eval_freq=3, eval_iter=1
    )
    assert isinstance(out, tuple) and len(out) == 5
    train_losses, val_losses, train_accs, val_accs, examples_seen = out
    assert len(train_losses) == len(val_losses) == 3  # steps 0, 3, 6 of 8
    assert len(train_accs) == len(val_accs) == 2
    assert examples_seen == 16 and isinstance(examples_seen, int)
    assert all(isinstance(v, float) for v in train_losses + val_losses + train_accs + val_accs)

    # the same numbers as train_classifier with the book's settings
    again = _small_model(tiny_config)
    result = _run(again, train, val, _sgd(again), epochs=2, eval_freq=3, eval_iter=1)
    assert result.history.train_losses == train_losses
    assert result.history.val_accs == val_accs
    assert "ep 1 (step 000000)" in capsys.readouterr().err
