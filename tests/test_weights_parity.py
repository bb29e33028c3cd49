"""The central correctness test: our GPTModel with loaded weights computes what transformers'
GPT2LMHeadModel computes, for the same weights, in both file layouts we accept.

Layouts: ``save_pretrained`` (a model directory with config.json, keys ``transformer.*``) and
OpenAI's files on the Hub (no prefix, ``h.{i}.attn.bias`` causal-mask buffers, no lm_head).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from gpt_classifier.config import EOT_TOKEN_ID, GPTConfig
from gpt_classifier.generation import generate_text_simple
from gpt_classifier.weights import load_pretrained

pytestmark = pytest.mark.transformers

LOGIT_TOLERANCE = 1e-4
NEW_TOKENS = 20
TEXTS = [
    "Every effort moves you",
    "Hello, do you have time",
    "Congratulations! You have won a free ticket to the Bahamas. Reply WIN to claim.",
    "I'll be home late tonight, don't wait up for dinner<|endoftext|>",
]


def hf_gpt2(n_embd: int, n_layer: int, n_head: int, n_positions: int):
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(
        vocab_size=50257,
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        activation_function="gelu_new",  # the tanh approximation, as OpenAI's GPT-2
        layer_norm_epsilon=1e-5,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    # Greedy generation must run its full length: no stopping at <|endoftext|>.
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = EOT_TOKEN_ID
    return model


def save_both_layouts(hf, folder: Path) -> tuple[Path, Path]:
    """(model directory from save_pretrained, Hub-style .safetensors file)."""
    model_dir = folder / "hf-dir"
    hf.save_pretrained(model_dir)
    n = hf.config.n_positions
    tensors = {k: v.detach().clone().contiguous() for k, v in hf.transformer.state_dict().items()}
    for i in range(hf.config.n_layer):  # as in openai-community/gpt2's model.safetensors
        tensors[f"h.{i}.attn.bias"] = torch.tril(torch.ones(n, n)).view(1, 1, n, n)
    hub_file = folder / "hub-layout" / "model.safetensors"
    hub_file.parent.mkdir()
    save_file(tensors, str(hub_file))
    return model_dir, hub_file


def right_padded(tokenizer, texts: list[str]) -> torch.Tensor:
    """Real texts padded with <|endoftext|>; no mask needed, both models see the same ids and,
    being causal, the real tokens' logits do not depend on the padding after them."""
    from gpt_classifier.tokenizer import encode

    rows = [encode(tokenizer, text) for text in texts]
    width = max(map(len, rows))
    return torch.tensor([row + [EOT_TOKEN_ID] * (width - len(row)) for row in rows])


def max_logit_diff(ours, hf, ids: torch.Tensor) -> float:
    with torch.no_grad():
        expected = hf(ids).logits
        actual = ours(ids)
    assert actual.shape == expected.shape
    print(f"  max |logit| {expected.abs().max().item():.3f}", end="")
    return (actual - expected).abs().max().item()


def greedy_ids_match(ours, hf, prompt: torch.Tensor) -> None:
    with torch.no_grad():
        expected = hf.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            do_sample=False,
            max_new_tokens=NEW_TOKENS,
        )
    actual = generate_text_simple(
        ours, prompt, max_new_tokens=NEW_TOKENS, context_size=ours.cfg.context_length
    )
    assert expected.shape == (1, prompt.shape[1] + NEW_TOKENS)
    assert actual.tolist() == expected.tolist()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    hf = hf_gpt2(n_embd=64, n_layer=2, n_head=4, n_positions=128)
    model_dir, hub_file = save_both_layouts(hf, tmp_path_factory.mktemp("small"))
    return hf, model_dir, hub_file


@pytest.fixture(scope="module")
def gpt2_124m(tmp_path_factory):
    hf = hf_gpt2(n_embd=768, n_layer=12, n_head=12, n_positions=1024)
    model_dir, hub_file = save_both_layouts(hf, tmp_path_factory.mktemp("gpt2-124m"))
    return hf, model_dir, hub_file


def test_small_model_parity(small, record_property):
    hf, model_dir, hub_file = small
    config = GPTConfig(context_length=128, emb_dim=64, n_heads=4, n_layers=2)
    from_dir = load_pretrained(str(model_dir))  # architecture from config.json
    from_hub_file = load_pretrained(str(hub_file), config=config)
    assert from_dir.cfg == config
    assert from_hub_file.out_head.weight is from_hub_file.tok_emb.weight

    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 50257, (3, 40), generator=generator)
    diffs = [max_logit_diff(ours, hf, ids) for ours in (from_dir, from_hub_file)]
    record_property("max_abs_logit_diff_small", max(diffs))
    print(f"\nsmall config (64/2/4): max |logit diff| vs transformers = {max(diffs):.3e}")
    assert max(diffs) < LOGIT_TOLERANCE

    greedy_ids_match(from_dir, hf, ids[:1, :10])
    greedy_ids_match(from_hub_file, hf, ids[1:2, :10])


@pytest.mark.slow
def test_gpt2_124m_parity_on_real_text(gpt2_124m, tokenizer, record_property):
    hf, model_dir, hub_file = gpt2_124m
    from_dir = load_pretrained(str(model_dir))
    from_hub_file = load_pretrained(str(hub_file))  # heads from the standard 768 -> 12
    assert from_hub_file.cfg == GPTConfig.from_name("gpt2")
    assert from_dir.cfg == GPTConfig.from_name("gpt2")

    ids = right_padded(tokenizer, TEXTS)
    diffs = [max_logit_diff(ours, hf, ids) for ours in (from_dir, from_hub_file)]
    record_property("max_abs_logit_diff_124m", max(diffs))
    print(f"\n124M config: max |logit diff| vs transformers = {max(diffs):.3e}")
    assert max(diffs) < LOGIT_TOLERANCE

    from gpt_classifier.generation import text_to_token_ids

    prompt = text_to_token_ids("Every effort moves you", tokenizer)
    greedy_ids_match(from_hub_file, hf, prompt)


def test_generate_command_defaults_to_greedy_fp32_as_transformers(
    small, tokenizer_dir, monkeypatch
):
    """`gpt-classifier generate` with its defaults (greedy, float32 even on a CPU with fast
    bf16, where bf16 picked other tokens than transformers for GPT-2 124M) continues a prompt
    with the tokens transformers picks from the same weights."""
    from click.testing import CliRunner

    from gpt_classifier import precision
    from gpt_classifier.cli import model_commands
    from gpt_classifier.cli.main import cli
    from gpt_classifier.generation import token_ids_to_text
    from gpt_classifier.tokenizer import encode, get_tokenizer

    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: True)
    used, autocast = [], precision.autocast
    monkeypatch.setattr(model_commands, "autocast", lambda d, p: used.append(p) or autocast(d, p))

    hf, model_dir, _ = small
    tokenizer = get_tokenizer(tokenizer_dir)
    prompt = TEXTS[0]
    ids = torch.tensor([encode(tokenizer, prompt)])
    with torch.no_grad():
        expected = hf.generate(
            ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=NEW_TOKENS
        )[0].tolist()
    if EOT_TOKEN_ID in expected[ids.shape[1] :]:  # ours stops there
        expected = expected[: expected.index(EOT_TOKEN_ID, ids.shape[1])]
    args = ["generate", "--weights", str(model_dir), "--prompt", prompt]
    args += ["--max-new-tokens", str(NEW_TOKENS), "--tokenizer-dir", str(tokenizer_dir)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert result.stdout == token_ids_to_text(torch.tensor(expected), tokenizer) + "\n"
    assert used == ["fp32"]
