"""``gpt-classifier export``: the hf folder loads in transformers' pipeline and the ONNX model in
onnxruntime, both giving the run's probabilities; what they cannot express is a one-line error;
runs and exports carry a model card."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import SAVED_CONFIG

from gpt_classifier.classifier import GPTClassifier, replace_linear_with_lora
from gpt_classifier.cli.main import cli
from gpt_classifier.data.windows import LongText
from gpt_classifier.errors import GPTClassifierError
from gpt_classifier.export import export_run, folded_shift
from gpt_classifier.inference import RunInfo, TextClassifier, save_run
from gpt_classifier.model import GPTModel
from gpt_classifier.runs.run_dir import wilson_interval
from gpt_classifier.tokenizer import _OPENAI_URL, TOKENIZER_DIR_ENV, tokenizer_files

TOLERANCE = 1e-3
TEXTS = [
    "Congratulations! You have won a free ticket to the Bahamas. Reply WIN to claim it now, "
    "before the offer ends tonight.",  # over the run's 12 tokens: cut as the run cuts it
    "hi",
    "See you at lunch<|endoftext|>",  # a real trailing end-of-text, not padding
    "Call me when you get home, ok?",
]


def make_run(
    folder: Path, pooling: str = "last-real", *, lora: bool = False, long_text="truncate", **cfg
) -> Path:
    """A tiny random run; ``lora``: adapters with non-zero B (save_run merges them)."""
    torch.manual_seed(5)
    model = GPTClassifier(GPTModel(SAVED_CONFIG.replace(**cfg)), 3, pooling=pooling, head_seed=5)
    with torch.no_grad():
        model.gpt.out_head.bias.normal_(0, 1.0)  # a bias worth folding
    if lora:
        replace_linear_with_lora(model.gpt.trf_blocks, 2, 4.0, torch.Generator().manual_seed(1))
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name.endswith("lora.B"):
                    param.normal_(0, 0.5)
    classes, cfg = ("ham", "spam", "eggs"), SAVED_CONFIG.replace(**cfg)
    info = RunInfo(cfg, classes, pooling, "batch", 12, None, long_text=LongText(long_text))
    return save_run(model, info, folder / "run")


def run_probabilities(run: Path, tokenizer_dir: Path, texts: list[str]) -> np.ndarray:
    classifier = TextClassifier.from_run(run, tokenizer_dir=tokenizer_dir, precision="fp32")
    return classifier.predict_proba(texts)


def export(*args: object) -> object:
    return CliRunner().invoke(cli, ["export", *map(str, args)])


@pytest.mark.transformers
@pytest.mark.parametrize(
    "run_args", [{}, {"lora": True}, {"qkv_bias": False}], ids=["plain", "lora", "no-qkv-bias"]
)
def test_hf_export_loads_in_pipeline_and_agrees(tmp_path, tokenizer_dir, run_args):
    transformers = pytest.importorskip("transformers")
    run = make_run(tmp_path, **run_args)
    out = export_run(run, "hf", tmp_path / "hf", tokenizer_dir=tokenizer_dir)
    expected = run_probabilities(run, tokenizer_dir, TEXTS)
    classify = transformers.pipeline("text-classification", model=str(out), device="cpu")

    def probabilities(texts: list[str], batch_size: int) -> np.ndarray:
        results = classify(texts, truncation=True, top_k=None, batch_size=batch_size)
        return np.array([[{r["label"]: r["score"] for r in row}[c] for c in ("ham", "spam", "eggs")]
                         for row in results])  # fmt: skip

    together = probabilities(TEXTS, batch_size=len(TEXTS))
    alone = np.concatenate([probabilities([text], batch_size=1) for text in TEXTS])
    for got in (together, alone):
        np.testing.assert_allclose(got, expected, atol=TOLERANCE)
        assert (got.argmax(1) == expected.argmax(1)).all()
    assert (expected.max(1) - expected.min(1) > 0.05).any()  # not a flat model
    config = transformers.AutoConfig.from_pretrained(out)
    assert config.id2label == {0: "ham", 1: "spam", 2: "eggs"} and config.num_labels == 3


def test_head_bias_folds_exactly_into_ln_f_and_a_rank_deficient_head_is_refused():
    torch.manual_seed(0)
    model = GPTClassifier(GPTModel(SAVED_CONFIG), 3)
    with torch.no_grad():
        model.gpt.out_head.bias.normal_(0, 2.0)
        model.gpt.final_norm.shift.normal_(0, 1.0)
    head, shift = model.gpt.out_head, model.gpt.final_norm.shift
    folded = folded_shift(model)
    torch.testing.assert_close(
        head.weight @ folded, head.weight @ shift + head.bias, atol=1e-5, rtol=0
    )
    with torch.no_grad():
        head.weight[2] = head.weight[0] + head.weight[1]  # rank 2 for 3 classes
    with pytest.raises(GPTClassifierError, match="rank 2 < 3 classes"):
        folded_shift(model)


@pytest.mark.transformers
@pytest.mark.parametrize("pooling", ["last-real", "last", "mean", "first"])
def test_onnx_export_agrees_with_dynamic_batch_and_length(tmp_path, tokenizer_dir, pooling):
    onnxruntime = pytest.importorskip("onnxruntime")
    run = make_run(tmp_path, pooling)
    out = export_run(run, "onnx", tmp_path / "onnx", tokenizer_dir=tokenizer_dir)
    session = onnxruntime.InferenceSession(
        str(out / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    classifier = TextClassifier.from_run(run, tokenizer_dir=tokenizer_dir, precision="fp32")
    encoded = classifier.encode_texts(TEXTS)[0]
    expected = classifier.predict_proba(TEXTS)

    def probabilities(rows: list[list[int]]) -> np.ndarray:
        width = max(map(len, rows))
        ids = np.array([row + [7] * (width - len(row)) for row in rows], dtype=np.int64)
        mask = np.array([[1] * len(row) + [0] * (width - len(row)) for row in rows], np.int64)
        logits = session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
        return torch.softmax(torch.from_numpy(logits), -1).numpy()

    np.testing.assert_allclose(probabilities(encoded), expected, atol=TOLERANCE)
    alone = np.concatenate([probabilities([ids]) for ids in encoded])
    np.testing.assert_allclose(alone, expected, atol=TOLERANCE)


@pytest.mark.parametrize(
    ("fmt", "run_args", "message"),
    [
        ("hf", {"pooling": "first"}, "reads the last token, not 'first' pooling"),
        ("hf", {"pooling": "mean"}, "reads the last token, not 'mean' pooling"),
        ("onnx", {"causal": False}, "without the causal mask"),
        ("hf", {"long_text": "chunks"}, "with --long-text chunks, which one pass"),
        ("onnx", {"long_text": "head-tail"}, "with --long-text head-tail, which one pass"),
    ],
)
def test_what_a_format_cannot_express_is_a_one_line_error(tmp_path, fmt, run_args, message):
    run = make_run(tmp_path, **run_args)
    result = export(run, "--format", fmt, "--output-dir", tmp_path / "out")
    assert result.exit_code != 0
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_bad_run_and_non_empty_output_dir_are_one_line_errors(tmp_path, saved_run, tokenizer_dir):
    missing = export(tmp_path / "nothing", "--format", "hf", "--output-dir", tmp_path / "o")
    assert missing.exit_code != 0 and missing.output.count("\n") == 1
    assert missing.output.startswith("error: run directory not found")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    result = export(saved_run, "--format", "hf", "--output-dir", taken)
    assert result.exit_code != 0 and result.output.count("\n") == 1
    assert "pass --overwrite" in result.output
    assert (taken / "keep.txt").read_text() == "mine" and len(list(taken.iterdir())) == 1
    flags = ("--overwrite", "--tokenizer-dir", tokenizer_dir)
    replaced = export(saved_run, "--format", "hf", "--output-dir", taken, *flags)
    assert replaced.exit_code == 0, replaced.output
    assert not (taken / "keep.txt").exists() and (taken / "config.json").is_file()
    itself = export(saved_run, "--format", "hf", "--output-dir", saved_run, "--overwrite")
    assert itself.exit_code != 0 and "would replace the run itself" in itself.output
    assert (saved_run / "run.json").is_file()


def test_model_card_interval_is_wilsons():
    assert wilson_interval(0.5, 100) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    assert wilson_interval(1.0, 4) == pytest.approx((0.5101, 1.0), abs=1e-4)


@pytest.mark.transformers
def test_run_and_export_carry_a_model_card_with_the_metrics(tmp_path, micro_run, tokenizer_dir):
    pytest.importorskip("onnx")
    card = (micro_run / "README.md").read_text()
    assert "| test |" in card and "95 % interval (Wilson)" in card
    assert "gpt-classifier classify" in card
    result = export(micro_run, "--format", "onnx", "--output-dir", tmp_path / "o",
                    "--tokenizer-dir", tokenizer_dir)  # fmt: skip
    assert result.exit_code == 0, result.output
    exported = (tmp_path / "o" / "README.md").read_text()
    assert "| test |" in exported and "onnxruntime.InferenceSession" in exported
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "README.md", "merges.txt", "model.onnx", "vocab.json"
    ]  # fmt: skip


def test_tokenizer_files_come_from_tiktokens_cache_without_a_folder(
    tmp_path, monkeypatch, tokenizer_dir
):
    """Without --tokenizer-dir the files are those tiktoken downloaded (here: put in its cache)."""
    monkeypatch.delenv(TOKENIZER_DIR_ENV, raising=False)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    for name in ("encoder.json", "vocab.bpe"):
        cached = tmp_path / hashlib.sha1((_OPENAI_URL + name).encode()).hexdigest()
        cached.write_bytes((tokenizer_dir / name).read_bytes())
    files = tokenizer_files()
    assert files["vocab.bpe"].read_bytes() == (tokenizer_dir / "vocab.bpe").read_bytes()
    assert files["encoder.json"].read_bytes() == (tokenizer_dir / "encoder.json").read_bytes()
