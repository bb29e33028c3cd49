"""GPTModel's structure (the book's printout), configs by name and file, causal masking."""

from __future__ import annotations

import json

import pytest
import torch

from gpt_classifier.config import GPTConfig, canonical_model_name, resolve_config
from gpt_classifier.errors import GPTClassifierError
from gpt_classifier.model import GPTModel

# The book's chapter 6 printout of the 124M model (attribute names of this code: the book calls
# drop_resid ``drop_shortcut``). The book elides blocks 1-11, which repeat block 0.
BOOK_BLOCK = """\
    ({i}): TransformerBlock(
      (att): MultiHeadAttention(
        (W_query): Linear(in_features=768, out_features=768, bias=True)
        (W_key): Linear(in_features=768, out_features=768, bias=True)
        (W_value): Linear(in_features=768, out_features=768, bias=True)
        (out_proj): Linear(in_features=768, out_features=768, bias=True)
        (dropout): Dropout(p=0.0, inplace=False)
      )
      (ff): FeedForward(
        (layers): Sequential(
          (0): Linear(in_features=768, out_features=3072, bias=True)
          (1): GELU()
          (2): Linear(in_features=3072, out_features=768, bias=True)
        )
      )
      (norm1): LayerNorm()
      (norm2): LayerNorm()
      (drop_resid): Dropout(p=0.0, inplace=False)
    )
"""
BOOK_PRINTOUT = (
    """\
GPTModel(
  (tok_emb): Embedding(50257, 768)
  (pos_emb): Embedding(1024, 768)
  (drop_emb): Dropout(p=0.0, inplace=False)
  (trf_blocks): Sequential(
"""
    + "".join(BOOK_BLOCK.format(i=i) for i in range(12))
    + """\
  )
  (final_norm): LayerNorm()
  (out_head): Linear(in_features=768, out_features=50257, bias=False)
)"""
)


def test_printout_matches_the_book():
    with torch.device("meta"):  # structure only: no memory, no init time
        model = GPTModel(GPTConfig.from_name("gpt2"))
    assert str(model) == BOOK_PRINTOUT


@pytest.mark.parametrize(
    ("names", "emb_dim", "n_layers", "n_heads"),
    [
        (
            ["gpt2", "gpt2-small (124M)", "124M", "openai-community/gpt2", "GPT2-Small (124M)"],
            768,
            12,
            12,
        ),
        (["gpt2-medium", "gpt2-medium (355M)", "355M"], 1024, 24, 16),
        (["gpt2-large", "gpt2-large (774M)", "774M"], 1280, 36, 20),
        (["gpt2-xl", "gpt2-xl (1558M)", "1558M", " gpt2-xl "], 1600, 48, 25),
    ],
)
def test_config_names_and_aliases(names, emb_dim, n_layers, n_heads):
    for name in names:
        cfg = GPTConfig.from_name(name)
        assert (cfg.emb_dim, cfg.n_layers, cfg.n_heads) == (emb_dim, n_layers, n_heads), name
        assert (cfg.vocab_size, cfg.context_length, cfg.qkv_bias) == (50257, 1024, True)
        assert resolve_config(name) == cfg


def test_unknown_name_lists_valid_names():
    with pytest.raises(GPTClassifierError, match=r"unknown model 'gpt3'.*gpt2-medium.*gpt2-xl"):
        canonical_model_name("gpt3")


def test_config_from_json_file(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps({"emb_dim": 32, "n_heads": 4, "n_layers": 2, "drop_rate": 0.1}))
    cfg = resolve_config(str(path))
    assert (cfg.emb_dim, cfg.n_heads, cfg.n_layers, cfg.drop_rate) == (32, 4, 2, 0.1)
    assert cfg.vocab_size == 50257  # defaults fill the rest


def test_config_file_unknown_key(tmp_path):
    path = tmp_path / "typo.json"
    path.write_text(json.dumps({"emb_dim": 32, "n_head": 4}))
    with pytest.raises(GPTClassifierError, match=r"unknown config key\(s\) n_head"):
        resolve_config(str(path))


def test_config_file_bad_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{emb_dim: 32,")
    with pytest.raises(GPTClassifierError, match="not valid JSON"):
        resolve_config(str(path))


def test_config_file_missing(tmp_path):
    with pytest.raises(GPTClassifierError, match="not found"):
        resolve_config(str(tmp_path / "nope.json"))


def test_invalid_config_values():
    with pytest.raises(GPTClassifierError, match="divisible"):
        GPTConfig(emb_dim=30, n_heads=4)


def test_output_shape(tiny_config):
    model = GPTModel(tiny_config).eval()
    idx = torch.randint(0, tiny_config.vocab_size, (2, 7))
    with torch.no_grad():
        logits = model(idx)
    assert logits.shape == (2, 7, tiny_config.vocab_size)


def test_too_long_input_raises(tiny_config):
    model = GPTModel(tiny_config)
    idx = torch.zeros(1, tiny_config.context_length + 1, dtype=torch.long)
    with pytest.raises(ValueError, match="exceeds the context length"):
        model(idx)


@pytest.mark.parametrize("causal", [True, False])
def test_causal_switch(tiny_config, causal):
    model = GPTModel(tiny_config.replace(causal=causal)).eval()
    idx = torch.randint(0, tiny_config.vocab_size, (1, 10))
    changed = idx.clone()
    changed[0, -1] = (idx[0, -1] + 1) % tiny_config.vocab_size  # only the last token differs
    with torch.no_grad():
        before, after = model(idx), model(changed)
    earlier_same = torch.allclose(before[:, :-1], after[:, :-1], atol=1e-6)
    # Causal: positions before the change cannot see it; without the mask they all can.
    assert earlier_same is causal
    assert not torch.allclose(before[:, -1], after[:, -1])


@pytest.mark.parametrize("causal", [True, False])
def test_a_block_on_packed_texts_equals_the_block_on_each_text_alone(tiny_config, causal):
    """The block's packed option (texts end to end, each attending only to itself), with
    trailing rows of shape padding that must not change anything."""
    from gpt_classifier.classifier.packing import layout, packing_of
    from gpt_classifier.model import TransformerBlock

    torch.manual_seed(0)
    block = TransformerBlock(tiny_config.replace(causal=causal)).eval()
    lengths = [5, 1, 9, 3, 7]
    texts = [torch.randn(n, tiny_config.emb_dim) for n in lengths]
    _, segments = layout(lengths, 10)
    packed = torch.cat([*texts, torch.zeros(4, tiny_config.emb_dim)])  # 4 rows of shape padding
    with torch.no_grad():
        out = block(packed, packing_of(segments, causal))
        alone = torch.cat([block(text[None])[0] for text in texts])
    torch.testing.assert_close(out[: sum(lengths)], alone, atol=1e-5, rtol=1e-5)
    assert out.shape == packed.shape
