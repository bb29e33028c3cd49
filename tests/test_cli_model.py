"""``gpt-classifier download`` and ``generate``: stdout holds the result only, errors exit 2."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from gpt_classifier.cli.main import cli


def runner() -> CliRunner:
    # click < 8.2 mixes stderr into stdout unless told not to; 8.2+ keeps them apart always.
    try:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        return CliRunner()


@pytest.fixture
def tiny_json(saved_config_file) -> str:
    return str(saved_config_file)


def expected_text(tiny_json: str, tokenizer, prompt: str, new_tokens: int, seed: int = 123) -> str:
    from gpt_classifier.generation import generate, text_to_token_ids, token_ids_to_text
    from gpt_classifier.weights import build_model

    model = build_model(tiny_json, init="random", seed=seed)
    ids = generate(model, text_to_token_ids(prompt, tokenizer), new_tokens, 32, eos_id=50256)
    return token_ids_to_text(ids, tokenizer)


def test_generate_prints_only_the_text(tiny_json, tokenizer_dir, tokenizer):
    args = ["generate", "--init", "random", "--model", tiny_json, "--prompt", "Hello"]
    args += ["--max-new-tokens", "5", "--tokenizer-dir", str(tokenizer_dir)]
    result = runner().invoke(cli, [*args, "--device", "cpu", "--precision", "fp32"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Hello")
    assert result.stdout == expected_text(tiny_json, tokenizer, "Hello", 5) + "\n"


def test_generate_takes_device_and_precision(tiny_json, tokenizer_dir):
    args = ["generate", "--init", "random", "--model", tiny_json, "--prompt", "Hello"]
    args += ["--max-new-tokens", "3", "--tokenizer-dir", str(tokenizer_dir), "--device", "cpu"]
    result = runner().invoke(cli, [*args, "--precision", "bf16"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Hello")
    bad = runner().invoke(cli, [*args, "--device", "toaster"])
    assert bad.exit_code == 2 and "unknown device 'toaster'" in bad.stderr


def test_generate_sampling_is_reproducible(tiny_json, tokenizer_dir):
    args = ["generate", "--init", "random", "--model", tiny_json, "--prompt", "Every effort"]
    args += ["--tokenizer-dir", str(tokenizer_dir), "--temperature", "2", "--top-k", "40"]
    first = runner().invoke(cli, [*args, "--seed", "3"])
    second = runner().invoke(cli, [*args, "--seed", "3"])
    assert first.exit_code == 0, first.output
    assert first.stdout == second.stdout
    assert first.stdout.startswith("Every effort")


def test_generate_with_corrupt_weights(tmp_path, tokenizer_dir):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    args = ["generate", "--weights", str(weights), "--prompt", "Hi"]
    result = runner().invoke(cli, [*args, "--tokenizer-dir", str(tokenizer_dir)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: cannot read weights file {weights}")
    assert result.stderr.count("\n") == 1


def test_generate_random_with_weights_is_an_error(tmp_path, tokenizer_dir):
    args = ["generate", "--init", "random", "--weights", str(tmp_path), "--prompt", "Hi"]
    result = runner().invoke(cli, [*args, "--tokenizer-dir", str(tokenizer_dir)])
    assert result.exit_code == 2
    assert "error: --init random cannot be combined with --weights" in result.stderr


def test_generate_prompt_longer_than_context(tiny_json, tokenizer_dir):
    args = [
        "generate",
        "--init",
        "random",
        "--model",
        tiny_json,
        "--prompt",
        " ".join(["word"] * 40),
    ]
    result = runner().invoke(cli, [*args, "--tokenizer-dir", str(tokenizer_dir)])
    assert result.exit_code == 2
    assert "error: --prompt has 40 tokens but the model's context length is 32" in result.stderr


def test_download_unknown_model_lists_valid_names():
    result = runner().invoke(cli, ["download", "not-a-model"])
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: unknown model 'not-a-model'; valid names: gpt2, ")
    assert "gpt2-xl" in lines[0]


def test_download_offline_uses_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    revision = "0123456789abcdef0123456789abcdef01234567"
    storage = tmp_path / "models--openai-community--gpt2-large"
    (storage / "snapshots" / revision).mkdir(parents=True)
    (storage / "refs").mkdir()
    (storage / "refs" / "main").write_text(revision)
    cached = storage / "snapshots" / revision / "model.safetensors"
    save_file({"wte.weight": torch.zeros(2, 2)}, str(cached))

    result = runner().invoke(cli, ["download", "gpt2-large (774M)", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{cached}\n"

    result = runner().invoke(cli, ["download", "gpt2-xl", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "error: cannot get model.safetensors of openai-community/gpt2-xl"
    )


@pytest.mark.parametrize("command", [[], ["generate"], ["download"]])
def test_help(command):
    result = runner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.stdout


def console_script() -> str:
    found = shutil.which("gpt-classifier") or str(Path(sys.executable).parent / "gpt-classifier")
    if not Path(found).is_file():
        pytest.skip("the gpt-classifier console script is not installed")
    return found


@pytest.mark.slow  # two fresh interpreters importing torch: ~10 s on 2 cores
def test_console_script_exit_codes(tiny_json, tokenizer_dir, tmp_path):
    script = console_script()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hf")}
    ok = subprocess.run(
        [script, "generate", "--init", "random", "--model", tiny_json, "--prompt", "Hello"],
        env={**env, "GPT_CLASSIFIER_TOKENIZER_DIR": str(tokenizer_dir)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("Hello")

    offline = subprocess.run(
        [script, "download", "gpt2"], env=env, capture_output=True, text=True, timeout=120
    )
    assert offline.returncode == 2
    assert offline.stdout == ""
    assert offline.stderr.startswith("error: cannot get model.safetensors of openai-community/gpt2")
    assert "--weights PATH" in offline.stderr
