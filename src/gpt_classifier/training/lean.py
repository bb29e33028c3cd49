"""Lean fine-tuning: the frozen weights are never all in memory.

When only the last block(s) are trained on cached prefix states (the default recipe), the
embeddings and the frozen blocks are needed twice: once to compute the states, block by block
(``streamed_prefix.py``), and once to save the run, module by module
(``lazy_weights.save_streamed``). In between, training and the final evaluation hold only the
trainable suffix and the states. For the 124M model that takes the peak resident memory of the
default fine-tune from ~2 GiB to a few hundred MiB (see the README's performance section).

Used for ``--init random`` on the CPU when the prefix cache applies; anything else (pretrained
weights, LoRA, all blocks trained, another device, the cache switched off or too large) falls
back to the whole model in memory, with the same results.
"""

from __future__ import annotations

from ..classifier import GPTClassifier
from ..config import resolve_config
from ..distributed import context_from_env
from ..lazy_weights import LazyWeights, lazy_weights_of, skeleton_gpt
from ..model import GPTModel
from ..precision import resolve_device
from .recipe import FinetuneOptions, ResolvedRecipe

_STREAMABLE_TRAINABLE = ("head", "last-blocks")


def lazy_gpt(options: FinetuneOptions, recipe: ResolvedRecipe) -> GPTModel | None:
    """A skeleton GPT-2 (on ``meta``) with its :class:`LazyWeights` as ``gpt.lazy_weights``,
    or None where the lean path cannot apply (decided before any weight is drawn)."""
    if options.init != "random" or options.weights or not options.prefix_cache:
        return None
    if recipe.trainable.kind.value not in _STREAMABLE_TRAINABLE:
        return None
    if resolve_device(options.device).type != "cpu":
        return None
    if context_from_env().enabled:  # under torchrun each rank runs a share of the batched prefix
        return None
    cfg = resolve_config(options.model)
    if cfg.drop_rate > 0:
        return None
    gpt = skeleton_gpt(cfg)
    gpt.lazy_weights = LazyWeights(gpt, recipe.train.seed)
    return gpt


def attach(classifier: GPTClassifier, gpt: GPTModel) -> None:
    """Make the classifier built around a lazy ``gpt`` lazy too (saving and hashing see it)."""
    lazy = getattr(gpt, "lazy_weights", None)
    if lazy is not None:
        classifier.lazy_weights = lazy


def materialize_suffix(classifier: GPTClassifier, start_block: int) -> None:
    """What training and evaluation run on cached states: ``trf_blocks[start_block:]`` and
    ``final_norm`` (the head is always real)."""
    lazy = lazy_weights_of(classifier)
    if lazy is None:
        return
    for index in range(start_block, classifier.n_layers):
        lazy.materialize(f"trf_blocks.{index}")
    lazy.materialize("final_norm")


def materialize_all(classifier: GPTClassifier) -> None:
    """The whole model in memory: the classifier is an ordinary one from then on."""
    lazy = lazy_weights_of(classifier)
    if lazy is None:
        return
    for name in lazy.names:
        lazy.materialize(name)
    del classifier.lazy_weights
    del lazy.gpt.lazy_weights
