"""The lean fine-tune (frozen weights drawn block by block, never all in memory) against the
whole model in memory: the same weights, states, losses, metrics and saved file."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from gpt_classifier.classifier import GPTClassifier, apply_trainable
from gpt_classifier.config import GPTConfig
from gpt_classifier.data import EncodedDataset
from gpt_classifier.lazy_weights import LazyWeights, save_streamed, skeleton_gpt
from gpt_classifier.training import lean
from gpt_classifier.training.cache_store import model_digest
from gpt_classifier.training.pipeline import FinetuneOptions, run_finetune
from gpt_classifier.training.prefix_cache import build_cache
from gpt_classifier.training.streamed_prefix import build_caches_streamed
from gpt_classifier.weights import random_model

# odd sizes: embeddings drawn in several blocks of rows, one of them partial
CONFIG = GPTConfig(
    vocab_size=50257,
    context_length=40,
    emb_dim=24,
    n_heads=4,
    n_layers=3,
    drop_rate=0.0,
    qkv_bias=True,
)


def _pair(seed: int = 5) -> tuple[GPTClassifier, GPTClassifier]:
    whole = GPTClassifier(random_model(CONFIG, seed), 3, pooling="last-real")
    gpt = skeleton_gpt(CONFIG)
    gpt.lazy_weights = LazyWeights(gpt, seed)
    lazy = GPTClassifier(gpt, 3, pooling="last-real")
    lean.attach(lazy, gpt)
    for model in (whole, lazy):
        apply_trainable(model, "last-block")
    return whole, lazy


def test_lazy_weights_draw_exactly_random_model_in_any_order():
    whole, lazy_model = _pair()
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


def test_digest_and_saved_file_equal_the_whole_models(tmp_path):
    whole, lazy_model = _pair()
    assert model_digest(lazy_model, 2, "fp32") == model_digest(whole, 2, "fp32")
    lean.materialize_suffix(lazy_model, 2)
    save_streamed(lazy_model, tmp_path / "lazy.safetensors", {"format": "x"})
    saved = load_file(tmp_path / "lazy.safetensors")
    expected = whole.state_dict()
    assert saved.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(saved[key], value), key


@pytest.mark.parametrize("pad_length", [None, 17])
def test_streamed_prefix_states_match_build_cache(pad_length):
    whole, lazy_model = _pair()
    generator = torch.Generator().manual_seed(0)
    ids = [
        torch.randint(0, 50257, (int(n),), generator=generator).tolist()
        for n in torch.randint(1, 18, (40,), generator=generator)
    ]
    dataset = EncodedDataset(ids, [0] * len(ids))
    expected = build_cache(whole, dataset, 2, pad_length, torch.device("cpu"))
    got = build_caches_streamed(
        lazy_model, lazy_model.lazy_weights, {"d": dataset}, {"d": pad_length}, 2
    )["d"]
    assert got.offsets == expected.offsets and got.lengths == expected.lengths
    torch.testing.assert_close(got.storage, expected.storage, atol=1e-5, rtol=1e-5)


def test_lean_run_equals_the_whole_model_run(tmp_path, micro_files, monkeypatch, tokenizer_dir):
    """A whole default fine-tune, lean and not: same losses, metrics and saved weights."""
    from gpt_classifier.training import pipeline

    streamed = []
    real = pipeline.build_caches_streamed
    monkeypatch.setattr(
        pipeline, "build_caches_streamed", lambda *a, **k: streamed.append(1) or real(*a, **k)
    )
    results = {}
    for name in ("lean", "whole"):
        if name == "whole":
            monkeypatch.setattr(lean, "lazy_gpt", lambda options, recipe: None)
        options = FinetuneOptions(
            data_file=str(micro_files["data"]),
            model=str(micro_files["config"]),
            init="random",
            epochs=2,
            precision="fp32",  # exact: bf16 would store the states rounded
            tokenizer_dir=str(tokenizer_dir),
            output_dir=str(tmp_path / name),
            progress=False,
            plots=False,
            disk_cache=False,
        )
        results[name] = run_finetune(options, log=lambda message: None)
    lean_run, whole_run = results["lean"], results["whole"]
    assert streamed == [1]  # the lean run streamed its prefix, the other did not
    assert lean_run.cached_prefix and whole_run.cached_prefix
    assert lean_run.train.step_losses == pytest.approx(whole_run.train.step_losses, abs=1e-5)
    for split in ("train", "validation", "test"):
        assert lean_run.report[split]["accuracy"] == whole_run.report[split]["accuracy"]
    lean_weights = load_file(lean_run.run_dir / "model.safetensors")
    whole_weights = load_file(whole_run.run_dir / "model.safetensors")
    assert lean_weights.keys() == whole_weights.keys()
    for key, value in whole_weights.items():
        torch.testing.assert_close(lean_weights[key], value, atol=1e-5, rtol=1e-4, msg=key)
