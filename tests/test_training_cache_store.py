"""The frozen-prefix cache on disk: reuse is exact, corruption is recomputed, LRU eviction,
`gpt-classifier cache list|clear`."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from gpt_classifier.classifier import GPTClassifier, apply_trainable
from gpt_classifier.cli.main import cli
from gpt_classifier.config import GPTConfig
from gpt_classifier.data.encoding import EncodedDataset
from gpt_classifier.errors import GPTClassifierError
from gpt_classifier.model import GPTModel
from gpt_classifier.training.cache_store import (
    CacheStore,
    dataset_key,
    prefix_digests,
)
from gpt_classifier.training.pipeline import FinetuneOptions, run_finetune
from gpt_classifier.training.prefix_cache import HiddenStateCache, build_caches

SMALL = GPTConfig(vocab_size=100, context_length=16, emb_dim=16, n_heads=2, n_layers=3)


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "data.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows([(f"claim your free prize {i} now", "spam") for i in range(20)])
        writer.writerows([(f"lunch at {i} tomorrow?", "ham") for i in range(20)])
    return path


def _train(tmp_path, data_file, tokenizer_dir, tiny_config_file, name, **extra):
    messages: list[str] = []
    options = FinetuneOptions(
        output_dir=tmp_path / name,
        data_file=str(data_file),
        model=str(tiny_config_file),
        init="random",
        tokenizer_dir=str(tokenizer_dir),
        epochs=1,
        batch_size=4,
        progress=False,
        plots=False,
        **{"cache_dir": str(tmp_path / "cache"), **extra},
    )
    result = run_finetune(options, log=messages.append)
    return result, messages


def test_a_second_run_reuses_the_states_and_gets_the_same_numbers(
    tmp_path, data_file, tokenizer_dir, tiny_config_file
):
    first, log1 = _train(tmp_path, data_file, tokenizer_dir, tiny_config_file, "a")
    second, log2 = _train(tmp_path, data_file, tokenizer_dir, tiny_config_file, "b")
    assert first.cached_prefix and second.cached_prefix
    assert any("running blocks" in m for m in log1) and not any("reused" in m for m in log1)
    assert any("train, validation, test reused from" in m for m in log2)
    assert not any("running blocks" in m for m in log2)
    metrics = [json.loads((r.run_dir / "metrics.json").read_text()) for r in (first, second)]
    assert metrics[0] == metrics[1]
    a, b = (load_file(str(r.run_dir / "model.safetensors")) for r in (first, second))
    assert all(torch.equal(a[k], b[k]) for k in a)
    entries = CacheStore(tmp_path / "cache").entries()
    assert len(entries) == 3  # one per split, each saying what it holds (cache list shows it)
    model, data = Path(tiny_config_file).name, Path(data_file).name
    assert {e.about().split(" (")[0].split(", ", 1)[0] for e in entries} == {model}
    assert {e.about().split(", ")[-1].split(" (")[0] for e in entries} == {
        f"{data} {split}" for split in ("train", "validation", "test")
    }


def test_another_lr_reuses_the_cache_but_another_depth_does_not(
    tmp_path, data_file, tokenizer_dir, tiny_config_file
):
    _train(tmp_path, data_file, tokenizer_dir, tiny_config_file, "a")
    _, other_lr = _train(tmp_path, data_file, tokenizer_dir, tiny_config_file, "b", lr=1e-3)
    assert any("reused" in m for m in other_lr)
    _, deeper = _train(
        tmp_path, data_file, tokenizer_dir, tiny_config_file, "c", trainable="last-blocks:2"
    )
    assert not any("reused" in m for m in deeper)


def test_a_corrupt_entry_is_reported_and_recomputed(
    tmp_path, data_file, tokenizer_dir, tiny_config_file
):
    first, _ = _train(tmp_path, data_file, tokenizer_dir, tiny_config_file, "a")
    store = CacheStore(tmp_path / "cache")
    victim = store.entries()[0].path
    victim.write_bytes(victim.read_bytes()[:100])
    second, log = _train(tmp_path, data_file, tokenizer_dir, tiny_config_file, "b")
    assert sum("is corrupt or not this entry" in m for m in log) == 1
    assert any("running blocks" in m for m in log)
    metrics = [json.loads((r.run_dir / "metrics.json").read_text()) for r in (first, second)]
    assert metrics[0] == metrics[1]
    assert len(store.entries()) == 3


@pytest.mark.parametrize("poison", ["swapped", "rescaled"])
def test_an_entry_swapped_in_or_altered_is_reported_recomputed_and_rewritten(
    tmp_path, data_file, tokenizer_dir, tiny_config_file, poison
):
    """Well-formed, finite, but not the states its name promises: never reused."""
    first, _ = _train(tmp_path, data_file, tokenizer_dir, tiny_config_file, "a")
    store = CacheStore(tmp_path / "cache")
    victim, other = (entry.path for entry in store.entries()[:2])
    if poison == "swapped":  # another configuration's entry under this name
        victim.write_bytes(other.read_bytes())
    else:
        with safe_open(str(victim), "pt") as entry:
            metadata = entry.metadata()
            tensors = {name: entry.get_tensor(name) for name in ("storage", "lengths")}
        save_file({**tensors, "storage": tensors["storage"] * 1.5}, str(victim), metadata)
    second, log = _train(tmp_path, data_file, tokenizer_dir, tiny_config_file, "b")
    warnings = [m for m in log if "is corrupt or not this entry" in m]
    assert len(warnings) == 1 and str(victim) in warnings[0]
    metrics = [json.loads((r.run_dir / "metrics.json").read_text()) for r in (first, second)]
    assert metrics[0] == metrics[1]
    _, third = _train(tmp_path, data_file, tokenizer_dir, tiny_config_file, "c")
    assert any("train, validation, test reused from" in m for m in third)  # rewritten whole
    assert not any("not this entry" in m for m in third)


def test_a_failed_cache_write_is_a_warning_and_training_goes_on(
    tmp_path, data_file, tokenizer_dir, tiny_config_file, monkeypatch
):
    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("gpt_classifier.training.cache_store.write_entry", full_disk)
    result, log = _train(tmp_path, data_file, tokenizer_dir, tiny_config_file, "a")
    assert (result.run_dir / "metrics.json").is_file() and result.cached_prefix
    assert sum("warning: frozen-prefix cache: not kept on disk" in m for m in log) == 3
    assert any("No space left on device" in m for m in log)
    assert CacheStore(tmp_path / "cache").entries() == []
    assert not list((tmp_path / "cache").rglob("*.tmp"))  # no partial entry left


def test_disk_cache_off_writes_nothing(tmp_path, data_file, tokenizer_dir, tiny_config_file):
    _train(tmp_path, data_file, tokenizer_dir, tiny_config_file, "a", disk_cache=False)
    assert not (tmp_path / "cache").exists()


def _entry(rows: int) -> HiddenStateCache:
    return HiddenStateCache.of(torch.randn(rows, 16), [1] * rows)


def test_least_recently_used_entries_go_first(tmp_path):
    import os

    store = CacheStore(tmp_path, size_cap=10**9)
    for i, key in enumerate(["old", "mid", "new"]):
        store.save(key, _entry(100))
        os.utime(store.path(key), (1000 + i, 1000 + i))
    store.load("old", log=print)  # used now: the most recent
    size = store.path("old").stat().st_size
    store.size_cap = 2 * size
    removed = store.evict()
    assert [entry.key for entry in removed] == ["mid"]
    assert sorted(entry.key for entry in store.entries()) == ["new", "old"]


def test_keys_depend_on_the_frozen_part_and_the_ids_only():
    torch.manual_seed(0)
    model = GPTClassifier(GPTModel(SMALL), 2, head_seed=0)
    apply_trainable(model, "last-block")
    key = prefix_digests(model, 2, "fp32")[2]
    with torch.no_grad():
        model.gpt.trf_blocks[2].att.W_query.weight.add_(1.0)  # a trainable block: same key
        model.gpt.out_head.weight.add_(1.0)
    assert prefix_digests(model, 2, "fp32")[2] == key
    assert prefix_digests(model, 2, "bf16")[2] != key
    assert prefix_digests(model, 1, "fp32")[1] != key
    with torch.no_grad():
        model.gpt.trf_blocks[0].att.W_query.weight.add_(1.0)  # a frozen one: another key
    assert prefix_digests(model, 2, "fp32")[2] != key
    data = EncodedDataset([[1, 2, 3], [4, 5]], [0, 1])
    assert dataset_key(key, data, None) != dataset_key(key, data, 3)
    assert dataset_key(key, data, None) != dataset_key(
        key, EncodedDataset([[1, 2], [3, 4, 5]], [0, 1]), None
    )


def test_cache_list_and_clear(tmp_path):
    store = CacheStore(tmp_path / "prefix-cache")  # where the cache root's prefix cache lives
    store.save("a" * 64, _entry(10), "gpt2, blocks 0-10, sms-spam train (10 texts)")
    (store.folder / f"{'b' * 64}.safetensors").mkdir()  # a folder named like an entry is skipped
    runner = CliRunner()
    listed = runner.invoke(cli, ["cache", "list", "--cache-dir", str(store.folder)])
    assert listed.exit_code == 0 and listed.output.startswith("a" * 12)
    assert listed.output.splitlines()[0].endswith("gpt2, blocks 0-10, sms-spam train (10 texts)")
    assert "1 entries" in listed.output
    cleared = runner.invoke(cli, ["cache", "clear"], env={"GPT_CLASSIFIER_CACHE": str(tmp_path)})
    assert cleared.exit_code == 0 and "removed 1 entries" in cleared.output
    assert store.entries() == [] and (store.folder / f"{'b' * 64}.safetensors").is_dir()


def _encoded(lengths: list[int]) -> EncodedDataset:
    generator = torch.Generator().manual_seed(0)
    ids = [torch.randint(0, 1000, (n,), generator=generator).tolist() for n in lengths]
    return EncodedDataset(ids, [0] * len(ids))


@pytest.mark.parametrize("pad_length", [None, 12])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_deeper_prefix_extends_a_shallower_one_bit_for_bit(tiny_config, pad_length, precision):
    model = GPTClassifier(GPTModel(tiny_config), num_classes=2, pooling="last")
    data = _encoded([3, 12, 7, 7, 1, 9, 12, 5])

    def build(blocks, starting_states=None):
        cpu = torch.device("cpu")
        caches = build_caches(
            model, {"d": data}, {"d": pad_length}, blocks, cpu, precision,
            starting_states=starting_states,
        )  # fmt: skip
        return caches["d"]

    fresh, shallow = build(3), build(1)
    chained = build(3, {"d": (1, shallow)})
    assert torch.equal(fresh.all(), chained.all())
    assert not torch.equal(shallow.all(), fresh.all())


@pytest.mark.parametrize("causal", [True, False])
def test_each_text_attends_only_to_itself_in_the_prefix(tiny_config, causal):
    # Without the causal mask a real token would otherwise see the other texts of its slab.
    model = GPTClassifier(GPTModel(tiny_config), num_classes=2, pooling="last")
    if not causal:
        model.gpt.disable_causal_mask()
    data = _encoded([3, 12, 7, 7, 1])
    cache = build_caches(model, {"d": data}, {"d": None}, 2, torch.device("cpu"))["d"]
    for index, ids in enumerate(data.input_ids):
        with torch.inference_mode():
            alone = model.gpt.hidden_states(torch.tensor([ids]), 2)[0]
        torch.testing.assert_close(cache.state(index), alone, rtol=1e-5, atol=1e-6)


def test_digests_of_every_depth_in_one_pass():
    model = GPTClassifier(GPTModel(SMALL), num_classes=2)
    digests = prefix_digests(model, 3, "fp32")
    assert digests == [prefix_digests(model, depth, "fp32")[depth] for depth in range(4)]
    assert len(set(digests)) == 4


def test_a_run_of_a_deeper_prefix_starts_from_a_cached_shallower_one(
    tmp_path, data_file, tokenizer_dir, tiny_config_file
):
    _, first = _train(
        tmp_path, data_file, tokenizer_dir, tiny_config_file, "a", trainable="last-blocks:2"
    )
    chained, log = _train(tmp_path, data_file, tokenizer_dir, tiny_config_file, "b")
    assert any("start from the states after 2 block(s)" in m for m in log)
    assert any("running blocks 2-2" in m for m in log)
    fresh, _ = _train(
        tmp_path, data_file, tokenizer_dir, tiny_config_file, "c", cache_dir=str(tmp_path / "other")
    )
    metrics = [json.loads((r.run_dir / "metrics.json").read_text()) for r in (chained, fresh)]
    assert metrics[0] == metrics[1]
    a, b = (load_file(str(r.run_dir / "model.safetensors")) for r in (chained, fresh))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_full_states_folder_is_one_line_naming_it_and_tmpdir():
    class FullDisk(io.BytesIO):
        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    cache = HiddenStateCache(FullDisk(), [2, 3], 4, where="/full")
    message = r"cannot write the frozen-prefix states in /full: No space left on device; set TMPDIR"
    with pytest.raises(GPTClassifierError, match=message) as raised:
        cache.write(0, torch.ones(5, 4))
    assert "\n" not in str(raised.value)
    assert torch.equal(HiddenStateCache.of(torch.ones(5, 4), [2, 3]).state(1), torch.ones(3, 4))
