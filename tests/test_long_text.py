"""Texts longer than the context: windows (data/windows.py), their combination per text
(classifier/pooling.py), training on the combined prediction and inference with the run's mode."""

from __future__ import annotations

import json
import random

import pytest
import torch

from gpt_classifier.classifier.pooling import combine_probabilities, combine_windows
from gpt_classifier.data.encoding import EncodedDataset, make_loader
from gpt_classifier.data.windows import (
    LongText,
    chunk_window_starts,
    reads_all,
    text_windows,
    window_texts,
)
from gpt_classifier.errors import GPTClassifierError
from gpt_classifier.inference.explain import (
    explain,
    explanation_from_probabilities,
    log_odds,
    occlusion_inputs,
    run_inputs,
    text_occlusion_inputs,
)
from gpt_classifier.inference.predict import TextClassifier
from gpt_classifier.runs.run_dir import read_run_info
from gpt_classifier.tokenizer import encode
from gpt_classifier.training.pipeline import FinetuneOptions, run_finetune

CONTEXT = 32
WORDS = ("the", "a", "of", "and", "to", "in", "is", "it", "that", "was", "for", "on", "are")
WORDS += ("with", "as", "be", "at", "by", "this", "from", "or", "have", "an")


def _proba(classifier, texts, **kwargs):
    """``predict_proba`` (a NumPy array) as a tensor, to compare."""
    return torch.from_numpy(classifier.predict_proba(texts, **kwargs))


def test_chunks_cover_every_token_within_the_window_length():
    rng = random.Random(0)
    for _ in range(300):
        total, length = rng.randint(1, 400), rng.randint(1, 40)
        reading = LongText("chunks", chunk_stride=rng.choice([None, rng.randint(1, 50)]))
        reading = LongText("chunks", chunk_stride=reading.chunk_stride, max_chunks=10_000)
        ids = list(range(total))
        windows = text_windows(ids, length, reading)
        assert all(0 < len(window) <= length for window in windows)
        assert set().union(*map(set, windows)) == set(ids)
        assert all(window == ids[window[0] : window[0] + len(window)] for window in windows)
        assert reads_all(total, length, reading)


def test_max_chunks_bounds_the_windows_keeping_the_first_and_the_last():
    ids = list(range(1000))
    windows = text_windows(ids, 10, LongText("chunks", max_chunks=4))
    assert len(windows) == 4
    assert windows[0] == ids[:10] and windows[-1] == ids[-10:]
    assert not reads_all(1000, 10, LongText("chunks", max_chunks=4))


def test_head_tail_keeps_the_start_and_the_end_in_one_window():
    ids = list(range(100))
    (window,) = text_windows(ids, 10, LongText("head-tail", head_fraction=0.3))
    assert window == [0, 1, 2, *range(93, 100)]
    assert text_windows(ids[:5], 10, LongText("head-tail")) == [ids[:5]]
    assert text_windows(ids, 10, LongText()) == [ids[:10]]


def test_window_texts_numbers_each_window_by_its_text():
    windows, owners = window_texts([[1] * 5, [2] * 25, [3] * 3], 10, LongText("chunks"))
    assert owners == [0, 1, 1, 1, 2]
    assert [len(w) for w in windows] == [5, 10, 10, 10, 3]
    assert window_texts([[1] * 5], 10, LongText("chunks"))[1] is None  # nothing to combine


@pytest.mark.parametrize(
    "reading",
    [dict(mode="skim"), dict(head_fraction=1.5), dict(max_chunks=0), dict(chunk_stride=True)],
)
def test_invalid_readings_are_one_line_errors(reading):
    with pytest.raises(GPTClassifierError, match="invalid long-text reading"):
        LongText(**reading)


def test_mean_of_window_logits_is_the_head_of_the_mean_pooled_state():
    head = torch.nn.Linear(8, 3)
    pooled = torch.randn(5, 8)
    owners = torch.tensor([0, 0, 1, 2, 2])
    expected = head(combine_windows(pooled, owners))
    assert torch.allclose(combine_windows(head(pooled), owners), expected, atol=1e-6)
    logits = head(pooled)
    probabilities = combine_probabilities(torch.softmax(logits, -1), owners)
    assert torch.allclose(probabilities, torch.softmax(expected, -1), atol=1e-6)


def test_chunks_cost_nothing_when_every_text_fits():
    """No text over the context (the SMS default): the same rows and batches as truncate."""
    texts, labels = [[7] * n for n in (5, 30, 12, 32, 3)], [0, 1, 0, 1, 1]
    datasets = [
        EncodedDataset(texts, labels, max_length=CONTEXT, long_text=LongText(mode))
        for mode in ("truncate", "chunks")
    ]
    assert datasets[1].text_index is None and datasets[1].input_ids == datasets[0].input_ids
    batches = [
        list(make_loader(d, 2, shuffle=True, drop_last=True, pad_length=None)) for d in datasets
    ]
    for truncated, chunked in zip(*batches, strict=True):
        assert chunked.owners is None
        assert all(torch.equal(a, b) for a, b in zip(truncated[:4], chunked[:4], strict=True))


def test_a_loader_keeps_every_window_of_a_text_in_its_batch():
    texts = [[7] * n for n in (5, 70, 12, 40, 33, 3)]
    dataset = EncodedDataset(
        texts, [0, 1, 0, 1, 1, 0], max_length=CONTEXT, long_text=LongText("chunks")
    )
    loader = make_loader(dataset, 2, shuffle=True, drop_last=False, pad_length=None)
    seen = []
    for batch in loader:
        texts_in_batch = {dataset.text_index[i] for i in batch.indices.tolist()}
        assert len(batch.labels) == len(texts_in_batch) == int(batch.owners.max()) + 1
        seen += texts_in_batch
    assert sorted(seen) == list(range(6))


def _filler_file(tmp_path, count: int = 160):
    """Labels decided by the last word, after ~2 windows of filler the two classes share."""
    rng = random.Random(0)
    lines = []
    for i in range(count):
        label, marker = ("spam", "yes") if i % 2 else ("ham", "no")
        filler = " ".join(rng.choice(WORDS) for _ in range(40))
        lines.append(f"{label}\t{filler} verdict {marker}\n")
    path = tmp_path / "long.tsv"
    path.write_text("".join(lines))
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            dict(vocab_size=50257, context_length=CONTEXT, emb_dim=32, n_heads=2, n_layers=2)
            | dict(drop_rate=0.0, qkv_bias=True)
        )
    )
    return path, config


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tokenizer_dir):
    """Runs on the filler task by mode, each trained once for the module: (result, log)."""
    runs: dict[str, tuple] = {}

    def train(mode: str):
        if mode not in runs:
            logs: list[str] = []
            runs[mode] = (_train(tmp_path_factory.mktemp(mode), tokenizer_dir, mode, logs), logs)
        return runs[mode]

    return train


def _train(tmp_path, tokenizer_dir, mode: str, logs: list[str]):
    data, config = _filler_file(tmp_path)
    options = FinetuneOptions(
        output_dir=str(tmp_path / mode),
        data_file=str(data),
        model=str(config),
        init="random",
        tokenizer_dir=str(tokenizer_dir),
        trainable="all",
        epochs=3,
        lr=1e-3,
        precision="fp32",
        long_text=mode,
        progress=False,
        plots=False,
        disk_cache=False,
    )
    return run_finetune(options, log=logs.append)


@pytest.mark.parametrize("mode", ["chunks", "head-tail", "truncate"])
def test_evidence_past_the_context_is_learnt_unless_truncated(trained, mode):
    result, logs = trained(mode)
    accuracy = result.report["test"]["accuracy"]
    if mode == "truncate":
        assert accuracy < 0.75  # the first 32 tokens are filler alone: chance
        assert any("partly read (truncate)" in m and "--long-text chunks" in m for m in logs)
    else:
        assert accuracy >= 0.9
    assert read_run_info(result.run_dir).long_text.mode == mode


def test_classify_reads_long_texts_as_the_run_says(trained, tokenizer_dir, tokenizer):
    run = trained("chunks")[0].run_dir
    assert json.loads((run / "run.json").read_text())["inputs"]["long_text"]["mode"] == "chunks"
    classifier = TextClassifier.from_run(run, tokenizer_dir=tokenizer_dir, precision="fp32")
    text = " ".join(["the"] * 70) + " verdict yes"
    assert classifier.classify(text).label == "spam"
    ids = tokenizer.encode(text)
    windows, owners = window_texts([ids], CONTEXT, classifier.long_text)
    assert len(windows) == 3
    inputs = torch.tensor(windows)
    with torch.no_grad():
        logits = classifier.model(inputs, torch.tensor([CONTEXT] * 3), owners=torch.tensor(owners))
    expected = torch.softmax(logits, -1)[0]
    assert torch.allclose(_proba(classifier, [text])[0], expected, atol=1e-5)


LONG = "free prize now, call me at noon or see you soon " * 3  # 37 tokens: 5 windows, all read
MIXED = ["hi", " ".join(["free prize now"] * 20), "see you at noon", "call " * 9 + "me"]


@pytest.fixture(scope="module")
def random_chunks_run(tmp_path_factory, tokenizer_dir):
    """An untrained saved run (context 32, read to 12 tokens) that reads long texts in chunks."""
    from tests.conftest import save_tiny_run

    chunks = LongText("chunks", chunk_stride=8, max_chunks=5)
    run = save_tiny_run(tmp_path_factory.mktemp("chunks") / "run", 3, long_text=chunks)
    return run, TextClassifier.from_run(run, tokenizer_dir=tokenizer_dir, precision="fp32")


def test_mixed_short_and_long_texts_predict_as_one_at_a_time(random_chunks_run):
    classifier = random_chunks_run[1]
    together = _proba(classifier, MIXED, batch_size=3)
    assert classifier.truncated == 1  # 60 tokens in windows of 12, 8 apart: more than 5
    alone = torch.cat([_proba(classifier, [text]) for text in MIXED])
    assert torch.allclose(together, alone, atol=1e-5)
    with pytest.raises(GPTClassifierError, match="use encode_windows"):
        classifier.encode_texts(MIXED)  # one window a text: refused for chunks, not wrong


def test_a_200000_character_text_costs_max_chunks_windows(random_chunks_run):
    classifier = random_chunks_run[1]
    text = "lorem ipsum dolor sit amet " * 7_500  # 202,500 characters
    windows, owners, partly_read = classifier.encode_windows([text])
    assert len(windows) == 5 == len(owners) and partly_read == 1
    assert classifier.predict_proba([text]).shape == (1, 2)


def test_the_server_batches_windows_and_answers_per_text(random_chunks_run):
    pytest.importorskip("fastapi", reason="serving needs the 'serve' extra")
    from fastapi.testclient import TestClient

    from gpt_classifier.serving import create_app

    classifier = random_chunks_run[1]
    with TestClient(create_app(classifier, max_texts=4, max_queue=128)) as client:
        body = client.post("/classify", json={"texts": MIXED}).json()
        assert client.get("/info").json()["long_text"] == "chunks"
        explained = client.post("/explain", json={"text": LONG}).json()
    expected = _proba(classifier, MIXED)
    got = [[p["probabilities"][c] for c in ("ham", "spam")] for p in body["predictions"]]
    assert torch.allclose(torch.tensor(got), expected, atol=1e-5)
    assert body["truncated"] == 1
    expected = explain(classifier, LONG)
    assert [t["token"] for t in explained["tokens"]] == [t.token for t in expected.tokens]
    scores = [t["score"] for t in explained["tokens"]]
    assert scores == pytest.approx([t.score for t in expected.tokens], abs=1e-5)


def test_a_text_of_one_window_is_explained_as_before(random_chunks_run):
    classifier = random_chunks_run[1]
    ids = encode(classifier.tokenizer, MIXED[2])
    inputs = text_occlusion_inputs(classifier, ids)
    assert inputs == occlusion_inputs(ids, classifier.info.pad_token_id)
    probabilities = run_inputs(classifier, inputs)  # the single-window path, exactly
    got = explain(classifier, MIXED[2])
    assert got == explanation_from_probabilities(classifier, ids, probabilities, False)
    best = classifier.classes.index(got.label)
    base = log_odds(float(probabilities[0, best]))
    lost = [base - log_odds(p) for p in probabilities[1:, best].tolist()]
    assert [t.score for t in got.tokens] == lost and [t.token_id for t in got.tokens] == ids


def test_a_long_text_is_explained_across_its_windows(random_chunks_run):
    classifier = random_chunks_run[1]
    ids = encode(classifier.tokenizer, LONG)
    length, reading = classifier.max_tokens, classifier.long_text
    starts = chunk_window_starts(len(ids), length, reading)
    assert len(starts) > 1 and reads_all(len(ids), length, reading)
    assert len(text_occlusion_inputs(classifier, ids)) == len(starts) * (length + 1)
    got = explain(classifier, LONG)
    assert not got.truncated and [t.token_id for t in got.tokens] == ids  # each once, in order
    assert "".join(t.token for t in got.tokens) == LONG
    windows = text_windows(ids, length, reading)
    full = combine_probabilities(run_inputs(classifier, windows), [0] * len(windows))[0]
    best = classifier.classes.index(got.label)
    assert got.probability == pytest.approx(float(full[best]), abs=1e-6)
    for t, token in enumerate(got.tokens):  # direct: delete t from every window holding it
        deleted = [
            w[: t - s] + w[t - s + 1 :] if s <= t < s + length else w
            for s, w in zip(starts, windows, strict=True)
        ]
        assert any(d != w for d, w in zip(deleted, windows, strict=True))
        p = combine_probabilities(run_inputs(classifier, deleted), [0] * len(windows))[0, best]
        assert token.score == pytest.approx(
            log_odds(float(full[best])) - log_odds(float(p)), abs=1e-5
        )


def test_tokens_skipped_by_max_chunks_are_not_scored(random_chunks_run):
    classifier = random_chunks_run[1]
    ids = encode(classifier.tokenizer, MIXED[1])
    got = explain(classifier, MIXED[1])
    starts = chunk_window_starts(len(ids), classifier.max_tokens, classifier.long_text)
    read = sorted({p for s in starts for p in range(s, s + classifier.max_tokens)})
    assert got.truncated and [t.token_id for t in got.tokens] == [ids[p] for p in read]
    assert len(read) < len(ids)


def test_classify_explain_a_chunks_run(random_chunks_run, tokenizer_dir):
    from click.testing import CliRunner

    from gpt_classifier.cli.main import cli

    run = random_chunks_run[0]
    args = ["classify", str(run), "--tokenizer-dir", str(tokenizer_dir), "--explain", LONG]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "why:" in result.output


def test_classify_file_streams_windows_as_classify_does(random_chunks_run, tmp_path):
    from gpt_classifier.inference.file_stream import classify_file

    source = tmp_path / "texts.txt"
    source.write_text("".join(f"{text}\n" for text in MIXED))
    run, classifier = random_chunks_run
    results = []
    classify_file(
        classifier,
        source,
        sink=lambda rows, predictions: results.extend(predictions),
        chunk_rows=2,
        batch_size=2,
        progress=False,
    )
    assert [p.label for p in results] == [p.label for p in classifier.classify(MIXED)]


def test_pooling_last_with_per_batch_padding_is_refused_with_windows(tmp_path):
    options = FinetuneOptions(
        output_dir=str(tmp_path / "r"), long_text="chunks", pooling="last", padding="batch"
    )
    with pytest.raises(GPTClassifierError, match="--long-text with --pooling last"):
        options.resolved()


def test_a_run_file_with_a_bad_long_text_is_a_one_line_error(tmp_path, saved_run):
    values = json.loads((saved_run / "run.json").read_text())
    values["inputs"]["long_text"] = {"mode": "skim"}
    from gpt_classifier.runs.run_dir import RunInfo as Info

    with pytest.raises(GPTClassifierError, match="inputs.long_text is not valid"):
        Info.from_dict(values, "run.json")
    values["inputs"].pop("long_text")
    assert Info.from_dict(values, "run.json").long_text == LongText()  # older runs: truncate


@pytest.mark.slow
@pytest.mark.parametrize("trainable", ["last-block", "all"])
def test_two_processes_train_windows_as_one(tmp_path, tokenizer_dir, trainable):
    """Under torchrun a text's windows stay in its batch, on one rank: 2 ranks x batch 4 train
    as 1 process x batch 4 x --grad-accum 2 (the frozen-prefix cache of windows in shards, or
    DDP over the whole model)."""
    from tests.test_distributed import WORKER, _assert_same_training, _torchrun

    data, config = _filler_file(tmp_path, count=48)
    options = dict(
        data_file=str(data),
        model=str(config),
        init="random",
        tokenizer_dir=str(tokenizer_dir),
        trainable=trainable,
        long_text="chunks",
        epochs=2,
        batch_size=4,
        eval_freq=2,
        eval_iter=2,
        lr=1e-3,
        progress=False,
        plots=False,
        disk_cache=False,
        precision="fp32",
        device="cpu",
    )
    single = run_finetune(
        FinetuneOptions(output_dir=str(tmp_path / "one"), grad_accum_steps=2, **options),
        log=lambda message: None,
    )
    out = tmp_path / "two.json"
    done = _torchrun(
        str(WORKER), str(out), json.dumps({"output_dir": str(tmp_path / "two")} | options)
    )
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same_training(single, json.loads(out.read_text()))
