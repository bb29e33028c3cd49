"""``export_run``: a saved run, loaded as ``classify`` loads it, written in another format into a
new folder in one step (staged beside it, then renamed into place), with a model card."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..classifier import Pooling, has_lora, merge_lora
from ..errors import GPTClassifierError
from ..evaluation import read_report_json
from ..fileio import check_output_dir, write_bytes, writer_lock
from ..inference import TextClassifier
from ..runs.model_card import write_model_card
from ..runs.run_dir import TOKENIZER_DIR, RunInfo, read_run_info
from ..runs.transaction import commit_staged
from ..tokenizer import TOKENIZER_FILES, get_tokenizer, tokenizer_files
from .hf import write_hf
from .onnx import check_onnx_installed, write_onnx

EXPORT_FORMATS = ("hf", "onnx")
_HF_USAGE = """```python
from transformers import pipeline
classify = pipeline("text-classification", model="{dir}")
print(classify(["Your text here"], truncation=True))  # truncation: as the run, first {n} tokens
```"""
_ONNX_USAGE = """```python
import numpy as np, onnxruntime, tiktoken
session = onnxruntime.InferenceSession("{dir}/model.onnx")
ids = tiktoken.get_encoding("gpt2").encode("Your text here", allowed_special="all")[:{n}]
inputs = {{"input_ids": np.array([ids]), "attention_mask": np.ones((1, len(ids)), np.int64)}}
print(session.run(["logits"], inputs)[0])  # softmax gives the class probabilities
```
Batches: pad on the right (any id) and give `attention_mask` 1 for real tokens, 0 for padding.
Classes by logit index: {classes}."""
_HF_NOTE = (
    "- transformers reads the last token that is not `<|pad|>` (a token added for padding); "
    "pass `truncation=True` to cut texts as the run does.\n"
)


def unsupported(info: RunInfo, fmt: str) -> str | None:
    """Why ``fmt`` cannot compute what the run computes, or None."""
    if not info.gpt_config.causal:
        return "the run was trained without the causal mask, which GPT-2 always applies"
    if info.long_text.mode != "truncate":
        return (
            f"the run reads long texts with --long-text {info.long_text.mode}, which one pass of "
            "the exported model cannot do (it cuts them, as --long-text truncate)"
        )
    pooling = Pooling(info.pooling)
    if pooling == Pooling.LAST and info.pad_length is not None:
        return f"'last' pooling reads a padding position of inputs padded to {info.pad_length}"
    if fmt == "hf" and pooling in (Pooling.FIRST, Pooling.MEAN):
        return f"GPT2ForSequenceClassification reads the last token, not '{pooling}' pooling"
    return None


def export_run(
    run_dir: str | os.PathLike[str],
    fmt: str,
    output_dir: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    tokenizer_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Write the run in ``run_dir`` as ``fmt`` (hf or onnx) into ``output_dir``; its path."""
    if fmt not in EXPORT_FORMATS:
        raise GPTClassifierError(f"unknown export format {fmt!r}; use hf or onnx")
    source = Path(run_dir)
    info = read_run_info(source)  # a bad run fails here, before anything is made
    if problem := unsupported(info, fmt):
        raise GPTClassifierError(f"cannot export {source} as {fmt}: {problem}")
    if fmt == "onnx":
        check_onnx_installed()
    target = check_output_dir(output_dir, overwrite=overwrite)
    if source.resolve() == target.resolve() or source.resolve().is_relative_to(target.resolve()):
        raise GPTClassifierError(f"--output-dir {target} would replace the run itself")
    with writer_lock(target, "--output-dir"):
        classifier = TextClassifier.from_run(
            source, device="cpu", tokenizer_dir=tokenizer_dir, precision="fp32"
        )
        if has_lora(classifier.model):
            merge_lora(classifier.model)
        vocab = _tokenizer_bytes(source, tokenizer_dir)
        staging = target.parent / f".{target.name}.export"  # not train's .partial: a checkpoint
        shutil.rmtree(staging, ignore_errors=True)
        folder = staging / "export"
        folder.mkdir(parents=True)
        try:
            _write(classifier, fmt, folder, vocab)
            write_model_card(folder, info, _metrics(source), *_usage(fmt, info, target))
            return commit_staged(folder, target, cleanup=staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def _tokenizer_bytes(source: Path, tokenizer_dir: str | None) -> dict[str, bytes]:
    """GPT-2's two files: the run's own, else where ``get_tokenizer`` reads them (a download
    fills tiktoken's cache)."""
    if (source / TOKENIZER_DIR).is_dir():
        files = {name: source / TOKENIZER_DIR / name for name in TOKENIZER_FILES}
    elif (files := tokenizer_files(tokenizer_dir)) is None:
        get_tokenizer(tokenizer_dir)  # the download, or its one-line error
        files = tokenizer_files(tokenizer_dir)
    if files is None:
        raise GPTClassifierError("GPT-2's tokenizer files are not on disk: pass --tokenizer-dir")
    return {name: path.read_bytes() for name, path in files.items()}


def _write(classifier: TextClassifier, fmt: str, folder: Path, vocab: dict[str, bytes]) -> None:
    if fmt == "hf":
        write_hf(classifier.model, classifier.info, folder)
    else:
        write_onnx(classifier.model, folder)
    # the same bytes under transformers' names: encoder.json is vocab.json, vocab.bpe merges.txt
    write_bytes(folder / "vocab.json", vocab["encoder.json"])
    write_bytes(folder / "merges.txt", vocab["vocab.bpe"])


def _usage(fmt: str, info: RunInfo, target: Path) -> tuple[str, str]:
    """The card's "how to load it" and its note on the format."""
    fields = {"dir": target, "n": info.max_length, "classes": ", ".join(info.classes)}
    if fmt == "hf":
        return _HF_USAGE.format(**fields), _HF_NOTE
    return _ONNX_USAGE.format(**fields), ""


def _metrics(run_dir: Path) -> dict | None:
    """The run's ``metrics.json``, or None: a run saved from Python has none, and an unreadable
    one only leaves the card without metrics."""
    try:
        return read_report_json(run_dir / "metrics.json")
    except GPTClassifierError:
        return None
