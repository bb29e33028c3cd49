"""Saving and reloading a run: identical outputs, clear errors for anything else."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from gpt_classifier import __version__
from gpt_classifier.classifier import GPTClassifier, apply_trainable, parse_trainable
from gpt_classifier.errors import GPTClassifierError
from gpt_classifier.inference import RunInfo, TextClassifier, load_run, save_run
from gpt_classifier.model import GPTModel
from gpt_classifier.runs.run_dir import read_run_info
from gpt_classifier.runs.transaction import write_marker

_DELETE = object()


def _trained(tiny_config, trainable: str = "last-block") -> GPTClassifier:
    model = GPTClassifier(GPTModel(tiny_config), 2, pooling="last-real")
    apply_trainable(model, parse_trainable(trainable), lora_rank=4, lora_alpha=8)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    ids = torch.randint(0, tiny_config.vocab_size, (4, 12))
    loss = torch.nn.functional.cross_entropy(model(ids), torch.tensor([0, 1, 0, 1]))
    loss.backward()
    optimizer.step()
    return model.eval()


def _info(tiny_config, classes=("ham", "spam")) -> RunInfo:
    return RunInfo(
        gpt_config=tiny_config,
        classes=tuple(classes),
        pooling="last-real",
        padding="batch",
        max_length=tiny_config.context_length,
        pad_length=None,
    )


@pytest.mark.parametrize("trainable", ["last-block", "lora"])
def test_save_load_gives_identical_logits(tmp_path, tiny_config, trainable):
    model = _trained(tiny_config, trainable)
    ids = torch.randint(0, tiny_config.vocab_size, (3, 10))
    lengths = torch.tensor([10, 4, 7])
    with torch.no_grad():
        before = model(ids, lengths)
    save_run(model, _info(tiny_config), tmp_path / "run")  # LoRA is merged on save
    loaded = load_run(tmp_path / "run").model
    with torch.no_grad():
        after = loaded(ids, lengths)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-5 if trainable == "lora" else 0)
    assert all(not p.requires_grad for p in loaded.parameters())


def test_save_load_classify_gives_identical_probabilities(tmp_path, tiny_config, tokenizer):
    model = _trained(tiny_config)
    info = _info(tiny_config)
    save_run(model, info, tmp_path / "run")
    texts = ["Free entry! txt WIN to 80082", "see you at 5", "ok <|endoftext|> bye"]
    in_memory = TextClassifier(model, tokenizer, info, "cpu", precision="fp32")
    reloaded = TextClassifier(
        load_run(tmp_path / "run").model, tokenizer, info, "cpu", precision="fp32"
    )
    assert (in_memory.predict_proba(texts) == reloaded.predict_proba(texts)).all()


def _saved(tmp_path, tiny_config):
    save_run(_trained(tiny_config), _info(tiny_config), tmp_path / "run")
    return tmp_path / "run"


def test_missing_run_directory(tmp_path):
    with pytest.raises(GPTClassifierError, match="run directory not found"):
        load_run(tmp_path / "nope")


def test_directory_without_run_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(GPTClassifierError, match="not a gpt-classifier run directory"):
        load_run(tmp_path / "empty")


def test_run_from_another_version(tmp_path, tiny_config):
    run = _saved(tmp_path, tiny_config)
    values = json.loads((run / "run.json").read_text())
    values["format_version"] = 999
    (run / "run.json").write_text(json.dumps(values))
    write_marker(run)  # a consistent marker, to reach the check under test
    with pytest.raises(GPTClassifierError, match="another version of gpt-classifier"):
        load_run(run)


def test_truncated_weights(tmp_path, tiny_config):
    run = _saved(tmp_path, tiny_config)
    weights = run / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    write_marker(run)  # a consistent marker, to reach the check under test
    with pytest.raises(GPTClassifierError, match="corrupt or truncated"):
        load_run(run)


def test_class_count_that_does_not_match_the_weights(tmp_path, tiny_config):
    run = _saved(tmp_path, tiny_config)
    values = json.loads((run / "run.json").read_text())
    values["classifier"].update(classes=["a", "b", "c"], num_classes=3)
    (run / "run.json").write_text(json.dumps(values))
    write_marker(run)  # a consistent marker, to reach the check under test
    with pytest.raises(GPTClassifierError, match="head for 2 classes but run.json lists 3"):
        load_run(run)


def test_malformed_run_file(tmp_path, tiny_config):
    run = _saved(tmp_path, tiny_config)
    (run / "run.json").write_text("{not json")
    write_marker(run)  # a consistent marker, to reach the check under test
    with pytest.raises(GPTClassifierError, match="not valid JSON"):
        load_run(run)


# --- more round trips and bad run directories ---------------------------------------------------


def test_lora_run_reloads_bit_identical_to_the_merged_model(
    tmp_path, tiny_config, tokenizer, tokenizer_dir
):
    model = _trained(tiny_config, "lora")
    with torch.no_grad():  # make the adapters matter: B starts at zero
        for name, param in model.named_parameters():
            if name.endswith("lora.B"):
                param.normal_(0.0, 0.1)
    ids = torch.randint(0, tiny_config.vocab_size, (3, 10))
    lengths = torch.tensor([10, 4, 7])
    with torch.no_grad():
        unmerged = model(ids, lengths)
    info = _info(tiny_config)
    save_run(model, info, tmp_path / "run")
    assert not any("lora" in name for name in model.state_dict())  # merged in place
    loaded = load_run(tmp_path / "run").model
    with torch.no_grad():
        merged, reloaded = model(ids, lengths), loaded(ids, lengths)
    assert torch.equal(reloaded, merged)
    torch.testing.assert_close(reloaded, unmerged, rtol=0, atol=1e-5)
    texts = ["Free entry! txt WIN to 80082", "see you at 5"]
    in_memory = TextClassifier(model, tokenizer, info, "cpu", precision="fp32")
    from_run = TextClassifier.from_run(
        tmp_path / "run", device="cpu", tokenizer_dir=tokenizer_dir, precision="fp32"
    )
    assert (in_memory.predict_proba(texts) == from_run.predict_proba(texts)).all()


def test_run_info_round_trips(tmp_path, tiny_config):
    info = RunInfo(
        gpt_config=tiny_config,
        classes=("negative", "neutral", "positive"),
        pooling="last",
        padding="longest-train",
        max_length=37,
        pad_length=37,
        base_model="tiny.json",
        init="random",
        extra={"training": {"lr": 0.001}, "preset": "book"},
    )
    model = GPTClassifier(GPTModel(tiny_config), 3, pooling="last")
    save_run(model, info, tmp_path / "run")
    loaded = load_run(tmp_path / "run")
    extra = dict(loaded.info.extra)
    # run.json's package_version comes back in ``extra`` (see the report: a re-saved run keeps
    # the old version number); everything else round-trips exactly
    assert extra.pop("package_version", None) in (None, __version__)
    assert dataclasses.replace(loaded.info, extra=extra) == info
    assert loaded.model.run_info is loaded.info
    assert loaded.model.pooling == "last" and loaded.model.num_classes == 3
    assert not loaded.model.training
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging folder left
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "model.safetensors",
        "run-complete.json",
        "run.json",
    ]  # no temporary files left behind


def test_weights_with_a_three_class_head_and_two_listed_classes(tmp_path, tiny_config):
    three = GPTClassifier(GPTModel(tiny_config), 3)
    save_run(three, _info(tiny_config, ("ham", "spam")), tmp_path / "run")
    with pytest.raises(GPTClassifierError) as error:
        load_run(tmp_path / "run")
    message = str(error.value)
    assert "head for 3 classes" in message and "lists 2 (ham, spam)" in message
    assert "\n" not in message


def test_missing_weights_file(tmp_path, tiny_config):
    run = _saved(tmp_path, tiny_config)
    (run / "model.safetensors").unlink()
    with pytest.raises(GPTClassifierError, match="has no model.safetensors"):
        load_run(run)


def test_not_a_run_file_or_an_incomplete_one(tmp_path, tiny_config):
    run = _saved(tmp_path, tiny_config)
    values = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**values, "format": "something-else"}))
    write_marker(run)  # a consistent marker, to reach the check under test
    with pytest.raises(GPTClassifierError, match="not a gpt-classifier run file"):
        load_run(run)
    del values["inputs"]
    (run / "run.json").write_text(json.dumps(values))
    write_marker(run)  # a consistent marker, to reach the check under test
    with pytest.raises(GPTClassifierError, match="incomplete or malformed"):
        load_run(run)
    (run / "run.json").write_text("[1, 2]")
    write_marker(run)  # a consistent marker, to reach the check under test
    with pytest.raises(GPTClassifierError, match="must hold a JSON object"):
        load_run(run)


def test_weights_of_another_model_size(tmp_path, tiny_config):
    run = _saved(tmp_path, tiny_config)
    values = json.loads((run / "run.json").read_text())
    values["model"]["gpt_config"]["n_layers"] = tiny_config.n_layers + 1
    (run / "run.json").write_text(json.dumps(values))
    write_marker(run)  # a consistent marker, to reach the check under test
    with pytest.raises(GPTClassifierError, match="holds 3 transformer blocks but .* n_layers 4"):
        load_run(run)
    values["model"]["gpt_config"]["n_layers"] = tiny_config.n_layers
    values["model"]["gpt_config"]["emb_dim"] = tiny_config.emb_dim * 2
    (run / "run.json").write_text(json.dumps(values))
    write_marker(run)  # a consistent marker, to reach the check under test
    with pytest.raises(GPTClassifierError, match="has shape"):
        load_run(run)


# --- every field of run.json is checked (issue 12, item 11) -------------------------------------


@pytest.fixture
def run_copy(tmp_path, saved_run):
    """A private copy of the session's tiny saved run (batch padding, max_length 12, context 32)."""
    return Path(shutil.copytree(saved_run, tmp_path / "run"))


def _edit(run, changes: dict[str, object]) -> None:
    """Set (or, with ``_DELETE``, remove) run.json values named by dotted paths."""
    values = json.loads((run / "run.json").read_text())
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        target = values
        for parent in parents:
            target = target[parent]
        if value is _DELETE:
            del target[key]
        else:
            target[key] = value
    (run / "run.json").write_text(json.dumps(values))
    write_marker(run)  # a consistent marker, to reach the checks under test


def _one_line_error(run, *words: str, load=load_run) -> str:
    with pytest.raises(GPTClassifierError) as error:
        load(run)
    message = str(error.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message
    return message


LONGEST = {"inputs.padding": "longest-train"}  # pad_length may be a number with this padding


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        # pad_length: tracebacks before (negative size, texts longer than the row, > context)
        ({**LONGEST, "inputs.pad_length": -3}, ["inputs.pad_length", "between 12 and 32", "-3"]),
        (
            {**LONGEST, "inputs.pad_length": 3},
            ["inputs.pad_length", "between 12 and 32", "(got 3)"],
        ),
        ({**LONGEST, "inputs.pad_length": 100000}, ["inputs.pad_length", "100000"]),
        ({**LONGEST, "inputs.pad_length": 12.0}, ["inputs.pad_length must be an integer", "12.0"]),
        ({**LONGEST, "inputs.pad_length": True}, ["inputs.pad_length must be an integer", "true"]),
        ({"inputs.pad_length": 12}, ['must be null with padding "batch"', "12"]),
        ({**LONGEST, "inputs.pad_length": None}, ['a number of tokens with padding "longest']),
        (
            {"inputs.padding": "fixed:24", "inputs.pad_length": 20},
            ['must be 24 with padding "fixed:24"'],
        ),
        (
            {"inputs.padding": "context", "inputs.pad_length": 20},
            ['must be 32 with padding "context"'],
        ),
        # pad_token_id: an embedding IndexError before
        ({"inputs.pad_token_id": 999999}, ["inputs.pad_token_id", "between 0 and 50256"]),
        ({"inputs.pad_token_id": -1}, ["inputs.pad_token_id", "(got -1)"]),
        ({"inputs.pad_token_id": "50256"}, ["inputs.pad_token_id must be an integer"]),
        # max_length: 3.7 and true were accepted
        ({"inputs.max_length": 3.7}, ["inputs.max_length must be an integer", "3.7"]),
        ({"inputs.max_length": True}, ["inputs.max_length must be an integer", "true"]),
        ({"inputs.max_length": 0}, ["inputs.max_length", "between 1 and 32", "(got 0)"]),
        ({"inputs.max_length": 33}, ["inputs.max_length", "between 1 and 32", "(got 33)"]),
        ({"inputs.max_length": _DELETE}, ["incomplete or malformed", "inputs.max_length"]),
        ({"inputs.padding": "wide"}, ["inputs.padding must be one of", '"wide"']),
        ({"inputs.padding": "fixed:²"}, ["inputs.padding must be one of"]),
        ({"inputs.padding": ["batch"]}, ["inputs.padding must be a string"]),
        ({"inputs.tokenizer": "bert"}, ["inputs.tokenizer must be one of gpt2", '"bert"']),
        # classes: a string was iterated into one class per character
        ({"classifier.classes": "ab"}, ["classifier.classes must be a list", '"ab"']),
        ({"classifier.classes": ["ham", "ham"]}, ['classifier.classes lists "ham" twice']),
        ({"classifier.classes": ["ham", 1]}, ["classifier.classes[1] must be a string"]),
        ({"classifier.classes": ["ham", " "]}, ["classifier.classes[1] is empty"]),
        ({"classifier.classes": []}, ["at least 2 classes", "(got [])"]),
        ({"classifier.classes": ["ham"]}, ["at least 2 classes"]),
        ({"classifier.classes": {"ham": 0}}, ["classifier.classes must be a list"]),
        ({"classifier.num_classes": 99}, ["classifier.num_classes must be", "(got 99)"]),
        ({"classifier.num_classes": True}, ["classifier.num_classes must be", "(got true)"]),
        ({"classifier.pooling": "max"}, ["classifier.pooling must be one of", '"max"']),
        ({"classifier.pooling": None}, ["classifier.pooling must be a string", "null"]),
        ({"model.init": "maybe"}, ["model.init must be one of pretrained, random"]),
        ({"model.base_model": 5}, ["model.base_model must be a string"]),
        ({"model.gpt_config": [1]}, ["model.gpt_config", "must be a JSON object"]),
        ({"model.gpt_config.n_layers": True}, ["n_layers must be a positive integer (got True)"]),
        ({"model.gpt_config.emb_dim": 16.0}, ["emb_dim must be a positive integer (got 16.0)"]),
        ({"model.gpt_config.drop_rate": "0.1"}, ["drop_rate must be a number in [0, 1)"]),
        ({"model.gpt_config.drop_rate": float("nan")}, ["drop_rate must be a number in [0, 1)"]),
        ({"model.gpt_config.qkv_bias": "false"}, ["qkv_bias must be true or false"]),
        ({"model.gpt_config.causal": 0}, ["causal must be true or false"]),
        ({"model.gpt_config.vocab_size": 100}, ["vocab_size must be at least 50257", "gpt2"]),
        ({"format_version": True}, ["another version of gpt-classifier", "true"]),
        ({"inputs": "batch"}, ["incomplete or malformed", "inputs must be a JSON object"]),
    ],
)
def test_every_run_json_field_is_checked(run_copy, changes, words):
    _edit(run_copy, changes)
    message = _one_line_error(run_copy, *words, load=read_run_info)
    assert message.startswith(str(run_copy / "run.json"))


@pytest.mark.parametrize(
    ("padding", "max_length", "pad_length"),
    [
        ("longest-train", 12, 12),
        ("longest-train", 8, 20),
        ("fixed:24", 24, 24),
        ("context", 32, 32),
    ],
)
def test_valid_padding_and_lengths_load_and_classify(
    run_copy, tokenizer_dir, padding, max_length, pad_length
):
    _edit(
        run_copy,
        {
            "inputs.padding": padding,
            "inputs.max_length": max_length,
            "inputs.pad_length": pad_length,
        },
    )
    classifier = TextClassifier.from_run(
        run_copy, device="cpu", tokenizer_dir=tokenizer_dir, precision="fp32"
    )
    assert (classifier.info.max_length, classifier.info.pad_length) == (max_length, pad_length)
    long_text = "win a prize now " * 20  # longer than max_length: cut, then padded
    probabilities = torch.from_numpy(classifier.predict_proba([long_text, "ok"]))
    assert torch.isfinite(probabilities).all()
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(2))


def _rewrite_weights(run, change) -> None:
    weights = run / "model.safetensors"
    state = load_file(str(weights))
    change(state)
    save_file(state, str(weights))
    write_marker(run)


def test_integer_weights_name_the_tensor_and_dtype(run_copy):
    def to_int(state):
        state["gpt.pos_emb.weight"] = state["gpt.pos_emb.weight"].to(torch.int32)

    _rewrite_weights(run_copy, to_int)  # a traceback in the first matmul before
    _one_line_error(run_copy, "tensor gpt.pos_emb.weight has dtype int32", "float32")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_name_the_first_tensor(run_copy, tokenizer, bad):
    def poison(state):
        state["gpt.trf_blocks.1.ff.layers.0.bias"][3] = bad
        state["gpt.out_head.weight"][0, 0] = bad

    _rewrite_weights(run_copy, poison)  # classify printed "ham nan" before
    _one_line_error(run_copy, "tensor gpt.trf_blocks.1.ff.layers.0.bias holds NaN or infinite")


def test_half_precision_weights_load_as_float32(run_copy, saved_run):
    _rewrite_weights(run_copy, lambda state: state.update({k: v.half() for k, v in state.items()}))
    loaded = load_run(run_copy).model
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    original = load_run(saved_run).model
    ids = torch.randint(0, 50257, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), original(ids), atol=1e-2, rtol=1e-2)


def test_float64_weights_beyond_float32_range_are_refused(run_copy):
    def widen(state):
        state["gpt.final_norm.scale"] = state["gpt.final_norm.scale"].double()
        state["gpt.final_norm.scale"][0] = 1e300  # finite in float64, inf in float32

    _rewrite_weights(run_copy, widen)
    _one_line_error(run_copy, "tensor gpt.final_norm.scale holds NaN or infinite")


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("n_layers", 10**6, ["holds 2 transformer blocks", "n_layers 1000000"]),
        ("emb_dim", 2**62, ["gpt.tok_emb.weight has shape (50257, 16)", "(vocab_size, emb_dim)"]),
        ("context_length", 2**40, ["gpt.pos_emb.weight has shape (32, 16)", "context_length"]),
    ],
)
def test_huge_sizes_are_compared_with_the_weights_before_building(run_copy, key, value, words):
    # an overflow, or minutes building a million blocks on the meta device, before
    _edit(run_copy, {f"model.gpt_config.{key}": value})
    _one_line_error(run_copy, *words)


def test_deeply_nested_or_huge_json_is_a_json_error(run_copy):
    (run_copy / "run.json").write_text("[" * 100_000 + "]" * 100_000)
    write_marker(run_copy)
    _one_line_error(run_copy, "run.json is not valid JSON")
    (run_copy / "run.json").write_text('{"format": ' + "9" * 5000 + "}")
    write_marker(run_copy)
    _one_line_error(run_copy, "run.json is not valid JSON")


# --- unreadable runs (item 10) ----------------------------------------------------------------


@pytest.mark.parametrize("target", ["run.json", "model.safetensors", "."])
def test_unreadable_run_is_a_one_line_error(run_copy, unprivileged, target):
    """A file (or the folder) without permissions: a real EACCES, for root too."""
    path = run_copy / target
    path.chmod(0)
    try:
        message = unprivileged(lambda: _one_line_error(run_copy, "cannot read"))
        assert "permission denied" in message.lower()
    finally:
        path.chmod(0o755)


@pytest.mark.parametrize("target", ["run.json", "model.safetensors", "folder", "parent"])
def test_permission_errors_are_one_line_errors_even_as_root(run_copy, deny_access, target):
    """What the OS raises for a file (or a folder) this user may not read, simulated."""
    denied = run_copy if target in ("folder", "parent") else run_copy / target

    deny_access(denied, target)
    message = _one_line_error(run_copy, "cannot read", str(run_copy))
    assert "permission denied" in message.lower()


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002], ids=oct)
def test_saved_files_get_the_umask_permissions(tmp_path, saved_config, umask):
    model = GPTClassifier(GPTModel(saved_config), 2)
    info = _info(saved_config)
    previous = os.umask(umask)
    try:
        save_run(model, info, tmp_path / "run")
    finally:
        os.umask(previous)
    for name in ("run.json", "model.safetensors"):
        mode = stat.S_IMODE((tmp_path / "run" / name).stat().st_mode)
        assert mode == 0o666 & ~umask, f"{name}: {oct(mode)}"


@pytest.mark.parametrize(
    ("save", "file"), [("full", "model.safetensors"), ("trainable", "trained.safetensors")]
)
def test_the_same_model_saves_to_the_same_bytes_in_any_process(tmp_path, save, file):
    """Processes with different hash seeds save the same seeded model to identical files."""
    import subprocess
    import sys

    script = (
        "import sys, torch\n"
        "from gpt_classifier.classifier import GPTClassifier, apply_trainable\n"
        "from gpt_classifier.config import GPTConfig\n"
        "from gpt_classifier.inference import RunInfo, save_run\n"
        "from gpt_classifier.model import GPTModel\n"
        "torch.manual_seed(0)\n"
        "cfg = GPTConfig(vocab_size=300, context_length=16, emb_dim=16, n_heads=2, n_layers=2)\n"
        "model = GPTClassifier(GPTModel(cfg), 2)\n"
        "apply_trainable(model, 'last-block')\n"
        "info = RunInfo(gpt_config=cfg, classes=('ham', 'spam'), pooling='last-real',\n"
        "               padding='batch', max_length=16, pad_length=None, save=sys.argv[2])\n"
        "save_run(model, info, sys.argv[1])\n"
    )
    files = []
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-c", script, tmp_path / seed, save], env=env, check=True)
        files.append((tmp_path / seed / file).read_bytes())
    assert files[0] == files[1] == files[2]  # the old save_file differed for seed 3
