"""A run as a ``transformers`` ``GPT2ForSequenceClassification`` folder, computing what the run
computes: ``score`` has no bias, so the head's bias is folded into ``ln_f``'s shift (which feeds
only ``score``); a pad token of its own keeps transformers' "last non-pad token" pooling on the
last real token even when a text ends with ``<|endoftext|>``."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from ..classifier import GPTClassifier
from ..config import EOT_TOKEN_ID
from ..errors import GPTClassifierError
from ..fileio import atomic_path, write_json
from ..runs.run_dir import RunInfo
from ..tokenizer import EOT_TEXT
from ..weights import HF_PREFIX, to_hf_state_dict

PAD_TEXT = "<|pad|>"
PAD_TOKEN_ID = EOT_TOKEN_ID + 1  # one past GPT-2's vocabulary: no text is tokenized to it


def folded_shift(model: GPTClassifier) -> torch.Tensor:
    """``ln_f``'s shift with the head's bias ``b`` folded in: ``shift + pinv(W) b``, for which
    ``W shift' = W shift + b`` holds exactly when ``W`` ``(classes, emb_dim)`` has full row rank."""
    head, shift = model.gpt.out_head, model.gpt.final_norm.shift.detach().double()
    weight = head.weight.detach().double()
    if head.bias is None:
        return shift.float()
    rank = int(torch.linalg.matrix_rank(weight))
    if rank < weight.shape[0]:
        raise GPTClassifierError(
            f"the head's weight has rank {rank} < {weight.shape[0]} classes: its bias cannot be "
            "folded into ln_f, and transformers' score layer has no bias"
        )
    return (shift + torch.linalg.pinv(weight) @ head.bias.detach().double()).float()


def hf_config(info: RunInfo) -> dict:
    cfg = info.gpt_config
    labels = dict(enumerate(info.classes))
    return {
        "architectures": ["GPT2ForSequenceClassification"],
        "model_type": "gpt2",
        "vocab_size": max(cfg.vocab_size, PAD_TOKEN_ID + 1),
        "n_positions": cfg.context_length,
        "n_embd": cfg.emb_dim,
        "n_layer": cfg.n_layers,
        "n_head": cfg.n_heads,
        "activation_function": "gelu_new",  # GELU's tanh approximation, as ours
        "layer_norm_epsilon": 1e-5,
        **{name: cfg.drop_rate for name in ("resid_pdrop", "embd_pdrop", "attn_pdrop")},
        "num_labels": len(labels),
        "id2label": {str(i): name for i, name in labels.items()},
        "label2id": {name: i for i, name in labels.items()},
        "pad_token_id": PAD_TOKEN_ID,  # GPT-2's bos and eos stay <|endoftext|> (the defaults)
    }


def tokenizer_config(info: RunInfo) -> dict:
    """GPT-2's tokenizer that pads on the right with ``<|pad|>`` and, with ``truncation=True``,
    keeps a text's first ``max_length`` tokens as the run does."""

    def token(text: str) -> dict:
        return {"content": text, "special": True, "lstrip": False, "rstrip": False,
                "normalized": False, "single_word": False}  # fmt: skip

    return {
        "tokenizer_class": "GPT2Tokenizer",
        "model_max_length": info.max_length,
        "padding_side": "right",
        "truncation_side": "right",
        "add_prefix_space": False,
        **{f"{kind}_token": EOT_TEXT for kind in ("bos", "eos", "unk")},
        "pad_token": PAD_TEXT,
        "added_tokens_decoder": {
            str(EOT_TOKEN_ID): token(EOT_TEXT),
            str(PAD_TOKEN_ID): token(PAD_TEXT),
        },
    }


def write_hf(model: GPTClassifier, info: RunInfo, folder: Path) -> None:
    """``config.json``, ``model.safetensors`` and the tokenizer's settings into ``folder``."""
    tensors = to_hf_state_dict(model.gpt)
    tensors[HF_PREFIX + "ln_f.bias"] = folded_shift(model)
    tensors["score.weight"] = model.gpt.out_head.weight.detach().float().contiguous()
    embeddings = tensors[HF_PREFIX + "wte.weight"]
    pad_rows = embeddings.new_zeros(
        hf_config(info)["vocab_size"] - len(embeddings), info.gpt_config.emb_dim
    )
    tensors[HF_PREFIX + "wte.weight"] = torch.cat([embeddings, pad_rows])  # the pad token's row
    with atomic_path(folder / "model.safetensors") as partial:  # the umask's permissions
        save_file(tensors, str(partial), metadata={"format": "pt"})
    write_json(folder / "config.json", hf_config(info))
    write_json(folder / "tokenizer_config.json", tokenizer_config(info))
