"""Saving and reloading a run: identical outputs, clear errors for anything else."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from gpt_classifier import __version__
from gpt_classifier.classifier import GPTClassifier, apply_trainable, parse_trainable
from gpt_classifier.errors import GPTClassifierError
from gpt_classifier.inference import RunInfo, TextClassifier, load_run, save_run
from gpt_classifier.inference.transaction import write_marker
from gpt_classifier.model import GPTModel


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
    assert torch.equal(in_memory.predict_proba(texts), reloaded.predict_proba(texts))


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
    values["classifier"]["classes"] = ["a", "b", "c"]
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
    assert torch.equal(in_memory.predict_proba(texts), from_run.predict_proba(texts))


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
