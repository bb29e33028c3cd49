"""The book's loss/accuracy functions and the training loop around them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gpt_classifier.classifier import GPTClassifier
from gpt_classifier.data.encoding import EncodedDataset, make_loader
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
from gpt_classifier.training.losses import predict_loader


def _dataset(n: int = 40, seed: int = 0) -> EncodedDataset:
    generator = torch.Generator().manual_seed(seed)
    ids, labels = [], []
    for i in range(n):
        length = int(torch.randint(3, 16, (1,), generator=generator))
        label = i % 2
        # the label is visible in the tokens: class 1 texts use high ids
        low, high = (1000, 2000) if label else (10, 1000)
        ids.append(torch.randint(low, high, (length,), generator=generator).tolist())
        labels.append(label)
    return EncodedDataset(ids, labels)


def _classifier(tiny_config) -> GPTClassifier:
    torch.manual_seed(0)
    return GPTClassifier(GPTModel(tiny_config), 2)


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
    model = _classifier(tiny_config)
    loader = make_loader(_dataset(), 8, shuffle=False, drop_last=False, pad_length=None)
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
    assert 0.0 <= calc_accuracy_loader(loader, model, "cpu") <= 1.0


def test_loop_evaluates_where_the_book_does(tiny_config):
    model = _classifier(tiny_config)
    loader = make_loader(_dataset(), 4, shuffle=True, drop_last=True, pad_length=None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    settings = TrainSettings(epochs=2, batch_size=4, eval_freq=4, eval_iter=2)
    result = train_classifier(
        model, loader, loader, optimizer, "cpu", settings, progress=False, log=lambda m: None
    )
    # 10 steps per epoch; evaluations after steps 1, 5, 9, 13, 17 (the book's counter starts at 0)
    assert result.global_steps == 20
    assert result.history.examples_seen == [4, 20, 36, 52, 68]
    assert result.history.acc_epochs_seen == [1.0, 2.0]
    assert len(result.step_losses) == 20


def test_gradient_accumulation_matches_one_large_batch(tiny_config):
    dataset = _dataset(16)

    def run(batch_size: int, accum: int) -> list[torch.Tensor]:
        model = _classifier(tiny_config)
        loader = make_loader(dataset, batch_size, shuffle=False, drop_last=False, pad_length=16)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        settings = TrainSettings(
            epochs=1, batch_size=batch_size, eval_freq=1000, eval_iter=1, grad_accum_steps=accum
        )
        train_classifier(
            model, loader, loader, optimizer, "cpu", settings, progress=False, log=lambda m: None
        )
        return [p.detach().clone() for p in model.parameters()]

    for a, b in zip(run(8, 1), run(4, 2), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_select_best_keeps_the_best_epoch(tiny_config):
    model = _classifier(tiny_config)
    train = make_loader(_dataset(), 8, shuffle=True, drop_last=True, pad_length=None)
    val = make_loader(_dataset(24, seed=1), 8, shuffle=False, drop_last=False, pad_length=None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-2)  # large: epochs differ
    settings = TrainSettings(
        epochs=4, batch_size=8, eval_freq=1000, eval_iter=100, select_best=True
    )
    result = train_classifier(
        model, train, val, optimizer, "cpu", settings, progress=False, log=lambda m: None
    )
    per_epoch = result.history.val_accs  # eval_iter covers the whole validation set
    best = max(range(len(per_epoch)), key=lambda i: (per_epoch[i], -i))
    assert result.best_epoch == best + 1
    assert calc_accuracy_loader(val, model, "cpu") == pytest.approx(per_epoch[best])


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


def test_ctrl_c_leaves_a_usable_model(tiny_config):
    model = _classifier(tiny_config)
    loader = make_loader(_dataset(), 4, shuffle=False, drop_last=True, pad_length=None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    settings = TrainSettings(epochs=3, eval_freq=1000, eval_iter=1)
    result = train_classifier(
        model,
        _InterruptingLoader(loader, 3),
        loader,
        optimizer,
        "cpu",
        settings,
        progress=False,
        log=lambda m: None,
    )
    assert result.interrupted and result.global_steps == 3 and not model.training
    assert 0.0 <= calc_accuracy_loader(loader, model, "cpu") <= 1.0


def test_train_classifier_simple_returns_the_books_values(tiny_config):
    model = _classifier(tiny_config)
    loader = make_loader(_dataset(), 8, shuffle=True, drop_last=True, pad_length=None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.1)
    train_losses, val_losses, train_accs, val_accs, examples_seen = train_classifier_simple(
        model, loader, loader, optimizer, "cpu", num_epochs=2, eval_freq=2, eval_iter=1
    )
    assert len(train_losses) == len(val_losses) == 5  # steps 1, 3, 5, 7, 9 of 10
    assert len(train_accs) == len(val_accs) == 2
    assert examples_seen == 80
