"""The train command and FinetuneOptions cannot drift apart; the accumulation remainder."""

from __future__ import annotations

import dataclasses

import torch

from gpt_classifier.classifier import GPTClassifier, apply_trainable
from gpt_classifier.cli.train_commands import train
from gpt_classifier.config import GPTConfig
from gpt_classifier.data.encoding import collate
from gpt_classifier.model import GPTModel
from gpt_classifier.training import TrainSettings, train_classifier
from gpt_classifier.training.losses import calc_loss_batch
from gpt_classifier.training.recipe import FinetuneOptions

# click parameters of `train` that are not FinetuneOptions fields, and why
CLI_ONLY = {"resume_dir": "--resume reads the options saved with the checkpoint"}
# flags whose CLI default differs from the Python API's on purpose, and why
CLI_DEFAULTS_DIFFER = {
    "fractions": "the CLI takes a string, '0.7,0.1,0.2'; Python a tuple",
    "output_dir": "the CLI asks for it (a run is never written to an implied place)",
}


def test_every_option_is_a_train_flag_with_the_same_default():
    params = {p.name: p for p in train.params}
    fields = {f.name: f for f in dataclasses.fields(FinetuneOptions)}
    assert set(params) - set(fields) == set(CLI_ONLY)
    assert set(fields) - set(params) == {"resume"}  # set by --resume
    defaults = FinetuneOptions()
    for name, param in params.items():
        if name in CLI_ONLY or name in CLI_DEFAULTS_DIFFER:
            continue
        assert param.default == getattr(defaults, name), name


SMALL = GPTConfig(vocab_size=100, context_length=16, emb_dim=16, n_heads=2, n_layers=2)


def test_a_short_last_accumulation_group_is_divided_by_its_own_size():
    """5 batches with --grad-accum 2: groups of 2, 2 and 1; the last step must use batch 5's own
    mean loss (it was divided by 2 before, halving that step)."""
    gen = torch.Generator().manual_seed(3)
    items = [(torch.randint(8, 100, (6,), generator=gen).tolist(), i % 2, i) for i in range(10)]
    batches = [collate(items[i : i + 2], pad_length=None, pad_token_id=0) for i in range(0, 10, 2)]

    def model() -> GPTClassifier:
        torch.manual_seed(0)
        classifier = GPTClassifier(GPTModel(SMALL), 2, head_seed=0)
        apply_trainable(classifier, "head")
        return classifier

    trained = model()
    optimizer = torch.optim.SGD([p for p in trained.parameters() if p.requires_grad], lr=0.5)
    settings = TrainSettings(epochs=1, eval_freq=100, eval_iter=1, grad_accum_steps=2)
    train_classifier(trained, batches, batches, optimizer, "cpu", settings, progress=False)

    replayed = model()
    params = [p for p in replayed.parameters() if p.requires_grad]
    for group in (batches[0:2], batches[2:4], batches[4:5]):
        replayed.train()
        loss = sum(
            calc_loss_batch(b.input_ids, b.labels, replayed, "cpu", b.lengths) for b in group
        )
        grads = torch.autograd.grad(loss / len(group), params)
        with torch.no_grad():
            for param, grad in zip(params, grads, strict=True):
                param -= 0.5 * grad
    for a, b in zip((p for p in trained.parameters() if p.requires_grad), params, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def _commands(group=None, path=()):
    import click

    from gpt_classifier.cli.main import cli

    group = group or cli
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield " ".join((*path, name)), command


def test_help_is_plain_text_and_writes_no_default_itself():
    """Defaults come from the options dataclasses (click shows them), never from help prose."""
    import re

    for name, command in _commands():
        for param in command.params:
            text = getattr(param, "help", None) or ""
            text = re.sub(r"\s*\[default: [^\]]*\]$", "", text)  # the generator's, from presets
            assert "``" not in text and "`" not in text, (name, param.name)
            assert not re.search(r"[Dd]efault:? \d", text), (name, param.name, text)
        assert "``" not in (command.help or ""), name


def test_preset_values_are_shown_from_the_presets():
    commands = dict(_commands())
    for name in ("train", "data prepare"):
        helps = {p.name: p.help for p in commands[name].params}
        assert helps["padding"].endswith("[default: batch; book: longest-train]")
        assert helps["keep_duplicates"].endswith(
            "[default: drop-duplicates; book: keep-duplicates]"
        )
        assert helps["seed"].endswith("[default: 123]")


def test_commands_that_split_share_the_preset_and_its_defaults():
    from gpt_classifier.cli.model_commands import PrepareOptions, ZeroShotOptions

    for options in (PrepareOptions, ZeroShotOptions, FinetuneOptions):
        book = options(preset="book").dataset_args()
        assert (book["keep_duplicates"], book["seed"], book["balance"]) == (
            True,
            123,
            "undersample",
        )
        assert options(seed=7, keep_duplicates=False).dataset_args()["seed"] == 7
        assert options().dataset_args()["fractions"] == (0.7, 0.1, 0.2)


def test_the_recipe_resolves_device_precision_and_model_once():
    recipe = FinetuneOptions(device="cpu", precision="fp32", model="gpt2-medium").resolved()
    assert (str(recipe.device), recipe.precision, recipe.config.emb_dim) == ("cpu", "fp32", 1024)
    assert recipe.fractions == (0.7, 0.1, 0.2)
    with_weights = FinetuneOptions(device="cpu", weights="model.safetensors").resolved()
    assert with_weights.config is None  # read from the weights when they load
