"""Fuzzing a saved run: whatever run.json or model.safetensors hold, loading either gives a model
that classifies (one of the classes, finite probabilities) or a ``GPTClassifierError``, never
another exception.

Each property runs a bounded number of examples (``max_examples`` below), derandomized so the
suite stays reproducible; run with ``--hypothesis-show-statistics`` to see how many examples
loaded and how many were refused.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gpt_classifier.classifier import GPTClassifier
from gpt_classifier.config import GPTConfig
from gpt_classifier.errors import GPTClassifierError
from gpt_classifier.inference import RunInfo, TextClassifier, load_run, save_run
from gpt_classifier.model import GPTModel
from gpt_classifier.runs.run_dir import RUN_FILE, WEIGHTS_FILE, read_run_info
from gpt_classifier.runs.transaction import MARKER_FILE, write_marker

# The real vocabulary (the tokenizer's ids must fit), everything else as small as it gets.
CONFIG = GPTConfig(vocab_size=50257, context_length=16, emb_dim=8, n_heads=2, n_layers=2)
TEXTS = ["WINNER!! claim your prize now <|endoftext|> txt 80082", "ok"]

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,  # the same examples every run: a failure here is never a flaky one
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    torch.manual_seed(5)
    model = GPTClassifier(GPTModel(CONFIG), 3, pooling="last-real", head_seed=5)
    info = RunInfo(
        gpt_config=CONFIG,
        classes=("ham", "spam", "other"),
        pooling="last-real",
        padding="longest-train",
        max_length=10,
        pad_length=10,
        extra={"training": {"lr": 5e-5}},
    )
    return save_run(model, info, tmp_path_factory.mktemp("fuzz") / "base")


@pytest.fixture(scope="module")
def work_run(base_run, tmp_path_factory) -> Path:
    """A copy that every example overwrites (Hypothesis runs them one after another)."""
    return Path(shutil.copytree(base_run, tmp_path_factory.mktemp("fuzz") / "work"))


def _restore(base_run: Path, work_run: Path) -> None:
    for name in (RUN_FILE, WEIGHTS_FILE, MARKER_FILE):
        shutil.copyfile(base_run / name, work_run / name)


def _classifies(run: Path, tokenizer) -> None:
    """Load ``run`` (a GPTClassifierError is an accepted outcome), then it must classify.

    The completeness marker is rewritten first: these examples are about the content of
    run.json and the weights, which a stale digest would hide."""
    write_marker(run)
    try:
        read_run_info(run)
        loaded = load_run(run)
    except GPTClassifierError as error:
        assert "\n" not in str(error)
        event("refused")
        return
    event("loaded")
    predictor = TextClassifier(loaded.model, tokenizer, loaded.info, "cpu", precision="fp32")
    for prediction in predictor.classify(TEXTS):
        assert prediction.label in loaded.info.classes
        values = list(prediction.probabilities.values())
        assert all(math.isfinite(p) and 0.0 <= p <= 1.0 for p in values), values
        assert math.isclose(sum(values), 1.0, abs_tol=1e-4)


# --- run.json ---------------------------------------------------------------------------------


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path in a JSON value, containers included (the root excepted)."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


_INTERESTING_INTS = [0, 1, 2, 3, -1, -3, 9, 10, 11, 15, 16, 17, 50255, 50256, 50257, 2**31, 2**63]
_PLAUSIBLE_STRINGS = [
    "batch", "longest-train", "context", "fixed:10", "fixed:16", "fixed:0", "fixed:-1",
    "fixed:99", "last", "first", "mean", "last-real", "gpt2", "pretrained", "random", "ham", "",
    " ", "gpt-classifier-run", "spam",
]  # fmt: skip
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from(_INTERESTING_INTS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, 3.7, 10.0, 0.5]),
    st.text(max_size=12),
    st.sampled_from(_PLAUSIBLE_STRINGS),
)
_json_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)
_mutation = st.tuples(
    st.sampled_from(["delete", "replace", "replace", "replace", "add"]),
    st.integers(min_value=0, max_value=10**6),  # which path, modulo their number
    _json_values,
    st.text(max_size=8),  # a new key for "add"
)


def _mutate(values: dict, mutations: list) -> dict:
    for action, which, new_value, new_key in mutations:
        paths = _paths(values)
        path = paths[which % len(paths)]
        *parents, last = path
        parent = values
        for step in parents:
            parent = parent[step]
        if action == "delete":
            del parent[last]
        elif action == "replace":
            parent[last] = new_value
        elif isinstance(parent[last], dict):
            parent[last][new_key] = new_value
        elif isinstance(parent[last], list):
            parent[last].append(new_value)
        else:
            parent[last] = new_value
    return values


@FUZZ
@given(mutations=st.lists(_mutation, min_size=1, max_size=3))
def test_mutated_run_json_loads_or_is_refused(base_run, work_run, tokenizer, mutations):
    values = _mutate(json.loads((base_run / RUN_FILE).read_text()), mutations)
    _restore(base_run, work_run)
    (work_run / RUN_FILE).write_text(json.dumps(values))
    _classifies(work_run, tokenizer)


@st.composite
def _inputs(draw) -> dict[str, Any]:
    """run.json's inputs and classifier sections with values of the right types around their
    limits (context length 16), consistent more often than not, so that many of them load."""
    padding = draw(st.sampled_from(["batch", "longest-train", "context", "fixed:10", "fixed:16"]))
    max_length = draw(st.integers(min_value=1, max_value=16) | st.integers(-2, 20))
    natural = {"batch": None, "context": 16, "fixed:10": 10, "fixed:16": 16}.get(padding)
    if padding == "longest-train":
        natural = draw(st.integers(min_value=max_length, max_value=max(max_length, 16)))
    pad_length = draw(st.just(natural) | st.none() | st.integers(-2, 20))
    if pad_length is not None and draw(st.booleans()):
        max_length = draw(st.integers(min_value=1, max_value=max(1, pad_length)))
    names = st.text(max_size=4) | st.just(" ")
    # the head has 3 outputs: three distinct names load, anything else must be refused
    good = st.text(alphabet="abxyz -é", min_size=1, max_size=4).filter(str.strip)
    classes = draw(
        st.one_of(
            st.lists(good, min_size=3, max_size=3, unique=True),
            st.lists(good, min_size=3, max_size=3, unique=True),
            st.lists(names, max_size=4),
        )
    )
    return {
        "inputs": {
            "padding": padding,
            "max_length": max_length,
            "pad_length": pad_length,
            "pad_token_id": draw(st.sampled_from([50256, 0, 17]) | st.integers(-2, 50258)),
        },
        "classifier": {
            "classes": classes,
            "pooling": draw(st.sampled_from(["last", "first", "last-real", "mean", "max"])),
        },
    }


@FUZZ
@given(changes=_inputs())
def test_nearly_valid_inputs_load_or_are_refused(base_run, work_run, tokenizer, changes):
    """Values of the right types around their limits: many load, and then must classify."""
    values = json.loads((base_run / RUN_FILE).read_text())
    for section, fields in changes.items():
        values[section].update(fields)
    _restore(base_run, work_run)
    (work_run / RUN_FILE).write_text(json.dumps(values))
    _classifies(work_run, tokenizer)


# --- model.safetensors ------------------------------------------------------------------------


def _regions(data: bytes) -> list[tuple[int, int]]:
    """Byte ranges to corrupt: the header (names, dtypes, shapes, offsets), the whole file, and
    each tensor but the token embedding (97% of the file, of which a text reads a few rows)."""
    header_end = 8 + int.from_bytes(data[:8], "little")
    header = json.loads(data[8:header_end])
    tensors = [
        (header_end + begin, header_end + end)
        for name, entry in sorted(header.items())
        if name not in ("__metadata__", "gpt.tok_emb.weight")
        for begin, end in [entry["data_offsets"]]
    ]
    return [(0, header_end), (0, len(data)), *tensors]


_corruption = st.tuples(
    st.sampled_from(["flip", "flip", "flip", "nan", "truncate"]),
    st.sampled_from(["header", "anywhere", "tensor"]),
    st.integers(min_value=0, max_value=2**32),  # which tensor, modulo their number
    st.integers(min_value=0, max_value=2**32),  # where in the range, modulo its length
    st.integers(min_value=1, max_value=255),  # the xor mask of a flip
)


def _corrupt(data: bytes, corruptions: list) -> bytes:
    regions = _regions(data)
    out = bytearray(data)
    for action, region, which, where, mask in corruptions:
        index = {"header": 0, "anywhere": 1}.get(region, 2 + which % (len(regions) - 2))
        begin, end = regions[index]
        end = min(end, len(out))
        if end <= begin:
            continue  # cut off by an earlier truncation
        position = begin + where % (end - begin)
        if action == "flip":
            out[position] ^= mask
        elif action == "nan":  # a float32 NaN over the 4 aligned bytes there
            if region == "tensor":
                position -= (position - begin) % 4
            out[position : position + 4] = b"\x00\x00\xc0\x7f"[: len(out) - position]
        else:
            del out[position:]
    return bytes(out)


@FUZZ
@given(corruptions=st.lists(_corruption, min_size=1, max_size=3))
def test_corrupted_weights_load_or_are_refused(base_run, work_run, tokenizer, corruptions):
    _restore(base_run, work_run)
    data = _corrupt((base_run / WEIGHTS_FILE).read_bytes(), corruptions)
    (work_run / WEIGHTS_FILE).write_bytes(data)
    _classifies(work_run, tokenizer)
