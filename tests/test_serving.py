"""The HTTP API: the Python API's answers, a clear 422 for bad requests, a real server runs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

pytest.importorskip("fastapi", reason="serving needs the 'serve' extra (FastAPI, uvicorn)")
from fastapi.testclient import TestClient  # noqa: E402

from gpt_classifier.inference import TextClassifier  # noqa: E402
from gpt_classifier.serving import create_app  # noqa: E402

TEXTS = ["WINNER!! Claim your prize now", "see you at 5?", "ok"]


@pytest.fixture(scope="module")
def classifier(saved_run, tokenizer_dir):
    return TextClassifier.from_run(saved_run, device="cpu", tokenizer_dir=tokenizer_dir)


@pytest.fixture(scope="module")
def client(classifier, saved_run):
    return TestClient(create_app(classifier, max_texts=4, run_dir=str(saved_run)))


def test_classify_returns_what_the_python_api_returns(client, classifier):
    response = client.post("/classify", json={"texts": TEXTS})
    assert response.status_code == 200
    body = response.json()
    expected = classifier.classify(TEXTS)
    assert [p["label"] for p in body["predictions"]] == [p.label for p in expected]
    for got, want in zip(body["predictions"], expected, strict=True):
        assert got["probability"] == pytest.approx(want.probability, abs=1e-6)
        assert got["probabilities"] == pytest.approx(want.probabilities, abs=1e-6)
        assert set(got["probabilities"]) == {"ham", "spam"}
    assert body["truncated"] == 0


def test_long_texts_are_counted_as_truncated(client):
    body = client.post("/classify", json={"texts": [" ".join(["word"] * 40)]}).json()
    assert body["truncated"] == 1  # the run was trained on 12 tokens


def test_info_and_health(client, saved_run):
    assert client.get("/health").json() == {"status": "ok"}
    info = client.get("/info").json()
    assert info["classes"] == ["ham", "spam"]
    assert info["max_length"] == 12 and info["pooling"] == "last-real"
    assert info["run_dir"] == str(saved_run) and info["max_texts"] == 4


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"texts": ["fine", "   "]}, "text 2 is empty"),
        ({"texts": ["a"] * 5}, "5 texts in one request; the limit is 4"),
    ],
)
def test_bad_requests_get_a_clear_422(client, payload, message):
    response = client.post("/classify", json=payload)
    assert response.status_code == 422
    assert message in response.json()["detail"]


@pytest.mark.parametrize("payload", [{}, {"texts": []}, {"texts": "one string"}, {"text": "x"}])
def test_malformed_bodies_are_rejected_by_the_schema(client, payload):
    assert client.post("/classify", json=payload).status_code == 422


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read()


def test_serve_command_answers_over_http(saved_run, tokenizer_dir, classifier):
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gpt_classifier.cli.main", "serve", str(saved_run)]
        + ["--port", str(port), "--tokenizer-dir", str(tokenizer_dir), "--device", "cpu"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                assert json.loads(_get(base + "/health")) == {"status": "ok"}
                break
            except (urllib.error.URLError, ConnectionError):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(server.communicate()[1].decode()) from None
                time.sleep(0.2)
        request = urllib.request.Request(
            base + "/classify",
            data=json.dumps({"texts": TEXTS}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.loads(response.read())
        assert [p["label"] for p in body["predictions"]] == [
            p.label for p in classifier.classify(TEXTS)
        ]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_serve_command_rejects_a_missing_run(tmp_path):
    from click.testing import CliRunner

    from gpt_classifier.cli.main import cli

    result = CliRunner().invoke(cli, ["serve", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "error:" in result.output
