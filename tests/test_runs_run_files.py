"""A run answers from its folder alone (its own tokenizer), and ``--save trainable`` runs keep only
the trained tensors and a checked reference to the base weights."""

from __future__ import annotations

import json
import shutil
import socket

import pytest
import torch
from safetensors.torch import save_file

from gpt_classifier.classifier import GPTClassifier, apply_trainable
from gpt_classifier.errors import GPTClassifierError
from gpt_classifier.inference import RunInfo, TextClassifier, load_run, save_run
from gpt_classifier.runs.run_dir import TRAINED_FILE, base_weights_record, run_tokenizer
from gpt_classifier.runs.transaction import write_marker
from gpt_classifier.tokenizer import TOKENIZER_DIR_ENV
from gpt_classifier.weights import _rules, build_model, skeleton_gpt

TEXTS = ["Free entry! txt WIN to 80082", "see you at 5", "ok <|endoftext|> bye"]


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No tokenizer variable, an empty tiktoken cache, and no socket may connect."""
    monkeypatch.delenv(TOKENIZER_DIR_ENV, raising=False)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty-tiktoken-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def _trained(cfg, trainable="last-block", base="random", seed=7) -> GPTClassifier:
    """A classifier over a base (random init from ``seed`` or a weights file), one SGD step."""
    if base == "random":
        gpt = build_model(cfg, init="random", seed=seed)
    else:
        gpt = build_model(cfg, weights=str(base))
    model = GPTClassifier(gpt, 2, pooling="last-real", head_seed=seed)
    apply_trainable(model, trainable, lora_rank=4, lora_alpha=8)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    ids = torch.randint(0, cfg.vocab_size, (4, 12), generator=torch.Generator().manual_seed(1))
    torch.nn.functional.cross_entropy(model(ids), torch.tensor([0, 1, 0, 1])).backward()
    optimizer.step()
    return model.eval()


def _info(cfg, save="full", base=None, trainable="last-block") -> RunInfo:
    lora = {"rank": 4, "alpha": 8} if trainable == "lora" else None
    return RunInfo(
        gpt_config=cfg,
        classes=("ham", "spam"),
        pooling="last-real",
        padding="batch",
        max_length=cfg.context_length,
        pad_length=None,
        save=save,
        base_weights=base,
        extra={"trainable": trainable, "lora": lora},
    )


def _hf_file(path, cfg, seed=5):
    """A GPT-2 checkpoint in Hugging Face layout with random values, for ``--weights``."""
    params = dict(skeleton_gpt(cfg).named_parameters())
    g = torch.Generator().manual_seed(seed)
    tensors = {r.source: torch.randn(r.expected_shape(params), generator=g) for r in _rules(cfg)}
    save_file(tensors, str(path))
    return path


def _one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# --- the tokenizer travels with the run ---------------------------------------------------------


def test_a_moved_run_classifies_offline_with_its_own_tokenizer(
    tmp_path, saved_config, tokenizer_dir, tokenizer, offline
):
    model = _trained(saved_config)
    save_run(model, _info(saved_config), tmp_path / "run", tokenizer_dir=tokenizer_dir)
    assert sorted(p.name for p in (tmp_path / "run" / "tokenizer").iterdir()) == [
        "encoder.json",
        "vocab.bpe",
    ]
    moved = shutil.copytree(tmp_path / "run", tmp_path / "elsewhere" / "run")
    shutil.rmtree(tmp_path / "run")
    classifier = TextClassifier.from_run(moved, device="cpu", precision="fp32")
    in_memory = TextClassifier(model, tokenizer, _info(saved_config), "cpu", precision="fp32")
    assert (classifier.predict_proba(TEXTS) == in_memory.predict_proba(TEXTS)).all()


def test_a_run_without_tokenizer_files_still_reads_the_flag(tmp_path, saved_config, offline):
    save_run(_trained(saved_config), _info(saved_config), tmp_path / "run")  # nothing on disk
    assert not (tmp_path / "run" / "tokenizer").exists()
    with pytest.raises(GPTClassifierError) as error:
        run_tokenizer(tmp_path / "run")  # would need the download
    assert "--tokenizer-dir" in _one_line(error)


def test_a_tokenizer_dir_that_differs_from_the_runs_own_is_refused(
    tmp_path, saved_config, tokenizer_dir
):
    save_run(
        _trained(saved_config), _info(saved_config), tmp_path / "run", tokenizer_dir=tokenizer_dir
    )
    other = shutil.copytree(tokenizer_dir, tmp_path / "other")
    (other / "vocab.bpe").write_text("#version: 0.2\n")
    assert run_tokenizer(tmp_path / "run", tokenizer_dir).n_vocab == 50257  # the same files: fine
    with pytest.raises(GPTClassifierError) as error:
        run_tokenizer(tmp_path / "run", other)
    assert "vocab.bpe differs from the run's own" in _one_line(error)


# --- --save trainable ---------------------------------------------------------------------------


@pytest.mark.parametrize("trainable", ["last-block", "head", "lora"])
def test_a_trainable_run_from_random_init_predicts_as_the_full_run(
    tmp_path, saved_config, trainable, offline
):
    model = _trained(saved_config, trainable)
    base = base_weights_record(saved_config, None, "random", 7)
    info = _info(saved_config, "trainable", base, trainable)
    save_run(model, info, tmp_path / "small")
    save_run(model, _info(saved_config, trainable=trainable), tmp_path / "full")  # merges LoRA
    assert not (tmp_path / "small" / "model.safetensors").exists()
    small, full = load_run(tmp_path / "small").model, load_run(tmp_path / "full").model
    ids = torch.randint(0, saved_config.vocab_size, (3, 10))
    lengths = torch.tensor([10, 4, 7])
    with torch.no_grad():
        assert torch.equal(small(ids, lengths), full(ids, lengths))
    trained_size = (tmp_path / "small" / TRAINED_FILE).stat().st_size
    assert trained_size < (tmp_path / "full" / "model.safetensors").stat().st_size / 3


def test_a_trainable_run_checks_its_base_weights_file(tmp_path, saved_config, offline):
    base_file = _hf_file(tmp_path / "base.safetensors", saved_config)
    model = _trained(saved_config, base=base_file)
    base = base_weights_record(saved_config, str(base_file), "pretrained", 7)
    save_run(model, _info(saved_config, "trainable", base), tmp_path / "run")
    ids = torch.randint(0, saved_config.vocab_size, (2, 9))
    with torch.no_grad():
        assert torch.equal(load_run(tmp_path / "run").model(ids), model(ids))

    moved = base_file.rename(tmp_path / "moved.safetensors")
    with pytest.raises(GPTClassifierError) as error:
        load_run(tmp_path / "run")
    message = _one_line(error)
    assert f"base weights {base_file} (sha256 {base['sha256'][:12]}" in message
    assert "pass --weights PATH" in message
    with torch.no_grad():  # a copy elsewhere, named at load time
        assert torch.equal(load_run(tmp_path / "run", weights=str(moved)).model(ids), model(ids))

    other = _hf_file(tmp_path / "other.safetensors", saved_config, seed=6)
    with pytest.raises(GPTClassifierError) as error:
        load_run(tmp_path / "run", weights=str(other))
    assert "not the run's base weights" in _one_line(error)


def test_a_corrupt_trained_file_is_a_one_line_error(tmp_path, saved_config):
    base = base_weights_record(saved_config, None, "random", 7)
    save_run(_trained(saved_config), _info(saved_config, "trainable", base), tmp_path / "run")
    path = tmp_path / "run" / TRAINED_FILE
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(GPTClassifierError) as error:
        load_run(tmp_path / "run")
    assert "does not match its digest" in _one_line(error)


@pytest.mark.parametrize(
    ("base_weights", "words"),
    [
        ({"source": "random", "seed": 8}, "retrain with --save full"),  # torch drew otherwise
        ({"source": "random", "seed": -1}, "model.base_weights.seed must be a seed"),
        ({"source": 3}, "model.base_weights must hold a source and a sha256"),
        (None, "model.base_weights is missing"),
    ],
)
def test_a_broken_base_reference_is_a_one_line_error(tmp_path, saved_config, base_weights, words):
    base = base_weights_record(saved_config, None, "random", 7)
    save_run(_trained(saved_config), _info(saved_config, "trainable", base), tmp_path / "run")
    values = json.loads((tmp_path / "run" / "run.json").read_text())
    if base_weights is None:
        del values["model"]["base_weights"]
    else:
        values["model"]["base_weights"] = {**values["model"]["base_weights"], **base_weights}
    (tmp_path / "run" / "run.json").write_text(json.dumps(values))
    write_marker(tmp_path / "run")
    with pytest.raises(GPTClassifierError) as error:
        load_run(tmp_path / "run")
    assert words in _one_line(error)


def test_experiment_rows_save_trainable_runs_by_default(tmp_path, monkeypatch):
    from gpt_classifier.experiments import grid
    from gpt_classifier.experiments.grid import Row

    seen = []

    def fake_finetune(options, log):
        seen.append(options.save)
        raise GPTClassifierError("stopped here")

    monkeypatch.setattr(grid, "run_finetune", fake_finetune)
    rows = [Row(1, "default", {}), Row(2, "full", {"save": "full"})]
    grid.run_grid({}, rows, [123], tmp_path / "grid", log=lambda _: None)
    assert seen == ["trainable", "full"]


@pytest.mark.slow
def test_the_commands_use_a_moved_trainable_run_offline(
    tmp_path, saved_config, tokenizer_dir, small_sms_spam_file, offline
):
    from click.testing import CliRunner

    from gpt_classifier.cli.main import cli

    base_file = _hf_file(tmp_path / "base.safetensors", saved_config)
    base = base_weights_record(saved_config, str(base_file), "pretrained", 7)
    info = _info(saved_config, "trainable", base)
    save_run(
        _trained(saved_config, base=base_file), info, tmp_path / "run", tokenizer_dir=tokenizer_dir
    )
    moved = shutil.copytree(tmp_path / "run", tmp_path / "elsewhere" / "run")
    base_copy = base_file.rename(tmp_path / "elsewhere" / "base.safetensors")
    runner = CliRunner()
    result = runner.invoke(cli, ["classify", str(moved), "see you at 5"])
    assert result.exit_code == 2 and "pass --weights PATH" in result.output
    weights = ["--weights", str(base_copy)]
    result = runner.invoke(cli, ["classify", str(moved), "see you at 5", *weights])
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith("see you at 5")
    data = ["--data-file", str(small_sms_spam_file)]
    result = runner.invoke(cli, ["evaluate", str(moved), *data, *weights])
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output
