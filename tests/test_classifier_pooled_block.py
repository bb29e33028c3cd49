"""The last block computed at the pooled positions only (``forward_at``) against the full block:
same outputs, gradients and training losses in float32."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from gpt_classifier.classifier import GPTClassifier, apply_trainable
from gpt_classifier.model import GPTModel, TransformerBlock
from gpt_classifier.weights import build_model


def _block(tiny_config, *, causal: bool, qkv_bias: bool) -> TransformerBlock:
    cfg = dataclasses.replace(tiny_config, causal=causal, qkv_bias=qkv_bias)
    block = TransformerBlock(cfg)
    with torch.no_grad():  # non-zero biases everywhere, so every term is exercised
        for param in block.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    return block


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("qkv_bias", [True, False])
def test_forward_at_matches_the_full_block_and_its_gradients(tiny_config, causal, qkv_bias):
    block = _block(tiny_config, causal=causal, qkv_bias=qkv_bias)
    x = torch.randn(4, 9, tiny_config.emb_dim)
    positions = torch.tensor([8, 0, 3, 5])
    rows = torch.arange(4)

    full = block(x)[rows, positions]
    full_grads = torch.autograd.grad(full.square().sum(), list(block.parameters()))
    pooled = block.forward_at(x, positions)
    pooled_grads = torch.autograd.grad(pooled.square().sum(), list(block.parameters()))

    torch.testing.assert_close(pooled, full, atol=1e-5, rtol=1e-5)
    names = [name for name, _ in block.named_parameters()]
    for name, got, expected in zip(names, pooled_grads, full_grads, strict=True):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4, msg=name)


def test_training_losses_match_the_full_last_block(tiny_config):
    """Ten AdamW steps of the default recipe's trainable part (last block, final norm, head)
    give the same losses whether the last block runs everywhere or at the pooled position."""
    cfg = dataclasses.replace(tiny_config, qkv_bias=True)
    gpt = build_model(cfg, init="random", seed=1)
    reference = GPTClassifier(gpt, num_classes=2, pooling="last-real")
    apply_trainable(reference, "last-block")
    pooled_model = GPTClassifier(GPTModel(cfg), num_classes=2, pooling="last-real")
    pooled_model.load_state_dict(reference.state_dict())
    apply_trainable(pooled_model, "last-block")

    def full_path(ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return reference(ids, lengths, fast=False)  # every block at every position

    losses = {}
    for name, model, forward in (
        ("full", reference, full_path),
        ("pooled", pooled_model, pooled_model),
    ):
        generator = torch.Generator().manual_seed(7)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.1)
        losses[name] = []
        for _ in range(10):
            ids = torch.randint(0, cfg.vocab_size, (8, 12), generator=generator)
            lengths = torch.randint(1, 13, (8,), generator=generator)
            labels = torch.randint(0, 2, (8,), generator=generator)
            loss = torch.nn.functional.cross_entropy(forward(ids, lengths), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses[name].append(loss.item())
    assert losses["pooled"] == pytest.approx(losses["full"], abs=1e-5)
    assert losses["full"][0] != pytest.approx(losses["full"][-1], abs=1e-3)  # it did train


def test_forward_at_with_lora_projections_matches_the_full_block(tiny_config):
    """LoRA-wrapped projections have no single weight to move to the query side: the block
    then computes keys and values, and still equals the full block."""
    from gpt_classifier.classifier import replace_linear_with_lora

    block = _block(tiny_config, causal=True, qkv_bias=True)
    replace_linear_with_lora(block, rank=2, alpha=2.0, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for name, param in block.named_parameters():
            if "lora" in name:
                param.add_(torch.randn_like(param) * 0.1)
    x = torch.randn(3, 7, tiny_config.emb_dim)
    positions = torch.tensor([6, 2, 0])
    full = block(x)[torch.arange(3), positions]
    torch.testing.assert_close(block.forward_at(x, positions), full, atol=1e-5, rtol=1e-5)
