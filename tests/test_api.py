"""The Python API: ``gpt_classifier.train(...)``, the classifier it returns and ``explain``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import gpt_classifier
from gpt_classifier import GPTClassifierError, TextClassifier, train
from gpt_classifier.cli.main import cli
from gpt_classifier.inference.explain import Explanation
from gpt_classifier.inference.predict import Prediction
from gpt_classifier.training.api import python_names

TEXTS = ["win a free prize now 99", "see you at lunch 99", "free prize", "lunch"]


def _micro(micro_files, tokenizer_dir, output_dir, **overrides):
    values = {
        "data_file": micro_files["data"],  # a Path, as Python users pass them
        "model": micro_files["config"],
        "init": "random",
        "tokenizer_dir": tokenizer_dir,
        "output_dir": output_dir,
        "trainable": "all",
        "epochs": 2,
        "batch_size": 4,
        "progress": False,
        "plots": False,
    }
    return train(**{**values, **overrides})


@pytest.fixture(scope="module")
def trained(tmp_path_factory, micro_files, tokenizer_dir) -> TextClassifier:
    return _micro(micro_files, tokenizer_dir, tmp_path_factory.mktemp("api") / "run")


def test_train_returns_the_saved_run_as_a_classifier(trained, tokenizer_dir):
    assert isinstance(trained, TextClassifier)
    saved = json.loads((trained.run_dir / "metrics.json").read_text())
    assert trained.metrics["test"]["accuracy"] == saved["test"]["accuracy"]
    assert set(trained.metrics) == {"train", "validation", "test"}
    again = TextClassifier.from_run(trained.run_dir, tokenizer_dir=tokenizer_dir)
    assert again.predict(TEXTS) == trained.predict(TEXTS)


def test_classify_predict_and_predict_proba_agree(trained):
    one = trained.classify(TEXTS[0])
    assert isinstance(one, Prediction) and trained(TEXTS[0]) == one
    many = trained.classify(TEXTS)
    assert isinstance(many, list) and len(many) == len(TEXTS) and many[0] == one
    proba = trained.predict_proba(TEXTS)
    assert isinstance(proba, np.ndarray) and proba.shape == (len(TEXTS), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert list(trained.classes_) == ["ham", "spam"]
    labels = trained.predict(TEXTS)
    assert labels == [p.label for p in many] == list(trained.classes_[proba.argmax(axis=1)])
    for row, prediction in zip(proba, many, strict=True):
        assert dict(zip(trained.classes_, row.tolist(), strict=True)) == prediction.probabilities


def test_explain_is_exported_and_takes_one_text_or_a_list(trained):
    one = gpt_classifier.explain(trained, TEXTS[0])
    assert isinstance(one, Explanation) and one.label == trained.classify(TEXTS[0]).label
    assert [e.label for e in gpt_classifier.explain(trained, TEXTS[:2])] == trained.predict(
        TEXTS[:2]
    )


def test_an_unknown_keyword_is_named_with_the_valid_ones(tmp_path):
    with pytest.raises(TypeError, match="'epoch'") as caught:
        train(epoch=3, output_dir=tmp_path / "run")
    assert "did you mean 'epochs'" in str(caught.value)
    assert "data_file" in str(caught.value) and "balance" in str(caught.value)
    with pytest.raises(TypeError, match="output_dir="):
        train(epochs=3)
    assert not (tmp_path / "run").exists()


def test_errors_name_keyword_arguments_in_python_and_flags_in_the_cli(
    micro_files, tokenizer_dir, tmp_path
):
    with pytest.raises(GPTClassifierError, match="lower batch_size= or") as caught:
        _micro(micro_files, tokenizer_dir, tmp_path / "a", batch_size=500)
    assert "--" not in str(caught.value)
    args = ["train", "--data-file", str(micro_files["data"]), "--batch-size", "500"]
    result = CliRunner().invoke(cli, [*args, "--output-dir", str(tmp_path / "b")])
    assert result.exit_code == 2 and "lower --batch-size or" in result.output


def test_python_names_spell_flags_as_keyword_arguments():
    assert python_names("pass --tokenizer-dir DIR or") == "pass tokenizer_dir=DIR or"
    assert python_names("--init random cannot") == "init='random' cannot"
    assert python_names("(--no-prefix-cache)") == "(prefix_cache=False)"
    assert python_names("--keep-duplicates keeps them") == "keep_duplicates=True keeps them"
    assert python_names("--drop-duplicates, --grad-accum 4") == (
        "keep_duplicates=False, grad_accum_steps=4"
    )
    assert python_names("missing --output-dir (the run)") == "missing output_dir= (the run)"
    assert python_names("gpt-classifier train --resume runs/x") == (
        "gpt-classifier train --resume runs/x"  # not an option of train(): left as it is
    )


def test_importing_the_package_stays_cheap():
    code = "import sys, gpt_classifier; print(any('training' in m for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_readme_python_example_runs(micro_files, tokenizer_dir, tmp_path):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    example = readme.split("## Python\n\n```python\n", 1)[1].split("```", 1)[0]
    assert "epochs=3)" in example
    tiny = f"model={str(micro_files['config'])!r}, init='random', batch_size=4, progress=False"
    (tmp_path / "reviews.csv").write_bytes(micro_files["data"].read_bytes())
    result = subprocess.run(
        [sys.executable, "-c", example.replace("epochs=3)", f"epochs=1, {tiny})")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "GPT_CLASSIFIER_TOKENIZER_DIR": str(tokenizer_dir)},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "runs" / "reviews" / "metrics.json").is_file()
