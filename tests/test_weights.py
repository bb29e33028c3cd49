"""Loading Hugging Face GPT-2 tensors: the mapping, strictness, file errors, build_model, hub."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from gpt_classifier import weights
from gpt_classifier.config import GPTConfig
from gpt_classifier.errors import GPTClassifierError
from gpt_classifier.model import GPTModel
from gpt_classifier.weights import (
    build_model,
    infer_config,
    load_gpt2_state_dict,
    load_pretrained,
)

# A small vocabulary keeps these files a few hundred kilobytes.
SMALL = GPTConfig(vocab_size=100, context_length=16, emb_dim=32, n_heads=4, n_layers=2)


def hf_tensors(cfg: GPTConfig = SMALL, prefix: str = "", seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors named and shaped like a Hugging Face GPT-2 checkpoint (Conv1D: in, out)."""
    g = torch.Generator().manual_seed(seed)
    E = cfg.emb_dim

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g)

    t = {"wte.weight": r(cfg.vocab_size, E), "wpe.weight": r(cfg.context_length, E)}
    for i in range(cfg.n_layers):
        h = f"h.{i}."
        t |= {
            h + "ln_1.weight": r(E),
            h + "ln_1.bias": r(E),
            h + "attn.c_attn.weight": r(E, 3 * E),
            h + "attn.c_attn.bias": r(3 * E),
            h + "attn.c_proj.weight": r(E, E),
            h + "attn.c_proj.bias": r(E),
            h + "ln_2.weight": r(E),
            h + "ln_2.bias": r(E),
            h + "mlp.c_fc.weight": r(E, 4 * E),
            h + "mlp.c_fc.bias": r(4 * E),
            h + "mlp.c_proj.weight": r(4 * E, E),
            h + "mlp.c_proj.bias": r(E),
        }
    t |= {"ln_f.weight": r(E), "ln_f.bias": r(E)}
    return {prefix + k: v for k, v in t.items()}


def write(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path


def test_mapping_puts_every_tensor_in_its_place():
    t = hf_tensors()
    model = GPTModel(SMALL)
    load_gpt2_state_dict(model, t)
    E = SMALL.emb_dim
    block = model.trf_blocks[1]
    c_attn = t["h.1.attn.c_attn.weight"]
    assert torch.equal(model.tok_emb.weight, t["wte.weight"])
    assert torch.equal(model.pos_emb.weight, t["wpe.weight"])
    assert torch.equal(block.att.W_query.weight, c_attn[:, :E].T)
    assert torch.equal(block.att.W_key.weight, c_attn[:, E : 2 * E].T)
    assert torch.equal(block.att.W_value.weight, c_attn[:, 2 * E :].T)
    assert torch.equal(block.att.W_value.bias, t["h.1.attn.c_attn.bias"][2 * E :])
    assert torch.equal(block.att.out_proj.weight, t["h.1.attn.c_proj.weight"].T)
    assert torch.equal(block.ff.layers[0].weight, t["h.1.mlp.c_fc.weight"].T)
    assert torch.equal(block.ff.layers[2].weight, t["h.1.mlp.c_proj.weight"].T)
    assert torch.equal(block.ff.layers[2].bias, t["h.1.mlp.c_proj.bias"])
    assert torch.equal(block.norm1.scale, t["h.1.ln_1.weight"])
    assert torch.equal(block.norm2.shift, t["h.1.ln_2.bias"])
    assert torch.equal(model.final_norm.scale, t["ln_f.weight"])
    # No lm_head in the file: the head is GPT-2's tied embedding, one Parameter.
    assert model.out_head.weight is model.tok_emb.weight


def test_transformer_prefix_and_mask_buffers_are_accepted():
    t = hf_tensors(prefix="transformer.")
    n = SMALL.context_length
    for i in range(SMALL.n_layers):  # what old checkpoints (and OpenAI's Hub files) carry
        t[f"transformer.h.{i}.attn.bias"] = torch.tril(torch.ones(n, n)).view(1, 1, n, n)
        t[f"transformer.h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    model = GPTModel(SMALL)
    load_gpt2_state_dict(model, t)
    assert torch.equal(model.tok_emb.weight, t["transformer.wte.weight"])


def test_lm_head_equal_to_wte_is_tied_and_a_different_one_is_kept():
    t = hf_tensors()
    model = GPTModel(SMALL)
    load_gpt2_state_dict(model, t | {"lm_head.weight": t["wte.weight"].clone()})
    assert model.out_head.weight is model.tok_emb.weight

    head = torch.randn(SMALL.vocab_size, SMALL.emb_dim)
    model = build_model(
        SMALL, init="random"
    )  # starts tied: loading must untie, not overwrite tok_emb
    load_gpt2_state_dict(model, t | {"lm_head.weight": head})
    assert model.out_head.weight is not model.tok_emb.weight
    assert torch.equal(model.out_head.weight, head)
    assert torch.equal(model.tok_emb.weight, t["wte.weight"])


def test_wrong_shape_names_tensor_and_both_shapes():
    t = hf_tensors()
    t["h.1.mlp.c_fc.weight"] = torch.zeros(32, 100)
    with pytest.raises(GPTClassifierError) as info:
        load_gpt2_state_dict(GPTModel(SMALL), t, source="x.safetensors")
    message = str(info.value)
    assert "h.1.mlp.c_fc.weight has shape (32, 100) but the model needs (32, 128)" in message
    assert message.startswith("x.safetensors") and "\n" not in message


def test_missing_tensor_is_named():
    t = hf_tensors()
    del t["h.0.ln_2.bias"]
    with pytest.raises(GPTClassifierError, match=r"missing tensor\(s\) h\.0\.ln_2\.bias \(32\)"):
        load_gpt2_state_dict(GPTModel(SMALL), t)


def test_unexpected_tensor_is_named():
    t = hf_tensors() | {"score.weight": torch.zeros(2, 32)}
    with pytest.raises(GPTClassifierError, match=r"unexpected tensor\(s\) score\.weight"):
        load_gpt2_state_dict(GPTModel(SMALL), t)


def test_a_name_present_with_and_without_prefix_is_named():
    t = hf_tensors() | {"transformer.wte.weight": torch.zeros(100, 32)}
    with pytest.raises(GPTClassifierError, match=r"x: tensor wte\.weight appears twice \(as wte\."):
        load_gpt2_state_dict(GPTModel(SMALL), t, source="x")


def test_failed_check_leaves_model_untouched():
    model = GPTModel(SMALL)
    before = model.tok_emb.weight.clone()
    t = hf_tensors()
    del t["ln_f.bias"]
    with pytest.raises(GPTClassifierError):
        load_gpt2_state_dict(model, t)
    assert torch.equal(model.tok_emb.weight, before)


@pytest.mark.parametrize("cut", [0.5, 0.001])
def test_truncated_file_names_the_file(tmp_path, cut):
    path = write(tmp_path / "model.safetensors", hf_tensors())
    data = path.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * cut))])
    with pytest.raises(GPTClassifierError, match=rf"cannot read weights file {path}"):
        load_pretrained(str(path), config=SMALL)


def test_not_safetensors_is_refused(tmp_path):
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(b"\x80\x02pickle")
    with pytest.raises(GPTClassifierError, match=r"expected a \.safetensors file"):
        load_pretrained(str(path))


def test_load_file_with_explicit_config(tmp_path):
    t = hf_tensors(prefix="transformer.")
    path = write(tmp_path / "w.safetensors", t)
    model = load_pretrained(str(path), config=SMALL)
    assert not model.training
    assert torch.equal(model.trf_blocks[0].norm1.scale, t["transformer.h.0.ln_1.weight"])
    assert model.out_head.weight is model.tok_emb.weight
    assert all(not p.is_meta for p in model.parameters())


def test_dtype_is_applied(tmp_path):
    path = write(tmp_path / "w.safetensors", hf_tensors())
    model = load_pretrained(str(path), config=SMALL, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_config_inferred_from_shapes_and_config_json(tmp_path):
    write(tmp_path / "model.safetensors", hf_tensors())
    # Heads cannot be read off shapes for a non-standard width: ask for a config.
    with pytest.raises(GPTClassifierError, match=r"attention heads.*--model CONFIG\.json"):
        load_pretrained(str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(
        json.dumps({"n_embd": 32, "n_head": 4, "n_layer": 2, "activation_function": "gelu_new"})
    )
    model = load_pretrained(str(tmp_path))  # a Hugging Face model directory
    assert model.cfg == SMALL


def test_standard_width_gives_heads():
    shapes = {"wte.weight": (50257, 1024), "wpe.weight": (1024, 1024), "h.23.ln_1.weight": (1024,)}
    cfg = infer_config(shapes)
    assert (cfg.emb_dim, cfg.n_heads, cfg.n_layers, cfg.qkv_bias) == (1024, 16, 24, False)


def test_unsupported_hf_variant_is_refused(tmp_path):
    write(tmp_path / "model.safetensors", hf_tensors())
    (tmp_path / "config.json").write_text(
        json.dumps({"n_embd": 32, "n_head": 4, "activation_function": "relu"})
    )
    with pytest.raises(GPTClassifierError, match="activation_function='relu'"):
        load_pretrained(str(tmp_path))


def test_directory_without_weights(tmp_path):
    with pytest.raises(GPTClassifierError, match="holds no model.safetensors"):
        load_pretrained(str(tmp_path))


def test_sharded_directory(tmp_path):
    t = hf_tensors(prefix="transformer.")
    keys = sorted(t)
    half = len(keys) // 2
    write(tmp_path / "model-00001-of-00002.safetensors", {k: t[k] for k in keys[:half]})
    write(tmp_path / "model-00002-of-00002.safetensors", {k: t[k] for k in keys[half:]})
    weight_map = {
        k: f"model-0000{1 if j < half else 2}-of-00002.safetensors" for j, k in enumerate(keys)
    }
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    model = load_pretrained(str(tmp_path), config=SMALL)
    assert torch.equal(model.final_norm.shift, t["transformer.ln_f.bias"])


# --- build_model: the CLI's --model / --weights / --init ------------------------------------


def config_file(tmp_path: Path, cfg: GPTConfig = SMALL) -> str:
    path = tmp_path / "small.json"
    path.write_text(json.dumps(cfg.to_dict()))
    return str(path)


def test_random_init_is_deterministic_by_seed(tmp_path):
    model_json = config_file(tmp_path)
    a = build_model(model_json, init="random", seed=1)
    b = build_model(model_json, init="random", seed=1)
    c = build_model(model_json, init="random", seed=2)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.tok_emb.weight, c.tok_emb.weight)
    assert a.out_head.weight is a.tok_emb.weight
    assert not a.training


def test_random_init_is_gpt2_style():
    model = build_model(
        GPTConfig(vocab_size=1000, emb_dim=64, n_heads=4, n_layers=4), init="random", seed=0
    )
    assert abs(model.tok_emb.weight.std().item() - 0.02) < 2e-3
    assert torch.count_nonzero(model.trf_blocks[0].att.W_query.bias) == 0
    assert torch.equal(model.final_norm.scale, torch.ones(64))
    residual = model.trf_blocks[0].ff.layers[2].weight.std().item()
    assert abs(residual - 0.02 / (2 * 4) ** 0.5) < 1e-3
    logits = model(torch.randint(0, 1000, (1, 8)))
    assert logits.abs().max() < 5  # sane, unlike PyTorch's default init


def test_build_model_from_weights_with_config_file(tmp_path):
    path = write(tmp_path / "w.safetensors", hf_tensors())
    model = build_model(config_file(tmp_path), weights=str(path))
    assert model.cfg == SMALL
    # A GPT-2 name as --model (the default) means: read the architecture off the weights.
    with pytest.raises(GPTClassifierError, match="number of attention heads"):
        build_model("gpt2", weights=str(path))


def test_random_with_weights_is_an_error(tmp_path):
    with pytest.raises(GPTClassifierError, match="--init random cannot be combined with --weights"):
        build_model("gpt2", weights=str(tmp_path / "w.safetensors"), init="random")


def test_pretrained_from_config_file_needs_weights(tmp_path):
    with pytest.raises(GPTClassifierError, match="pass --weights PATH or use --init random"):
        build_model(config_file(tmp_path))


def test_missing_weights_path(tmp_path):
    with pytest.raises(GPTClassifierError, match="weights not found"):
        build_model("gpt2", weights=str(tmp_path / "nope.safetensors"))


def test_name_loads_downloaded_file_with_the_names_config(tmp_path, monkeypatch):
    path = write(tmp_path / "model.safetensors", hf_tensors())
    monkeypatch.setattr(weights, "download_weights", lambda name, cache_dir=None: path)
    model = load_pretrained("gpt2", config=SMALL)
    assert torch.equal(model.tok_emb.weight, hf_tensors()["wte.weight"])
    # Without a config the name fixes the size, and these small tensors do not fit it.
    with pytest.raises(GPTClassifierError, match=r"does not fit the model \(emb_dim=768"):
        build_model("gpt2")


# --- hub: offline behaviour with a hand-made Hugging Face cache -------------------------------

REVISION = "607a30d783dfa663caf39e06633721c8d4cfcd7e"


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """HF_HUB_OFFLINE=1, as huggingface_hub read it at import, and an empty default cache."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "default"))


def fill_cache(cache: Path, repo: str = "gpt2") -> Path:
    """The layout hf_hub_download leaves: snapshots/<commit>/file and refs/main -> <commit>."""
    storage = cache / f"models--openai-community--{repo}"
    snapshot = storage / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    (storage / "refs").mkdir()
    (storage / "refs" / "main").write_text(REVISION)
    return write(snapshot / "model.safetensors", hf_tensors())


def test_offline_download_returns_cached_file(offline, tmp_path):
    cached = fill_cache(tmp_path / "cache")
    path = weights.download_weights("gpt2-small (124M)", cache_dir=tmp_path / "cache")
    assert path == cached
    model = load_pretrained(str(path), config=SMALL)
    assert torch.equal(model.pos_emb.weight, hf_tensors()["wpe.weight"])


def test_offline_download_with_empty_cache_fails_cleanly(offline, tmp_path):
    with pytest.raises(GPTClassifierError) as info:
        weights.download_weights("gpt2-medium", cache_dir=tmp_path / "empty")
    message = str(info.value)
    assert "openai-community/gpt2-medium" in message and "offline" in message
    assert "--weights PATH" in message and "--init random" in message


def test_offline_build_model_without_cache_fails_cleanly(offline):
    with pytest.raises(GPTClassifierError, match="not in the local cache"):
        build_model("gpt2")


def test_unknown_model_name_lists_valid_ones():
    with pytest.raises(GPTClassifierError, match="valid names: gpt2, gpt2-medium"):
        weights.download_weights("not-a-model")


# --- shard names of an index stay in the model folder; unreadable files (issue 12) ------------


def _sharded(folder: Path, names: list[str]) -> dict[str, torch.Tensor]:
    """An index mapping the tensors of ``hf_tensors()`` to ``names`` in turn (shards unwritten)."""
    t = hf_tensors()
    weight_map = {key: names[i % len(names)] for i, key in enumerate(sorted(t))}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return t


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("../outside.safetensors", "lies outside the model folder"),
        ("sub/../../outside.safetensors", "lies outside the model folder"),
        ("..", "lies outside the model folder"),
        ("/etc/passwd", "is an absolute path"),
        ("//etc/passwd", "is an absolute path"),
        (5, "shard names must be file names (got 5)"),
        ("", 'shard names must be file names (got "")'),
        (None, "shard names must be file names (got null)"),
    ],
)
def test_index_shards_outside_the_folder_are_refused(tmp_path, name, words):
    t = _sharded(tmp_path / "model", ["ok.safetensors", name])
    write(tmp_path / "outside.safetensors", t)  # a real file there: opened before
    with pytest.raises(GPTClassifierError) as error:
        load_pretrained(str(tmp_path / "model"), config=SMALL)
    message = str(error.value)
    assert words in message and "model.safetensors.index.json" in message, message
    assert "\n" not in message


def test_index_shards_in_subfolders_and_linked_blobs_load(tmp_path):
    """A Hugging Face cache snapshot: the names stay inside, the files link to ../../blobs."""
    snapshot, blobs = tmp_path / "snapshots" / "abc", tmp_path / "blobs"
    t = _sharded(snapshot, ["part/one.safetensors", "part/../two.safetensors"])
    keys = sorted(t)
    blobs.mkdir()
    write(blobs / "1", {k: t[k] for i, k in enumerate(keys) if i % 2 == 0})
    write(blobs / "2", {k: t[k] for i, k in enumerate(keys) if i % 2 == 1})
    (snapshot / "part").mkdir()
    (snapshot / "part" / "one.safetensors").symlink_to(Path("../../../blobs/1"))
    (snapshot / "two.safetensors").symlink_to(Path("../../blobs/2"))
    model = load_pretrained(str(snapshot), config=SMALL)
    assert torch.equal(model.final_norm.shift, t["ln_f.bias"])


def test_index_that_is_not_an_index(tmp_path):
    (tmp_path / "model.safetensors.index.json").write_text("[" * 100_000)
    with pytest.raises(GPTClassifierError, match="not a valid safetensors index"):
        load_pretrained(str(tmp_path), config=SMALL)
    (tmp_path / "model.safetensors.index.json").write_text('{"weight_map": ["a"]}')
    with pytest.raises(GPTClassifierError, match="not a valid safetensors index"):
        load_pretrained(str(tmp_path), config=SMALL)


@pytest.mark.parametrize("target", ["model.safetensors.index.json", "one.safetensors", "."])
def test_unreadable_weights_are_one_line_errors(tmp_path, unprivileged, target):
    """A file (or the folder) without permissions: a real EACCES, for root too."""
    t = _sharded(tmp_path / "model", ["one.safetensors"])
    write(tmp_path / "model" / "one.safetensors", t)
    path = tmp_path / "model" / target
    path.chmod(0)

    def load() -> None:
        with pytest.raises(GPTClassifierError, match="cannot read .*permission denied"):
            load_pretrained(str(tmp_path / "model"), config=SMALL)

    try:
        unprivileged(load)
    finally:
        path.chmod(0o755)


@pytest.mark.parametrize(
    "target", ["model.safetensors.index.json", "one.safetensors", "folder", "parent"]
)
def test_permission_errors_on_weights_even_as_root(tmp_path, deny_access, target):
    folder = tmp_path / "model"
    t = _sharded(folder, ["one.safetensors"])
    write(folder / "one.safetensors", t)
    denied = folder if target in ("folder", "parent") else folder / target

    deny_access(denied, target)
    with pytest.raises(GPTClassifierError) as error:
        load_pretrained(str(folder), config=SMALL)
    message = str(error.value)
    assert "cannot read" in message and "permission denied" in message and "\n" not in message


# --- one loading path: a skeleton on meta, read module by module -----------------------------


def test_lazy_load_checks_everything_and_reads_nothing(tmp_path):
    t = hf_tensors()
    path = write(tmp_path / "w.safetensors", t)
    gpt = load_pretrained(str(path), config=SMALL, lazy=True)
    assert all(p.is_meta for p in gpt.parameters())
    gpt.lazy_weights.materialize("trf_blocks.1")
    assert torch.equal(gpt.trf_blocks[1].ff.layers[0].weight, t["h.1.mlp.c_fc.weight"].T)
    assert gpt.trf_blocks[0].norm1.scale.is_meta
    t["h.1.mlp.c_fc.weight"] = torch.zeros(32, 100)
    with pytest.raises(GPTClassifierError, match=r"h\.1\.mlp\.c_fc\.weight has shape \(32, 100\)"):
        load_pretrained(str(write(tmp_path / "bad.safetensors", t)), config=SMALL, lazy=True)


def test_the_package_uses_no_test_tools():
    package = Path(__file__).resolve().parents[1] / "src" / "gpt_classifier"
    for path in package.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "unittest" not in text and "import pytest" not in text, path
