"""Shared fixtures: the data (../shared/data when present, else tests/fixtures), tiny model
configs, and each test's own cache folder."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from gpt_classifier.config import GPTConfig


def pytest_configure(config: pytest.Config) -> None:
    """The Ctrl-C tests need SIGINT to interrupt, here and in the processes they start; a
    suite started in the background by a shell without job control inherits it ignored."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED_DATA = Path(
    os.environ.get("GPT_CLASSIFIER_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")
)
CACHE_ENV = "GPT_CLASSIFIER_CACHE"
TOKENIZER_FILES = ("vocab.bpe", "encoder.json")


def _tokenizer_dir() -> Path:
    """The GPT-2 tokenizer's two files: the same bytes in ../shared/data and tests/fixtures."""
    shared = SHARED_DATA / "gpt2-tokenizer"
    if all((shared / name).is_file() for name in TOKENIZER_FILES):
        return shared
    return FIXTURES / "gpt2-tokenizer"


@dataclass(frozen=True)
class SmsSpamFacts:
    """What the tests assert about the SMS file they read: the full collection (5,574 rows, see
    ../shared/data/README.md) or the 400-row fixture (tests/fixtures/README.md).

    ``splits`` is ``prepare_dataset``'s default (duplicates dropped, undersampled, 70/10/20, seed
    123); ``book_splits`` keeps the duplicates (the book's balance); ``unbalanced_splits`` is
    ``balance="none"``. ``csv_rows``: rows a CSV reader with default quoting makes of the file (a
    runaway quote merges lines)."""

    full: bool
    path: Path
    rows: int
    raw: dict[str, int]
    csv_rows: int
    duplicates_dropped: int
    deduplicated: dict[str, int]
    splits: dict[str, dict[str, int]]
    book_splits: dict[str, dict[str, int]]
    unbalanced_splits: dict[str, dict[str, int]]

    @property
    def split_sizes(self) -> tuple[int, int, int]:
        return tuple(sum(self.splits[name].values()) for name in ("train", "validation", "test"))

    @property
    def book_split_sizes(self) -> dict[str, int]:
        return {name: sum(counts.values()) for name, counts in self.book_splits.items()}


def _splits(train: int, validation: int, test: int) -> dict[str, dict[str, int]]:
    return {
        "train": {"ham": train, "spam": train},
        "validation": {"ham": validation, "spam": validation},
        "test": {"ham": test, "spam": test},
    }


FULL_SMS_SPAM = SmsSpamFacts(
    full=True,
    path=SHARED_DATA / "sms_spam_collection" / "SMSSpamCollection",
    rows=5574,
    raw={"ham": 4827, "spam": 747},
    csv_rows=5572,
    duplicates_dropped=403,
    deduplicated={"ham": 4518, "spam": 653},
    splits=_splits(457, 65, 131),
    book_splits=_splits(522, 74, 151),
    unbalanced_splits={
        "train": {"ham": 3162, "spam": 457},
        "validation": {"ham": 451, "spam": 65},
        "test": {"ham": 905, "spam": 131},
    },
)
FIXTURE_SMS_SPAM = SmsSpamFacts(
    full=False,
    path=FIXTURES / "sms_spam_collection" / "SMSSpamCollection",
    rows=400,
    raw={"ham": 174, "spam": 226},
    csv_rows=398,
    duplicates_dropped=16,
    deduplicated={"ham": 172, "spam": 212},
    splits=_splits(120, 17, 35),
    book_splits=_splits(121, 17, 36),
    unbalanced_splits={
        "train": {"ham": 120, "spam": 148},
        "validation": {"ham": 17, "spam": 21},
        "test": {"ham": 35, "spam": 43},
    },
)
SMS_SPAM = FULL_SMS_SPAM if FULL_SMS_SPAM.path.is_file() else FIXTURE_SMS_SPAM
TOKENIZER_DIR = _tokenizer_dir()
SMS_SPAM_FILE = SMS_SPAM.path


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory):
    """The frozen-prefix and dataset cache of session- and module-scoped fixtures: never the
    user's (subprocesses inherit it)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory, monkeypatch) -> Path:
    """Each test its own cache folder (runs reuse cached states across tests otherwise); a test
    that shares a cache between two runs gives both the same explicit folder."""
    folder = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv(CACHE_ENV, str(folder))
    return folder


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
    return TOKENIZER_DIR


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir: Path):
    from gpt_classifier.tokenizer import get_tokenizer

    return get_tokenizer(tokenizer_dir)


@pytest.fixture(scope="session")
def sms_spam_file() -> Path:
    """The full SMS Spam Collection when ../shared/data has it, else the 400-row fixture."""
    return SMS_SPAM_FILE


@pytest.fixture(scope="session")
def sms_spam() -> SmsSpamFacts:
    """The facts of ``sms_spam_file``, for assertions that hold on either file."""
    return SMS_SPAM


@pytest.fixture(scope="session")
def small_sms_spam_file() -> Path:
    """The 400-row fixture always: for tests that train on SMS texts and must stay cheap."""
    return FIXTURE_SMS_SPAM.path


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


def save_tiny_run(folder: Path, seed: int = 11, **info_fields) -> Path:
    """An untrained tiny run (SAVED_CONFIG) saved in ``folder``: last-real pooling, per-batch
    padding, texts cut to 12 tokens; ``info_fields`` override RunInfo's."""
    from gpt_classifier.classifier import GPTClassifier
    from gpt_classifier.inference import RunInfo, save_run
    from gpt_classifier.model import GPTModel

    torch.manual_seed(seed)
    model = GPTClassifier(GPTModel(SAVED_CONFIG), 2, pooling="last-real", head_seed=seed)
    fields = dict(classes=("ham", "spam"), pooling="last-real", padding="batch", max_length=12)
    info = RunInfo(gpt_config=SAVED_CONFIG, pad_length=None, **{**fields, **info_fields})
    return save_run(model, info, folder)


@pytest.fixture(scope="session")
def saved_run(tmp_path_factory) -> Path:
    """A tiny saved run: last-real pooling, per-batch padding, texts cut to 12 tokens."""
    return save_tiny_run(tmp_path_factory.mktemp("saved") / "run")


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


def _without_dac_override() -> None:
    """Drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from this thread's effective capabilities
    (Linux keeps them per thread): from here on root meets file permissions as any user does."""
    import ctypes

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [(name, ctypes.c_uint32) for name in ("effective", "permitted", "inheritable")]

    libc = ctypes.CDLL(None, use_errno=True)
    header, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3, this thread
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    data[0].effective &= ~((1 << 1) | (1 << 2))  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


@pytest.fixture
def unprivileged():
    """``unprivileged(function)``: ``function()``'s result (or its exception), called where file
    permissions hold: in a thread without the capabilities that let root read anything, when the
    tests run as root (CI does); directly otherwise. Real EACCES errors, for root too."""
    import threading

    def call(function):
        if not (hasattr(os, "geteuid") and os.geteuid() == 0):
            return function()
        outcome: dict[str, object] = {}

        def body() -> None:
            try:
                _without_dac_override()
                outcome["value"] = function()
            except BaseException as exc:  # noqa: BLE001 (re-raised in the caller's thread)
                outcome["error"] = exc

        thread = threading.Thread(target=body, name="unprivileged")
        thread.start()
        thread.join()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    return call


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


@pytest.fixture
def hold_lock():
    """``hold_lock(path)``: another process that holds the one-writer lock of ``path`` until it is
    killed (SIGKILL: no clean-up, as for a crashed writer); all are killed at the end."""
    import subprocess
    import sys

    code = (
        "import sys; from gpt_classifier.fileio import writer_lock\n"
        "held = writer_lock(sys.argv[1], '--output-dir'); print('held', flush=True); "
        "sys.stdin.read()"
    )
    holders: list[subprocess.Popen] = []

    def start(target) -> subprocess.Popen:
        holder = subprocess.Popen(
            [sys.executable, "-c", code, str(target)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        holders.append(holder)
        assert holder.stdout.readline() == "held\n"
        return holder

    yield start
    for holder in holders:
        holder.kill()
        holder.wait()


def micro_options(data_file, config_file, tokenizer_dir, output_dir, /, **overrides):
    """FinetuneOptions of a tiny, quiet random-init run (2 epochs of batches of 4)."""
    from gpt_classifier.training.pipeline import FinetuneOptions

    values = {
        "output_dir": str(output_dir),
        "data_file": str(data_file),
        "model": str(config_file),
        "init": "random",
        "tokenizer_dir": str(tokenizer_dir),
        "epochs": 2,
        "batch_size": 4,
        "eval_freq": 3,
        "eval_iter": 2,
        "progress": False,
        "plots": False,
    }
    return FinetuneOptions(**{**values, **overrides})
