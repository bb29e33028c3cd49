"""The lean fine-tune (frozen weights read block by block from their source, never all in
memory) against the whole model in memory: the same weights, states, losses, metrics and file,
for GPT-2's random initialisation and for weights in Hugging Face layout."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from gpt_classifier.classifier import GPTClassifier, apply_trainable
from gpt_classifier.config import GPTConfig, resolve_config
from gpt_classifier.data import EncodedDataset
from gpt_classifier.data.encoding import pad_token_ids
from gpt_classifier.model import GPTModel
from gpt_classifier.training import pipeline
from gpt_classifier.training.cache_store import prefix_digests
from gpt_classifier.training.pipeline import FinetuneOptions, run_finetune
from gpt_classifier.training.prefix_cache import build_caches
from gpt_classifier.weights import (
    build_model,
    init_gpt2_module,
    lazy_weights_of,
    load_pretrained,
    save_streamed,
)

# odd sizes: embeddings read in several pieces of rows, one of them partial
CONFIG = GPTConfig(
    vocab_size=50257,
    context_length=40,
    emb_dim=24,
    n_heads=4,
    n_layers=3,
    drop_rate=0.0,
    qkv_bias=True,
)


def _reference(cfg: GPTConfig, seed: int) -> GPTModel:
    """GPT-2's initialisation of the whole model at once, from the seeded global generator."""
    model = GPTModel(cfg)
    torch.manual_seed(seed)
    for name, child in model.named_children():
        if name != "out_head":
            init_gpt2_module(child, name, cfg.n_layers)
    model.out_head.weight = model.tok_emb.weight  # tied, as GPT-2's
    return model


def save_hf_layout(model: GPTModel, folder) -> str:
    """``model`` as a Hugging Face GPT-2 folder (Conv1D weights transposed, c_attn fused)."""
    folder.mkdir(parents=True, exist_ok=True)
    t = {"wte.weight": model.tok_emb.weight, "wpe.weight": model.pos_emb.weight}
    for i, block in enumerate(model.trf_blocks):
        h, att = f"h.{i}.", block.att
        qkv = (att.W_query, att.W_key, att.W_value)
        t |= {
            h + "ln_1.weight": block.norm1.scale,
            h + "ln_1.bias": block.norm1.shift,
            h + "attn.c_attn.weight": torch.cat([w.weight.T for w in qkv], dim=1),
            h + "attn.c_attn.bias": torch.cat([w.bias for w in qkv]),
            h + "attn.c_proj.weight": att.out_proj.weight.T,
            h + "attn.c_proj.bias": att.out_proj.bias,
            h + "ln_2.weight": block.norm2.scale,
            h + "ln_2.bias": block.norm2.shift,
            h + "mlp.c_fc.weight": block.ff.layers[0].weight.T,
            h + "mlp.c_fc.bias": block.ff.layers[0].bias,
            h + "mlp.c_proj.weight": block.ff.layers[2].weight.T,
            h + "mlp.c_proj.bias": block.ff.layers[2].bias,
        }
    t |= {"ln_f.weight": model.final_norm.scale, "ln_f.bias": model.final_norm.shift}
    tensors = {"transformer." + k: v.detach().contiguous() for k, v in t.items()}
    save_file(tensors, str(folder / "model.safetensors"))
    c = model.cfg
    hf_config = {"n_embd": c.emb_dim, "n_head": c.n_heads, "n_layer": c.n_layers}
    (folder / "config.json").write_text(json.dumps(hf_config))
    return str(folder)


def _pair(lazy_gpt: GPTModel, whole_gpt: GPTModel) -> tuple[GPTClassifier, GPTClassifier]:
    whole = GPTClassifier(whole_gpt, 3, pooling="last-real")
    lazy = GPTClassifier(lazy_gpt, 3, pooling="last-real")
    lazy.lazy_weights = lazy_gpt.lazy_weights
    for model in (whole, lazy):
        apply_trainable(model, "last-block")
    return whole, lazy


@pytest.fixture(params=["random", "pretrained"])
def pair(request, tmp_path) -> tuple[GPTClassifier, GPTClassifier]:
    if request.param == "random":
        return _pair(build_model(CONFIG, init="random", seed=5, lazy=True), _reference(CONFIG, 5))
    folder = save_hf_layout(_reference(CONFIG, 7), tmp_path / "hf")
    return _pair(load_pretrained(folder, lazy=True), load_pretrained(folder))


def test_random_init_is_the_whole_models_initialisation():
    expected = _reference(CONFIG, 5).state_dict()
    got = build_model(CONFIG, init="random", seed=5).state_dict()
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert torch.equal(got[name], value), name


def test_sources_give_the_whole_models_weights_in_any_order(pair):
    whole, lazy_model = pair
    lazy = lazy_model.lazy_weights
    for name in ["trf_blocks.1", "tok_emb", "final_norm", "trf_blocks.0", "pos_emb"]:
        expected = whole.gpt.get_submodule(name).state_dict()
        got = lazy.tensors(name)
        assert got.keys() == expected.keys()
        for key in expected:
            assert torch.equal(got[key], expected[key]), (name, key)
    rows = torch.tensor([0, 5, 4095, 4096, 50256])
    assert torch.equal(lazy.embedding_rows("tok_emb", rows), whole.gpt.tok_emb.weight[rows])
    assert all(p.is_meta for p in lazy_model.gpt.trf_blocks.parameters())  # nothing kept


def test_digest_and_saved_file_equal_the_whole_models(pair, tmp_path):
    whole, lazy_model = pair
    assert prefix_digests(lazy_model, 2, "fp32")[2] == prefix_digests(whole, 2, "fp32")[2]
    for name in ("trf_blocks.2", "final_norm"):  # what trains
        lazy_model.lazy_weights.materialize(name)
    save_streamed(lazy_model, tmp_path / "lazy.safetensors", {"format": "x"})
    saved = load_file(tmp_path / "lazy.safetensors")
    expected = whole.state_dict()
    assert saved.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(saved[key], value), key


@pytest.mark.parametrize(("pad_length", "causal"), [(None, True), (17, True), (17, False)])
def test_lean_prefix_states_are_each_texts_own(pair, pad_length, causal):
    whole, lazy_model = pair
    if not causal:
        whole.gpt.disable_causal_mask()
        lazy_model.gpt.disable_causal_mask()
    generator = torch.Generator().manual_seed(0)
    ids = [
        torch.randint(0, 50257, (int(n),), generator=generator).tolist()
        for n in torch.randint(1, 18, (40,), generator=generator)
    ]
    dataset = EncodedDataset(ids, [0] * len(ids))
    cpu = torch.device("cpu")
    got = build_caches(lazy_model, {"d": dataset}, {"d": pad_length}, 2, cpu)["d"]
    assert lazy_model.lazy_weights.names and not lazy_model.lazy_weights.is_materialized(
        "trf_blocks.0"
    )  # drawn for the prefix, then released
    for index, text in enumerate(ids):
        padded = pad_token_ids([text], pad_length or len(text))
        with torch.inference_mode():
            alone = whole.gpt.hidden_states(padded, 2)[0]
        torch.testing.assert_close(got.state(index), alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("source", ["random", "pretrained"])
def test_lean_run_equals_the_whole_model_run(
    tmp_path, micro_files, monkeypatch, tokenizer_dir, source
):
    """A whole default fine-tune, lean and not: same losses, metrics and saved weights."""
    lazy = []
    real = pipeline.build_caches

    def recording(model, *args, **kwargs):
        lazy.append(lazy_weights_of(model) is not None)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(pipeline, "build_caches", recording)
    weights = {"init": "random"}
    if source == "pretrained":
        cfg = resolve_config(str(micro_files["config"]))
        weights = {"weights": save_hf_layout(_reference(cfg, 3), tmp_path / "hf")}
    results = {}
    for name in ("lean", "whole"):
        if name == "whole":
            monkeypatch.setattr(pipeline, "_lean_applies", lambda *args: False)
        options = FinetuneOptions(
            data_file=str(micro_files["data"]),
            model=str(micro_files["config"]),
            epochs=2,
            precision="fp32",  # exact: bf16 would store the states rounded
            tokenizer_dir=str(tokenizer_dir),
            output_dir=str(tmp_path / name),
            progress=False,
            plots=False,
            disk_cache=False,
            **weights,
        )
        results[name] = run_finetune(options, log=lambda message: None)
    lean_run, whole_run = results["lean"], results["whole"]
    assert lazy == [True, False]  # the lean run drew its frozen blocks one by one
    assert lean_run.cached_prefix and whole_run.cached_prefix
    assert lean_run.train.step_losses == pytest.approx(whole_run.train.step_losses, abs=1e-5)
    for split in ("train", "validation", "test"):
        assert lean_run.report[split]["accuracy"] == whole_run.report[split]["accuracy"]
    lean_weights = load_file(lean_run.run_dir / "model.safetensors")
    whole_weights = load_file(whole_run.run_dir / "model.safetensors")
    assert lean_weights.keys() == whole_weights.keys()
    for key, value in whole_weights.items():
        torch.testing.assert_close(lean_weights[key], value, atol=1e-5, rtol=1e-4, msg=key)
