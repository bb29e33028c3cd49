"""Shared fixtures: the real data in ../shared/data when present, tiny model configs."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
import torch

from gpt_classifier.config import GPTConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(
    os.environ.get("GPT_CLASSIFIER_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")
)
TOKENIZER_DIR = SHARED_DATA / "gpt2-tokenizer"

# Runs share a frozen-prefix cache on disk: keep the tests' own out of the user's cache folder
# (subprocesses inherit it).
os.environ.setdefault("GPT_CLASSIFIER_CACHE", tempfile.mkdtemp(prefix="gpt-classifier-cache-"))
SMS_SPAM_FILE = SHARED_DATA / "sms_spam_collection" / "SMSSpamCollection"

# Small enough for CI on 2 cores, real vocabulary so the real tokenizer's ids fit.
TINY_CONFIG = GPTConfig(
    vocab_size=50257, context_length=128, emb_dim=32, n_heads=4, n_layers=3, drop_rate=0.0
)


# Big enough to learn sms-spam from random weights in a few seconds (the pipeline tests).
LEARNER_CONFIG = {
    "vocab_size": 50257,
    "context_length": 256,
    "emb_dim": 64,
    "n_heads": 4,
    "n_layers": 4,
    "drop_rate": 0.0,
    "qkv_bias": True,
}


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


@pytest.fixture
def tiny_config() -> GPTConfig:
    return TINY_CONFIG


@pytest.fixture(scope="session")
def tiny_config_file(tmp_path_factory) -> Path:
    """LEARNER_CONFIG as a JSON file with the book's keys, for ``--model``."""
    path = tmp_path_factory.mktemp("config") / "tiny.json"
    path.write_text(json.dumps(LEARNER_CONFIG))
    return path


@pytest.fixture(scope="session")
def tokenizer_dir() -> Path:
    if not (TOKENIZER_DIR / "vocab.bpe").is_file():
        pytest.skip(f"GPT-2 tokenizer files not found in {TOKENIZER_DIR} (../shared/data)")
    return TOKENIZER_DIR


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir: Path):
    from gpt_classifier.tokenizer import get_tokenizer

    return get_tokenizer(tokenizer_dir)


@pytest.fixture(scope="session")
def sms_spam_file() -> Path:
    if not SMS_SPAM_FILE.is_file():
        pytest.skip(f"SMS Spam Collection not found at {SMS_SPAM_FILE} (../shared/data)")
    return SMS_SPAM_FILE


# The smallest model: a tiny saved run for the predictor and the server, and the commands' tests.
SAVED_CONFIG = GPTConfig(
    vocab_size=50257, context_length=32, emb_dim=16, n_heads=2, n_layers=2, drop_rate=0.0
)


@pytest.fixture
def saved_config() -> GPTConfig:
    return SAVED_CONFIG


@pytest.fixture(scope="session")
def saved_config_file(tmp_path_factory) -> Path:
    """SAVED_CONFIG as a JSON file, for ``--model`` of the commands' tests."""
    path = tmp_path_factory.mktemp("config") / "saved.json"
    path.write_text(json.dumps(SAVED_CONFIG.to_dict()))
    return path


@pytest.fixture(scope="session")
def saved_run(tmp_path_factory) -> Path:
    """A tiny saved run: last-real pooling, per-batch padding, texts cut to 12 tokens."""
    from gpt_classifier.classifier import GPTClassifier
    from gpt_classifier.inference import RunInfo, save_run
    from gpt_classifier.model import GPTModel

    torch.manual_seed(11)
    model = GPTClassifier(GPTModel(SAVED_CONFIG), 2, pooling="last-real", head_seed=11)
    info = RunInfo(
        gpt_config=SAVED_CONFIG,
        classes=("ham", "spam"),
        pooling="last-real",
        padding="batch",
        max_length=12,
        pad_length=None,
    )
    return save_run(model, info, tmp_path_factory.mktemp("saved") / "run")


@pytest.fixture(scope="module")
def served_classifier(saved_run, tokenizer_dir):
    """The tiny run as the server's tests load it: in float32, because the server packs its
    passes, which equal padded ones up to float rounding only."""
    from gpt_classifier.inference import TextClassifier

    return TextClassifier.from_run(
        saved_run, device="cpu", tokenizer_dir=tokenizer_dir, precision="fp32"
    )


# A micro model and a 48-text spam/ham file: whole `train` runs in a second or two (the CLI,
# reliability, fault and experiments tests).
MICRO_CONFIG = {
    "vocab_size": 50257,
    "context_length": 32,
    "emb_dim": 16,
    "n_heads": 2,
    "n_layers": 2,
    "drop_rate": 0.0,
    "qkv_bias": True,
}


@pytest.fixture(scope="session")
def micro_files(tmp_path_factory) -> dict[str, Path]:
    """``{"config": MICRO_CONFIG as JSON, "data": 24 spam + 24 ham texts as CSV}``."""
    import csv

    folder = tmp_path_factory.mktemp("micro")
    config = folder / "micro.json"
    config.write_text(json.dumps(MICRO_CONFIG))
    data = folder / "data.csv"
    with data.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows([(f"win a free prize now {i}", "spam") for i in range(24)])
        writer.writerows([(f"see you at lunch {i}", "ham") for i in range(24)])
    return {"config": config, "data": data}


@pytest.fixture
def deny_access(monkeypatch):
    """``deny(path, target)``: Path's ``stat`` (for folders), ``read_text`` and ``open`` raise
    EACCES for ``path`` — or, with ``target == "folder"``, for the entries of folder ``path``
    (a folder without x permission: its entries cannot be looked up, itself can). Tests of
    permission errors that also run as root, which reads anything."""
    import errno

    def deny(denied: Path, target: str) -> None:
        def refusing(method: str) -> None:
            original = getattr(Path, method)

            def check(self, *args, **kwargs):
                if self.parent == denied if target == "folder" else self == denied:
                    raise PermissionError(errno.EACCES, "Permission denied", str(self))
                return original(self, *args, **kwargs)

            monkeypatch.setattr(Path, method, check)

        if target in ("folder", "parent"):
            refusing("stat")
        refusing("read_text")
        refusing("open")

    return deny


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory, micro_files, tokenizer_dir) -> Path:
    """A run trained on ``micro_files`` (all layers, 4 epochs: a few seconds), with its
    metrics.json and splits: a model that has learnt something, for explanations and the page."""
    from gpt_classifier.training.pipeline import FinetuneOptions, run_finetune

    output = tmp_path_factory.mktemp("micro-run") / "run"
    options = FinetuneOptions(
        output_dir=str(output),
        data_file=str(micro_files["data"]),
        model=str(micro_files["config"]),
        init="random",
        tokenizer_dir=str(tokenizer_dir),
        trainable="all",
        epochs=4,
        batch_size=4,
        eval_freq=3,
        eval_iter=2,
        progress=False,
        plots=False,
    )
    run_finetune(options, log=lambda message: None)
    return output
