"""Why this label: occlusion scores are what deleting each token does, the pieces make the text,
the explanation is faithful on a trained model, and `classify --explain` prints it."""

from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner

from gpt_classifier.classifier import GPTClassifier
from gpt_classifier.cli.main import cli
from gpt_classifier.config import GPTConfig
from gpt_classifier.inference import RunInfo, TextClassifier, save_run
from gpt_classifier.inference.explain import (
    deletion_faithfulness,
    explain,
    log_odds,
    occlusion_inputs,
)
from gpt_classifier.inference.file_stream import read_texts
from gpt_classifier.model import GPTModel

SMALL = GPTConfig(
    vocab_size=50257, context_length=32, emb_dim=16, n_heads=2, n_layers=2, drop_rate=0.0
)


@pytest.fixture(scope="module")
def classifier(saved_run, tokenizer_dir):
    return TextClassifier.from_run(saved_run, device="cpu", tokenizer_dir=tokenizer_dir)


@pytest.fixture(scope="module")
def last_pooling_classifier(tmp_path_factory, tokenizer_dir):
    """The book's position -1 pooling with per-batch padding: a deleted token changes where the
    model reads, so each variant must be read at its own last token."""
    torch.manual_seed(5)
    model = GPTClassifier(GPTModel(SMALL), 3, pooling="last", head_seed=5)
    info = RunInfo(
        gpt_config=SMALL,
        classes=("a", "b", "c"),
        pooling="last",
        padding="batch",
        max_length=20,
        pad_length=None,
    )
    run = save_run(model, info, tmp_path_factory.mktemp("last") / "run")
    return TextClassifier.from_run(run, device="cpu", tokenizer_dir=tokenizer_dir)


def test_occlusion_inputs_delete_each_token_once():
    assert occlusion_inputs([5, 6, 7], pad_token_id=0) == [[5, 6, 7], [6, 7], [5, 7], [5, 6]]
    # A one-token text cannot be read without its token: "nothing" is the end-of-text token.
    assert occlusion_inputs([9], pad_token_id=50256) == [[9], [50256]]


@pytest.mark.parametrize("fixture", ["classifier", "last_pooling_classifier"])
def test_scores_are_the_log_odds_lost_by_deleting_each_token(request, fixture):
    clf: TextClassifier = request.getfixturevalue(fixture)
    text = "Free entry in 2 a wkly comp"
    explanation = explain(clf, text)
    ids = clf.encode_texts([text])[0][0]
    best = clf.classes.index(explanation.label)
    full = clf.forward([ids])[0]  # alone: no padding at all
    assert explanation.probability == pytest.approx(full[best].item(), abs=1e-5)
    assert len(explanation.tokens) == len(ids)
    for i, token in enumerate(explanation.tokens):
        alone = clf.forward([ids[:i] + ids[i + 1 :]])[0, best].item()
        assert token.token_id == ids[i]
        assert token.probability_without == pytest.approx(alone, abs=1e-5)
        expected = log_odds(full[best].item()) - log_odds(alone)
        assert token.score == pytest.approx(expected, abs=1e-3)


def test_token_pieces_rebuild_the_text_even_across_split_characters(classifier):
    text = "héllo 😀 wörld"  # the emoji is two byte-level tokens
    explanation = explain(classifier, text)
    pieces = [token.token for token in explanation.tokens]
    assert "".join(pieces) == text
    assert "😀" in pieces and not any("\ufffd" in piece for piece in pieces)
    assert not explanation.truncated


def test_a_text_longer_than_the_model_reads_is_explained_as_read(classifier):
    explanation = explain(classifier, " ".join(["word"] * 40))  # the run reads 12 tokens
    assert explanation.truncated and len(explanation.tokens) == 12


def test_a_one_token_text_is_scored_against_the_end_of_text_token(classifier):
    (token,) = explain(classifier, "ok").tokens
    eot = classifier.forward([[classifier.info.pad_token_id]])[0]
    best = classifier.classes.index(explain(classifier, "ok").label)
    assert token.probability_without == pytest.approx(eot[best].item(), abs=1e-5)
    assert math.isfinite(token.score)


def test_several_texts_share_batches_and_match_one_by_one(classifier):
    texts = ["WINNER!! Claim your prize now", "see you at 5?", "ok"]
    together = explain(classifier, texts)
    for text, explanation in zip(texts, together, strict=True):
        alone = explain(classifier, text)
        assert explanation.label == alone.label
        assert [t.score for t in explanation.tokens] == pytest.approx(
            [t.score for t in alone.tokens], abs=1e-4
        )


def test_deleting_the_top_scored_tokens_hurts_more_than_random_ones(
    micro_run, micro_files, tokenizer_dir
):
    clf = TextClassifier.from_run(micro_run, device="cpu", tokenizer_dir=tokenizer_dir)
    _, texts = read_texts(micro_files["data"])
    result = deletion_faithfulness(clf, texts, k=3, draws=5, seed=0)
    assert result.texts == len(texts)
    assert result.top_drop > result.random_drop + 0.01
    assert result.top_wins > 0.5


def test_faithfulness_needs_texts_longer_than_k(classifier):
    with pytest.raises(ValueError, match="more than 3 tokens"):
        deletion_faithfulness(classifier, ["ok", "hi there"], k=3)


def _classify(*args):
    return CliRunner().invoke(cli, ["classify", *[str(a) for a in args]])


def test_classify_explain_prints_each_token_with_its_score(saved_run, tokenizer_dir, classifier):
    result = _classify(saved_run, "--tokenizer-dir", tokenizer_dir, "--explain", "see you at 5?")
    assert result.exit_code == 0, result.output
    label_line, why_line = result.stdout.splitlines()[:2]
    expected = explain(classifier, "see you at 5?")
    assert label_line.startswith(f"{expected.label}\t")
    assert why_line.startswith("  why: ")
    for token in expected.tokens:
        assert f"{json.dumps(token.token)} {token.score:+.2f}" in why_line


def test_classify_explain_json_carries_the_tokens(saved_run, tokenizer_dir, classifier):
    result = _classify(saved_run, "--tokenizer-dir", tokenizer_dir, "--explain", "--json", "ok 😀")
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout.splitlines()[0])
    tokens = line["explanation"]["tokens"]
    assert "".join(t["token"] for t in tokens) == "ok 😀"
    assert line["explanation"]["method"] == "occlusion"
    expected = explain(classifier, "ok 😀")
    assert [t["score"] for t in tokens] == pytest.approx([t.score for t in expected.tokens])


def test_classify_explain_refuses_output(saved_run, tmp_path):
    texts = tmp_path / "in.txt"
    texts.write_text("hello\n")
    result = _classify(saved_run, "--file", texts, "--output", tmp_path / "out.csv", "--explain")
    assert result.exit_code == 2
    assert "--explain prints to the terminal" in result.output
