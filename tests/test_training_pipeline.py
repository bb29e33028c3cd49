"""End-to-end fine-tuning, presets, and the frozen-prefix cache's exactness."""

from __future__ import annotations

import csv
import json
import random

import pytest
import torch
from conftest import micro_options

from gpt_classifier.classifier import GPTClassifier, apply_trainable, parse_trainable
from gpt_classifier.config import GPTConfig
from gpt_classifier.model import GPTModel
from gpt_classifier.training.pipeline import FinetuneOptions, run_finetune
from gpt_classifier.training.prefix_cache import plan_prefix_cache


def _quiet(message: str) -> None:
    pass


def _sms_epochs(sms_spam) -> int:
    """2 epochs on the full collection (914 training texts); 3 on the 400-row fixture's 240."""
    return 2 if sms_spam.full else 3


@pytest.fixture(scope="module")
def sms_run(tmp_path_factory, tiny_config_file, sms_spam_file, sms_spam, tokenizer_dir):
    """A tiny random-init GPT fine-tuned on the real SMS data (the loop itself must learn)."""
    run_dir = tmp_path_factory.mktemp("runs") / "sms"
    result = run_finetune(
        FinetuneOptions(
            output_dir=run_dir,
            data_file=str(sms_spam_file),
            model=str(tiny_config_file),
            init="random",
            tokenizer_dir=str(tokenizer_dir),
            trainable="all",
            lr=1e-3,
            epochs=_sms_epochs(sms_spam),
            balance="undersample",  # the old default: a quarter of the texts, as fast as it was
            progress=False,
        ),
        log=_quiet,
    )
    return result


@pytest.mark.slow
def test_tiny_model_learns_sms_spam(sms_run, sms_spam):
    metrics = json.loads((sms_run.run_dir / "metrics.json").read_text())
    assert set(metrics) == {"train", "validation", "test"}
    for split in metrics.values():
        matrix = split["confusion_matrix"]
        correct = sum(matrix[i][i] for i in range(len(matrix)))
        assert split["accuracy"] == correct / split["num_examples"]  # exact, from the counts
        assert sum(map(sum, matrix)) == split["num_examples"] and split["loss"] > 0.0
    assert metrics["test"]["num_examples"] == sms_spam.split_sizes[2]  # dedup, undersample, 20 %
    assert metrics["test"]["num_examples"] == 262 or not sms_spam.full
    assert metrics["test"]["accuracy"] >= 0.90, metrics["test"]["accuracy"]


@pytest.mark.slow
def test_run_directory_holds_everything(sms_run, sms_spam):
    names = {p.name for p in sms_run.run_dir.iterdir()}
    expected = {
        "run.json",
        "model.safetensors",
        "metrics.json",
        "report.txt",
        "history.json",
        "timings.json",
        "loss.png",
        "accuracy.png",
        "confusion_matrix.png",
        "data",
    }
    assert expected <= names
    assert {"train.csv", "validation.csv", "test.csv"} <= {
        p.name for p in (sms_run.run_dir / "data").iterdir()
    }
    run = json.loads((sms_run.run_dir / "run.json").read_text())
    assert run["classifier"]["classes"] == ["ham", "spam"]
    assert run["data"]["duplicates_dropped"] == sms_spam.duplicates_dropped  # 403 in full
    history = json.loads((sms_run.run_dir / "history.json").read_text())
    assert len(history["train_accs"]) == _sms_epochs(sms_spam)  # one point per epoch
    assert history["examples_seen"][0] == 8  # the book evaluates after the first step


def test_book_preset_is_chapter_six():
    recipe = FinetuneOptions(preset="book").resolved()
    settings = recipe.train
    assert _choices(recipe) == {
        "padding": "longest-train",
        "pooling": "last",
        "trainable": "last-blocks:1",
        "keep_duplicates": True,
        "balance": "undersample",
    }
    assert (settings.lr, settings.weight_decay, settings.epochs, settings.batch_size) == (
        5e-5,
        0.1,
        5,
        8,
    )
    assert (settings.eval_freq, settings.eval_iter, settings.seed) == (50, 5, 123)


def test_explicit_flags_override_the_preset():
    recipe = FinetuneOptions(preset="book", pooling="last-real", epochs=2).resolved()
    assert recipe.pooling == "last-real" and str(recipe.padding) == "longest-train"
    assert recipe.train.epochs == 2 and recipe.train.lr == 5e-5


def _choices(recipe) -> dict:
    """The resolved choices, as the strings run.json records."""
    return {
        "padding": str(recipe.padding),
        "pooling": str(recipe.pooling),
        "trainable": str(recipe.trainable),
        "keep_duplicates": recipe.keep_duplicates,
        "balance": recipe.balance,
    }


def _three_class_csv(path, rows_per_class: int = 24) -> None:
    words = {
        "sport": ["match", "goal", "team", "league", "coach", "score"],
        "food": ["pizza", "pasta", "salad", "bread", "soup", "cheese"],
        "tech": ["laptop", "python", "server", "kernel", "chip", "cloud"],
    }
    rng = random.Random(0)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for label, vocabulary in words.items():
            for i in range(rows_per_class):
                text = " ".join(rng.choice(vocabulary) for _ in range(3 + i % 9))
                writer.writerow([f"{text} {i}", label])


def _finetune(tmp_path, name, data_file, config_file, tokenizer_dir, **overrides):
    overrides = {"eval_freq": 5, "lr": 1e-3, "precision": "fp32", **overrides}
    options = micro_options(data_file, config_file, tokenizer_dir, tmp_path / name, **overrides)
    return run_finetune(options, log=_quiet)


def test_any_number_of_string_classes(tmp_path, tiny_config_file, tokenizer_dir):
    data = tmp_path / "topics.csv"
    _three_class_csv(data)
    result = _finetune(tmp_path, "topics", data, tiny_config_file, tokenizer_dir)
    run = json.loads((result.run_dir / "run.json").read_text())
    assert run["classifier"]["classes"] == ["food", "sport", "tech"]
    assert len(result.report["test"]["confusion_matrix"]) == 3
    assert result.report["test"]["roc_auc_method"] == "one-vs-rest macro"


@pytest.mark.parametrize(
    ("trainable", "pooling", "padding", "batch_size"),
    [
        ("last-block", "last-real", "batch", 8),  # our default
        ("last-block", "last", "longest-train", 8),  # the book
        ("last-block", "last", "batch", 1),  # the book's "no padding" rows: nothing is padded
        ("head", "last-real", "batch", 8),
        ("last-blocks:2", "mean", "batch", 8),
        ("last-block", "first", "fixed:24", 8),
    ],
)
def test_prefix_cache_gives_the_same_losses(
    tmp_path, tiny_config_file, tokenizer_dir, trainable, pooling, padding, batch_size
):
    data = tmp_path / "topics.csv"
    _three_class_csv(data)
    runs = {
        cached: _finetune(
            tmp_path,
            f"cache-{cached}",
            data,
            tiny_config_file,
            tokenizer_dir,
            trainable=trainable,
            pooling=pooling,
            padding=padding,
            batch_size=batch_size,
            epochs=1 if batch_size == 1 else 2,
            prefix_cache=cached,
        )
        for cached in (True, False)
    }
    assert runs[True].cached_prefix and not runs[False].cached_prefix
    cached = torch.tensor(runs[True].train.step_losses)
    plain = torch.tensor(runs[False].train.step_losses)
    assert cached.shape == plain.shape and len(cached) > 10
    assert (cached - plain).abs().max() < 1e-5
    for split in ("train", "validation", "test"):
        a, b = runs[True].report[split], runs[False].report[split]
        assert a["accuracy"] == b["accuracy"]
        assert abs(a["loss"] - b["loss"]) < 1e-5
    history_a, history_b = runs[True].train.history, runs[False].train.history
    assert history_a.val_losses == pytest.approx(history_b.val_losses, abs=1e-5)


def _classifier(cfg: GPTConfig, trainable: str, pooling: str = "last-real") -> GPTClassifier:
    model = GPTClassifier(GPTModel(cfg), 2, pooling=pooling)
    apply_trainable(model, parse_trainable(trainable))
    return model


@pytest.mark.parametrize(
    ("trainable", "cfg_changes", "pooling", "pad_length", "reason"),
    [
        ("all", {}, "last-real", None, "every block"),
        ("lora", {}, "last-real", None, "every block"),
        ("last-block", {"drop_rate": 0.1}, "last-real", None, "dropout"),
        ("last-block", {}, "last", None, "'last' pooling"),
        ("last-block", {"causal": False}, "last-real", None, "causal mask"),
    ],
)
def test_prefix_cache_falls_back_where_it_would_change_results(
    tiny_config, trainable, cfg_changes, pooling, pad_length, reason
):
    model = _classifier(tiny_config.replace(**cfg_changes), trainable, pooling)
    plan = plan_prefix_cache(model, pad_length)
    assert not plan.enabled and reason in plan.reason


def test_prefix_cache_starts_at_the_first_trained_block(tiny_config):
    assert plan_prefix_cache(_classifier(tiny_config, "last-block"), None).start_block == 2
    assert plan_prefix_cache(_classifier(tiny_config, "last-blocks:2"), None).start_block == 1
    assert plan_prefix_cache(_classifier(tiny_config, "head"), None).start_block == 3
    # the book: `last` pooling is fine when every row has the same fixed length
    book = _classifier(tiny_config, "last-block", pooling="last")
    assert plan_prefix_cache(book, 120).start_block == 2


def test_every_bad_option_is_reported_at_once_before_any_work():
    from gpt_classifier.errors import GPTClassifierError

    with pytest.raises(GPTClassifierError) as error:
        FinetuneOptions(padding="wide", trainable="some", model="gpt5", lr=-1.0).resolved()
    message = str(error.value)
    for word in ("'wide'", "'some'", "'gpt5'", "lr must be a positive finite number"):
        assert word in message
    assert "\n" not in message


def test_book_preset_reaches_the_run_directory(tmp_path, tiny_config_file, tokenizer_dir):
    """A run with ``preset="book"`` records exactly the chapter-6 recipe in run.json."""
    data = tmp_path / "topics.csv"
    _three_class_csv(data, rows_per_class=12)
    options = FinetuneOptions(
        output_dir=tmp_path / "book",
        preset="book",
        data_file=str(data),
        model=str(tiny_config_file),
        init="random",
        tokenizer_dir=str(tokenizer_dir),
        epochs=1,  # an explicit option still wins
        precision="fp32",
        progress=False,
        plots=False,
    )
    messages: list[str] = []
    result = run_finetune(options, log=messages.append)
    run = json.loads((result.run_dir / "run.json").read_text())
    assert run["classifier"]["pooling"] == "last"
    assert run["inputs"]["padding"] == "longest-train"
    assert run["inputs"]["pad_length"] == run["inputs"]["max_length"]
    assert run["trainable"] == "last-blocks:1"
    assert run["preset"] == "book"
    assert run["data"]["keep_duplicates"] is True and run["data"]["balance"] == "undersample"
    assert run["training"] == {
        "epochs": 1,
        "batch_size": 8,
        "lr": 5e-5,
        "weight_decay": 0.1,
        "eval_freq": 50,
        "eval_iter": 5,
        "grad_accum_steps": 1,
        "seed": 123,
        "select_best": False,
    }
    assert result.cached_prefix  # the book's combination can use the frozen-prefix cache
    # Every text is padded to pad_length and the padded positions are computed too: say so.
    trained = ("train", "validation", "test")  # the splits the prefix cache holds (float32)
    examples = sum(int(result.report[name]["num_examples"]) for name in trained)
    positions = f"{run['inputs']['pad_length'] * examples:,} positions ("
    assert any(positions in m and "tokens and padding" in m for m in messages), messages


def test_unknown_preset_lists_the_valid_ones():
    from gpt_classifier.errors import GPTClassifierError

    with pytest.raises(GPTClassifierError, match="unknown preset 'chapter7'.*default, book"):
        FinetuneOptions(preset="chapter7").resolved()


def test_default_preset_values():
    recipe = FinetuneOptions().resolved()
    settings = recipe.train
    assert _choices(recipe) == {
        "padding": "batch",
        "pooling": "last-real",
        "trainable": "last-blocks:1",
        "keep_duplicates": False,
        "balance": "weighted",
    }
    assert settings.lr == 5e-5 and settings.epochs == 5 and settings.batch_size == 8
