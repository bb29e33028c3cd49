"""Trainable policies: exactly the intended parameters train, the frozen ones stay bit-identical."""

from __future__ import annotations

import pytest
import torch

from gpt_classifier.classifier import (
    GPTClassifier,
    TrainableKind,
    TrainableSpec,
    apply_trainable,
    count_parameters,
    describe_trainable,
    first_trainable_block,
    parse_trainable,
)
from gpt_classifier.config import GPTConfig
from gpt_classifier.errors import GPTClassifierError
from gpt_classifier.model import GPTModel


def _model(cfg) -> GPTClassifier:
    return GPTClassifier(GPTModel(cfg), num_classes=2)


def _trainable_names(model) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def _one_adamw_step(model) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One step of the book's optimizer (all parameters handed over); returns before, after."""
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    gen = torch.Generator().manual_seed(3)
    x = torch.randint(0, 50257, (4, 6), generator=gen)
    y = torch.tensor([0, 1, 1, 0])
    loss = torch.nn.functional.cross_entropy(model(x, torch.tensor([6, 4, 2, 5])), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    after = {n: p.detach().clone() for n, p in model.named_parameters()}
    return before, after


def _assert_step_only_changes(model, trainable: set[str]) -> None:
    before, after = _one_adamw_step(model)
    assert set(before) == set(after)
    for name in before:
        if name in trainable:
            assert not torch.equal(before[name], after[name]), f"{name} did not change"
        else:
            assert torch.equal(before[name], after[name]), f"frozen {name} changed"


HEAD = {"gpt.out_head.weight", "gpt.out_head.bias"}
NORM = {"gpt.final_norm.scale", "gpt.final_norm.shift"}


def _block(model, index: int) -> set[str]:
    prefix = f"gpt.trf_blocks.{index}."
    return {n for n, _ in model.named_parameters() if n.startswith(prefix)}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("head", TrainableSpec(TrainableKind.HEAD)),
        ("last-block", TrainableSpec(TrainableKind.LAST_BLOCKS, 1)),
        ("last-blocks:3", TrainableSpec(TrainableKind.LAST_BLOCKS, 3)),
        (" ALL ", TrainableSpec(TrainableKind.ALL)),
        ("lora", TrainableSpec(TrainableKind.LORA)),
    ],
)
def test_parse_trainable(spec, expected):
    assert parse_trainable(spec) == expected
    assert parse_trainable(str(expected)) == expected


@pytest.mark.parametrize(
    "spec", ["", "last", "last-blocks", "last-blocks:0", "last-blocks:x", "qlora"]
)
def test_parse_trainable_rejects_bad_specs(spec):
    with pytest.raises(GPTClassifierError, match="valid forms: head, last-block, last-blocks:N"):
        parse_trainable(spec)


def test_too_many_blocks_is_rejected_when_applied(tiny_config):
    spec = parse_trainable("last-blocks:4")  # fine for GPT-2, the tiny model has 3
    with pytest.raises(GPTClassifierError, match="the model has 3"):
        apply_trainable(_model(tiny_config), spec)


def test_head_policy(tiny_config):
    model = _model(tiny_config)
    apply_trainable(model, "head")
    assert _trainable_names(model) == HEAD
    assert first_trainable_block(model) == tiny_config.n_layers
    _assert_step_only_changes(model, HEAD)


@pytest.mark.parametrize("num_blocks", [1, 2, 3])
def test_last_blocks_policy(tiny_config, num_blocks):
    model = _model(tiny_config)
    apply_trainable(model, f"last-blocks:{num_blocks}")
    n = tiny_config.n_layers
    expected = HEAD | NORM
    for index in range(n - num_blocks, n):
        expected |= _block(model, index)
    assert _trainable_names(model) == expected
    assert first_trainable_block(model) == n - num_blocks
    _assert_step_only_changes(model, expected)


def test_all_policy(tiny_config):
    model = _model(tiny_config)
    apply_trainable(model, "head")
    apply_trainable(model, "all")
    everything = {n for n, _ in model.named_parameters()}
    assert _trainable_names(model) == everything
    assert first_trainable_block(model) == 0
    _assert_step_only_changes(model, everything)


def test_reapplying_a_policy_freezes_the_previous_one(tiny_config):
    model = _model(tiny_config)
    apply_trainable(model, "all")
    apply_trainable(model, "last-block")
    assert "gpt.tok_emb.weight" not in _trainable_names(model)
    assert first_trainable_block(model) == tiny_config.n_layers - 1


def test_lora_policy(tiny_config):
    model = _model(tiny_config)
    apply_trainable(model, "lora", lora_rank=4, lora_alpha=8.0)
    names = {n for n, _ in model.named_parameters()}
    adapters = {n for n in names if ".lora." in n}
    # W_query, W_key, W_value, out_proj, ff.layers.0, ff.layers.2 in each block, A and B each
    assert len(adapters) == 6 * 2 * tiny_config.n_layers
    assert "gpt.trf_blocks.0.att.W_query.lora.A" in adapters
    assert "gpt.trf_blocks.2.ff.layers.2.lora.B" in adapters
    assert "gpt.trf_blocks.0.att.W_query.linear.weight" in names
    assert not any(".lora." in n for n in names if not n.startswith("gpt.trf_blocks."))
    assert _trainable_names(model) == adapters | HEAD
    assert first_trainable_block(model) == 0

    b_names = {n for n in adapters if n.endswith(".B")}
    assert all(not p.any() for n, p in model.named_parameters() if n in b_names)
    # B starts at zero so A gets no gradient on the first step; A still moves by weight decay
    _assert_step_only_changes(model, adapters | HEAD)
    assert all(p.any() for n, p in model.named_parameters() if n in b_names)


def test_lora_init_is_seeded_and_not_applied_twice(tiny_config):
    model_a, model_b = _model(tiny_config), _model(tiny_config)
    state = torch.get_rng_state()
    apply_trainable(model_a, "lora", lora_seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(42)
    apply_trainable(model_b, "lora", lora_seed=5)
    a = model_a.gpt.trf_blocks[1].ff.layers[0].lora.A
    torch.testing.assert_close(a, model_b.gpt.trf_blocks[1].ff.layers[0].lora.A, rtol=0, atol=0)
    count = sum(1 for _ in model_a.parameters())
    apply_trainable(model_a, "lora")
    assert sum(1 for _ in model_a.parameters()) == count


def test_lora_rank_validation(tiny_config):
    with pytest.raises(GPTClassifierError, match="LoRA rank"):
        apply_trainable(_model(tiny_config), "lora", lora_rank=0)


def test_count_parameters_counts_tied_tensors_once(tiny_config):
    model = _model(tiny_config)
    trainable, total = count_parameters(model)
    assert trainable == total == sum(p.numel() for p in model.parameters())
    model.gpt.pos_emb.weight = model.gpt.tok_emb.weight  # tie two tensors
    _, tied_total = count_parameters(model)
    assert tied_total == total - tiny_config.context_length * tiny_config.emb_dim


def test_gpt2_124m_counts_match_the_book():
    # Built on the meta device: the shapes without allocating (or initialising) 124M weights.
    with torch.device("meta"):
        gpt = GPTModel(GPTConfig.from_name("gpt2"))
    model = GPTClassifier(gpt, num_classes=2)
    assert count_parameters(model)[1] == 124_441_346
    apply_trainable(model, "last-block")
    assert count_parameters(model) == (7_090_946, 124_441_346)
    assert describe_trainable(model) == "trainable parameters: 7,090,946 of 124,441,346 (5.70 %)"
    apply_trainable(model, "head")
    assert count_parameters(model) == (1_538, 124_441_346)
    apply_trainable(model, "lora")  # rank 16 on 72 Linears: 2,654,208 adapter weights
    assert count_parameters(model) == (2_655_746, 127_095_554)
