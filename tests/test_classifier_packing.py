"""Packed batches: texts end to end in rows, each seeing only itself, give the padded answers."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from gpt_classifier.classifier import GPTClassifier
from gpt_classifier.classifier.packing import layout, pack, packing_of
from gpt_classifier.config import EOT_TOKEN_ID
from gpt_classifier.data.encoding import pad_token_ids
from gpt_classifier.errors import GPTClassifierError
from gpt_classifier.inference import TextClassifier
from gpt_classifier.model import GPTModel

LENGTHS = [5, 1, 9, 3, 12, 2, 7]


def _texts(lengths=LENGTHS) -> list[list[int]]:
    generator = torch.Generator().manual_seed(3)
    return [torch.randint(0, 50257, (n,), generator=generator).tolist() for n in lengths]


def _padded_logits(model: GPTClassifier, encoded: list[list[int]]) -> torch.Tensor:
    ids = pad_token_ids(encoded, max(map(len, encoded)), EOT_TOKEN_ID)
    return model(ids, torch.tensor([len(t) for t in encoded]))


def pack_rows(lengths: list[int], row_tokens: int) -> list[list[int]]:
    segments = layout(lengths, row_tokens)[1]
    return [sorted(set(row.tolist()) - {-1}) for row in segments]


def test_rows_take_texts_in_order_while_they_fit():
    assert pack_rows([5, 1, 9, 3, 12, 2, 7], 12) == [[0, 1], [2, 3], [4], [5, 6]]
    assert pack_rows([20, 3], 8) == [[0], [1]]  # too long for a row: a row of its own
    assert pack_rows([4, 4, 4], 1024) == [[0, 1, 2]]


def test_pack_places_every_token_at_its_own_position_and_unpacks_back():
    encoded = _texts()
    packed = pack(encoded, 12, pad_token_id=EOT_TOKEN_ID)
    assert packed.input_ids.shape == (4, 12)
    assert packed.input_ids[0, :6].tolist() == encoded[0] + encoded[1]
    assert packed.positions[0, :6].tolist() == [0, 1, 2, 3, 4, 0]
    assert packed.segments[0].tolist() == [0] * 5 + [1] + [-1] * 6
    assert packed.input_ids[0, 6:].eq(EOT_TOKEN_ID).all()
    ids, positions = packed.tokens()
    assert ids.tolist() == [t for text in encoded for t in text]
    assert positions.tolist() == [p for text in encoded for p in range(len(text))]
    hidden = ids[:, None].float()  # a "state" that is the token id itself
    unpacked = packed.unpack(hidden)[..., 0]
    for row, ids in enumerate(encoded):
        assert unpacked[row, : len(ids)].tolist() == ids
        assert unpacked[row, len(ids) :].eq(0).all()


def test_the_mask_keeps_each_text_to_itself_and_its_past():
    packed = pack([[1, 2], [3, 4, 5]], 8, pad_token_id=0)
    packing = packing_of(packed.segments)
    mask = packing.mask[0, 0]
    assert mask[1].tolist() == [True, True, False, False, False]
    assert mask[2].tolist() == [False, False, True, False, False]
    assert mask[4].tolist() == [False, False, True, True, True]
    unmasked = packing_of(packed.segments, causal=False).mask[0, 0]
    assert unmasked[0].tolist() == [True, True, False, False, False]
    assert unmasked[2].tolist() == [False, False, True, True, True]
    assert packing.cells.tolist() == [0, 1, 2, 3, 4]


def test_rows_round_trip_packed_tokens_and_keep_shape_padding_out():
    packed = pack([[1, 2], [3, 4, 5], [6]], 4, pad_token_id=0)  # rows [0], [1, 2]
    packing = packing_of(packed.segments)
    tokens = torch.arange(8, dtype=torch.float32)[:, None]  # 6 real tokens, 2 of shape padding
    rows = packing.to_rows(tokens)
    assert rows[..., 0].tolist() == [[0, 1, 0, 0], [2, 3, 4, 5]]
    assert packing.from_rows(rows, 8)[:, 0].tolist() == [0, 1, 2, 3, 4, 5, 0, 0]


@pytest.mark.parametrize("pooling", ["last-real", "first", "mean"])
@pytest.mark.parametrize("row_tokens", [1024, 12, 4])
def test_packed_logits_equal_the_padded_batch(tiny_config, pooling, row_tokens):
    model = GPTClassifier(GPTModel(tiny_config), 3, pooling=pooling).eval()
    encoded = _texts()
    with torch.no_grad():
        expected = _padded_logits(model, encoded)
        got = model.forward_packed(pack(encoded, row_tokens, EOT_TOKEN_ID))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("n_layers", [1, 2])
def test_packing_works_for_shallow_models(tiny_config, n_layers):
    config = dataclasses.replace(tiny_config, n_layers=n_layers)
    model = GPTClassifier(GPTModel(config), 2).eval()
    encoded = _texts()
    with torch.no_grad():
        expected = _padded_logits(model, encoded)
        got = model.forward_packed(pack(encoded, 16, EOT_TOKEN_ID))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_models_whose_answers_depend_on_padding_refuse_to_pack(tiny_config):
    last = GPTClassifier(GPTModel(tiny_config), 2, pooling="last")
    unmasked = GPTClassifier(GPTModel(tiny_config), 2)
    unmasked.gpt.disable_causal_mask()
    for model in (last, unmasked):
        assert not model.can_pack
        with pytest.raises(GPTClassifierError, match="packed batches need the causal mask"):
            model.forward_packed(pack(_texts(), 16, EOT_TOKEN_ID))
    assert GPTClassifier(GPTModel(tiny_config), 2).can_pack


def test_text_classifier_packs_to_the_same_probabilities(saved_run, tokenizer_dir):
    classifier = TextClassifier.from_run(saved_run, tokenizer_dir=tokenizer_dir, precision="fp32")
    assert classifier.can_pack
    encoded, _ = classifier.encode_texts(
        ["WINNER!! Claim your prize now", "ok", "see you at 5? bring the milk please", "lol"]
    )
    torch.testing.assert_close(
        classifier.forward_packed(encoded, row_tokens=8),
        classifier.forward(encoded),
        atol=1e-6,
        rtol=0,
    )


def test_packing_under_bf16_stays_close(saved_run, tokenizer_dir):
    classifier = TextClassifier.from_run(saved_run, tokenizer_dir=tokenizer_dir, precision="bf16")
    encoded, _ = classifier.encode_texts(["WINNER!! Claim your prize now", "ok", "see you at 5?"])
    torch.testing.assert_close(
        classifier.forward_packed(encoded), classifier.forward(encoded), atol=2e-2, rtol=0
    )
