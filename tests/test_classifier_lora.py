"""LoRA (appendix E): the layer's maths, in-place replacement, and merging back."""

from __future__ import annotations

import torch
from torch import nn

from gpt_classifier.classifier import (
    GPTClassifier,
    LinearWithLoRA,
    LoRALayer,
    apply_trainable,
    has_lora,
    merge_lora,
    replace_linear_with_lora,
)
from gpt_classifier.model import GPTModel


def test_lora_layer_shapes_init_and_scaling():
    layer = LoRALayer(6, 5, rank=2, alpha=8.0, generator=torch.Generator().manual_seed(0))
    assert layer.A.shape == (6, 2) and layer.B.shape == (2, 5)
    assert not layer.B.any()
    assert layer.A.abs().max() <= 1 / 2**0.5  # kaiming_uniform(a=sqrt(5)) bound: 1/sqrt(rank)
    with torch.no_grad():
        layer.B.normal_()
    x = torch.randn(3, 4, 6)
    torch.testing.assert_close(layer(x), 8.0 / 2 * (x @ layer.A @ layer.B))


def test_linear_with_lora_starts_as_the_linear():
    linear = nn.Linear(6, 5)
    wrapped = LinearWithLoRA(linear, rank=3, alpha=3.0)
    x = torch.randn(2, 6)
    torch.testing.assert_close(wrapped(x), linear(x), rtol=0, atol=0)


def test_linear_with_lora_computes_the_books_sum_and_its_gradients():
    # The forward is fused (one addmm, the scaling folded into B): same values and gradients as
    # the book's linear(x) + lora(x).
    torch.manual_seed(0)
    wrapped = LinearWithLoRA(nn.Linear(6, 5), rank=3, alpha=6.0)
    with torch.no_grad():
        wrapped.lora.B.normal_()
    x = torch.randn(2, 4, 6, requires_grad=True)
    fused = wrapped(x)
    fused.square().sum().backward()
    fused_grads = [t.grad.clone() for t in (x, wrapped.lora.A, wrapped.lora.B)]
    for t in (x, wrapped.lora.A, wrapped.lora.B):
        t.grad = None
    books = wrapped.linear(x) + wrapped.lora(x)
    books.square().sum().backward()
    torch.testing.assert_close(fused, books)
    for got, want in zip(
        fused_grads, (x.grad, wrapped.lora.A.grad, wrapped.lora.B.grad), strict=True
    ):
        torch.testing.assert_close(got, want)


def test_frozen_weights_kept_in_bf16_give_autocasts_exact_results():
    """Under bf16 autocast the frozen Linear runs from a bf16 copy kept between passes: the
    outputs and every gradient are bit-identical to autocast casting the weights itself."""
    torch.manual_seed(0)
    wrapped = LinearWithLoRA(nn.Linear(16, 12), rank=4, alpha=8.0)
    wrapped.linear.requires_grad_(False)
    with torch.no_grad():
        wrapped.lora.B.normal_()

    def run(frozen_linear):
        wrapped._frozen_linear = frozen_linear
        x = torch.randn(3, 5, 16, generator=torch.Generator().manual_seed(1), requires_grad=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = wrapped(x)
        out.float().square().sum().backward()
        grads = [t.grad.clone() for t in (x, wrapped.lora.A, wrapped.lora.B)]
        wrapped.lora.A.grad = wrapped.lora.B.grad = None
        del wrapped._frozen_linear
        return out, grads

    kept, kept_grads = run(LinearWithLoRA._frozen_linear.__get__(wrapped))
    assert wrapped._bf16_copy is not None and wrapped._bf16_copy[1].dtype == torch.bfloat16
    cast, cast_grads = run(wrapped.linear)  # autocast's own cast, every pass
    assert kept.dtype == torch.bfloat16 and torch.equal(kept, cast)
    for got, want in zip(kept_grads, cast_grads, strict=True):
        assert torch.equal(got, want)
    with torch.no_grad():
        wrapped.linear.weight.add_(1.0)  # a changed weight is copied again
    with torch.autocast("cpu", dtype=torch.bfloat16):
        wrapped(torch.randn(2, 16))
    assert torch.equal(wrapped._bf16_copy[1], wrapped.linear.weight.to(torch.bfloat16))


def test_replace_linear_with_lora_in_place_and_idempotent(tiny_config):
    gpt = GPTModel(tiny_config)
    assert replace_linear_with_lora(gpt.trf_blocks, rank=2, alpha=2.0) == 6 * tiny_config.n_layers
    assert isinstance(gpt.trf_blocks[0].att.W_query, LinearWithLoRA)
    assert isinstance(gpt.trf_blocks[0].ff.layers[2], LinearWithLoRA)
    assert replace_linear_with_lora(gpt.trf_blocks, rank=2, alpha=2.0) == 0
    assert isinstance(gpt.out_head, nn.Linear)


def test_merged_and_unmerged_give_the_same_logits(tiny_config):
    model = GPTClassifier(GPTModel(tiny_config), num_classes=3)
    apply_trainable(model, "lora", lora_rank=4, lora_alpha=8.0)
    # train one step so B is non-zero, as after fine-tuning
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x = torch.randint(0, 50257, (4, 7), generator=torch.Generator().manual_seed(2))
    lengths = torch.tensor([7, 3, 5, 1])
    loss = nn.functional.cross_entropy(model(x, lengths), torch.tensor([0, 1, 2, 1]))
    loss.backward()
    optimizer.step()
    assert model.gpt.trf_blocks[0].att.W_key.lora.B.any()

    model.eval()
    with torch.no_grad():
        unmerged = model(x, lengths)
        assert merge_lora(model) == 6 * tiny_config.n_layers
        merged = model(x, lengths)
    assert not has_lora(model)
    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=0)
    # the merged model has the plain GPTModel tree: its state dict loads into a fresh one
    fresh = GPTClassifier(GPTModel(tiny_config), num_classes=3).eval()
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh(x, lengths), merged, rtol=0, atol=0)
