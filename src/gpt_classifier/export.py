"""``export_run``: a saved run with its model card as a ``transformers`` folder (``hf``) or an
ONNX model (``onnx``), written in one step; see docs/design.md, Export."""

import importlib.util
import shutil
import warnings
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from .classifier import GPTClassifier, Pooling
from .config import EOT_TOKEN_ID
from .errors import GPTClassifierError
from .evaluation import read_report_json
from .fileio import atomic_path, check_output_dir, write_json, write_text, writer_lock
from .inference import TextClassifier
from .runs.run_dir import CARD_FILE, TOKENIZER_DIR, RunInfo, StrPath, model_card, read_run_info
from .runs.transaction import commit_staged
from .tokenizer import EOT_TEXT, tokenizer_files
from .weights import HF_PREFIX, to_hf_state_dict

PAD_TEXT = "<|pad|>"
PAD_TOKEN_ID = EOT_TOKEN_ID + 1  # one past GPT-2's vocabulary: no text is tokenized to it
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
    run_dir: StrPath,
    fmt: str,
    output_dir: StrPath,
    *,
    overwrite: bool = False,
    tokenizer_dir: StrPath | None = None,
) -> Path:
    """Write the run in ``run_dir`` as ``fmt`` (hf or onnx) into ``output_dir``; its path."""
    if fmt not in ("hf", "onnx"):
        raise GPTClassifierError(f"unknown export format {fmt!r}; use hf or onnx")
    source = Path(run_dir)
    info = read_run_info(source)  # a bad run fails here, before anything is made
    if problem := unsupported(info, fmt):
        raise GPTClassifierError(f"cannot export {source} as {fmt}: {problem}")
    if fmt == "onnx" and importlib.util.find_spec("onnx") is None:  # else a traceback
        raise GPTClassifierError(
            "the ONNX export needs the onnx package: pip install 'gpt-classifier[export]'"
        )
    target = check_output_dir(output_dir, overwrite=overwrite)
    if source.resolve().is_relative_to(target.resolve()):  # the run itself or a folder above
        raise GPTClassifierError(f"--output-dir {target} would replace the run itself")
    try:  # a run saved from Python has no metrics; an unreadable file leaves the card without
        metrics = read_report_json(source / "metrics.json")
    except GPTClassifierError:
        metrics = None
    fields = {"dir": target, "n": info.max_length, "classes": ", ".join(info.classes)}
    classifier = TextClassifier.from_run(source, device="cpu", tokenizer_dir=tokenizer_dir)
    own = source / TOKENIZER_DIR  # else where from_run's get_tokenizer found (or fetched) them
    if (files := tokenizer_files(own if own.is_dir() else tokenizer_dir)) is None:
        raise GPTClassifierError("GPT-2's tokenizer files are not on disk: pass --tokenizer-dir")
    with writer_lock(target, "--output-dir"):
        folder = target.parent / f".{target.name}.export"  # not train's .partial: a checkpoint
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        try:
            (write_hf if fmt == "hf" else write_onnx)(classifier, folder)
            usage, note = (_HF_USAGE, _HF_NOTE) if fmt == "hf" else (_ONNX_USAGE, "")
            write_text(folder / CARD_FILE, model_card(info, metrics, usage.format(**fields), note))
            # the same bytes under transformers' names (vocab.bpe is merges.txt)
            for ours, theirs in (("encoder.json", "vocab.json"), ("vocab.bpe", "merges.txt")):
                write_text(folder / theirs, files[ours].read_bytes())
            return commit_staged(folder, target, cleanup=folder)
        finally:  # on success it is the target already
            shutil.rmtree(folder, ignore_errors=True)


def folded_shift(model: GPTClassifier) -> torch.Tensor:
    """``ln_f``'s shift plus ``pinv(W) b``: exact when the head's ``W`` has full row rank."""
    head, shift = model.gpt.out_head, model.gpt.final_norm.shift.detach().double()
    weight = head.weight.detach().double()  # the classifier's head always has a bias
    if (rank := int(torch.linalg.matrix_rank(weight))) < weight.shape[0]:
        raise GPTClassifierError(
            f"the head's weight has rank {rank} < {weight.shape[0]} classes: its bias cannot be "
            "folded into ln_f, and transformers' score layer has no bias"
        )
    return (shift + torch.linalg.pinv(weight) @ head.bias.detach().double()).float()


def write_hf(classifier: TextClassifier, folder: Path) -> None:
    """``config.json``, ``model.safetensors`` and the tokenizer's settings into ``folder``."""
    model, info = classifier.model, classifier.info
    cfg, labels = info.gpt_config, dict(enumerate(info.classes))
    vocab_size = max(cfg.vocab_size, PAD_TOKEN_ID + 1)
    tensors = to_hf_state_dict(model.gpt)
    tensors[HF_PREFIX + "ln_f.bias"] = folded_shift(model)
    tensors["score.weight"] = model.gpt.out_head.weight.detach().float().contiguous()
    wte = tensors[HF_PREFIX + "wte.weight"]  # zero rows up to the pad token's
    tensors[HF_PREFIX + "wte.weight"] = nn.functional.pad(wte, (0, 0, 0, vocab_size - len(wte)))
    with atomic_path(folder / "model.safetensors") as partial:  # the umask's permissions
        save_file(tensors, str(partial), metadata={"format": "pt"})
    config = {
        "architectures": ["GPT2ForSequenceClassification"],
        "model_type": "gpt2",
        "vocab_size": vocab_size,
        "n_positions": cfg.context_length,
        "n_embd": cfg.emb_dim,
        "n_layer": cfg.n_layers,
        "n_head": cfg.n_heads,
        "activation_function": "gelu_new",  # GELU's tanh approximation, as ours
        "layer_norm_epsilon": 1e-5,
        **dict.fromkeys(("resid_pdrop", "embd_pdrop", "attn_pdrop"), cfg.drop_rate),
        "num_labels": len(labels),
        "id2label": {str(i): name for i, name in labels.items()},
        "label2id": {name: i for i, name in labels.items()},
        "pad_token_id": PAD_TOKEN_ID,  # GPT-2's bos and eos stay <|endoftext|> (the defaults)
    }
    write_json(folder / "config.json", config)
    flags = dict.fromkeys(("lstrip", "rstrip", "normalized", "single_word"), False)
    tokenizer_config = {
        "tokenizer_class": "GPT2Tokenizer",
        "model_max_length": info.max_length,
        **dict.fromkeys(("padding_side", "truncation_side"), "right"),
        "add_prefix_space": False,
        **dict.fromkeys(("bos_token", "eos_token", "unk_token"), EOT_TEXT),
        "pad_token": PAD_TEXT,
        "added_tokens_decoder": {
            str(token_id): {"content": text, "special": True, **flags}
            for token_id, text in ((EOT_TOKEN_ID, EOT_TEXT), (PAD_TOKEN_ID, PAD_TEXT))
        },
    }
    write_json(folder / "tokenizer_config.json", tokenizer_config)


class _Logits(nn.Module):
    """The classifier's logits, lengths read from ``attention_mask`` (``last``: last real token)."""

    def __init__(self, model: GPTClassifier) -> None:
        super().__init__()
        self.model = model
        self.pooling = Pooling.LAST_REAL if model.pooling == Pooling.LAST else model.pooling

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        # pool_hidden's pooling written with shape-free ops: the tracer records len() and
        # shape values as constants, which would fix the batch size
        gpt = self.model.gpt
        hidden = gpt.final_norm(gpt.hidden_states(input_ids))  # (B, T, D)
        real = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
        if self.pooling == Pooling.MEAN:
            return gpt.out_head((hidden * real).sum(1) / real.sum(1))
        seen = real.cumsum(1)  # real tokens up to each position: the first is 1, the last all
        wanted = 1 if self.pooling == Pooling.FIRST else real.sum(1, keepdim=True)
        at = ((seen == wanted) & (real > 0)).to(hidden.dtype)
        return gpt.out_head((hidden * at).sum(1))


def write_onnx(classifier: TextClassifier, folder: Path) -> None:
    """``model.onnx`` in ``folder``, by the TorchScript exporter (offline, no onnxscript)."""
    example = torch.full((2, 3), EOT_TOKEN_ID, dtype=torch.long)
    dynamic = {name: {0: "batch", 1: "length"} for name in ("input_ids", "attention_mask")}
    with warnings.catch_warnings(action="ignore"):  # the tracer's notes on its shape checks
        torch.onnx.export(
            _Logits(classifier.model).eval(),
            (example, torch.ones_like(example)),
            str(folder / "model.onnx"),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={**dynamic, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
