"""The HTTP API: the Python API's answers, one-line errors (413/422/429), metrics, offline docs."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

for _module in ("fastapi", "prometheus_client", "swagger_ui_bundle"):
    pytest.importorskip(_module, reason="serving needs the 'serve' extra")
from fastapi.testclient import TestClient  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from gpt_classifier.serving import create_app  # noqa: E402

TEXTS = ["WINNER!! Claim your prize now", "see you at 5?", "ok"]


@pytest.fixture(scope="module")
def client(served_classifier, saved_run):
    app = create_app(
        served_classifier, max_texts=4, max_queue=8, max_request_bytes=2000, run_dir=str(saved_run)
    )
    with TestClient(app) as client:  # runs the lifespan: the batcher is drained at the end
        yield client


def test_classify_returns_what_the_python_api_returns(client, served_classifier):
    response = client.post("/classify", json={"texts": TEXTS})
    assert response.status_code == 200
    body = response.json()
    expected = served_classifier.classify(TEXTS)
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
    assert info["max_queue"] == 8 and info["max_request_bytes"] == 2000
    assert info["max_batch_tokens"] == 1024 and info["batch_wait_ms"] == 5.0


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"texts": ["fine", "   "]}, "text 2 is empty"),
        ({"texts": ["a"] * 5}, "5 texts in one request; the limit is 4"),
        ({"texts": ["ok", " ".join(["word"] * 40)], "truncate": False}, "text 2 has 40 tokens"),
        ({"texts": ["ok"], "truncte": False}, "truncte: Extra inputs are not permitted"),
        ({"texts": ["ok", 3]}, "texts.1: Input should be a valid string"),
    ],
)
def test_bad_requests_get_a_clear_422(client, payload, message):
    response = client.post("/classify", json=payload)
    assert response.status_code == 422
    assert message in response.json()["detail"]
    assert "\n" not in response.json()["detail"]


@pytest.mark.parametrize("payload", [{}, {"texts": []}, {"texts": "one string"}, {"text": "x"}])
def test_malformed_bodies_are_rejected_by_the_schema(client, payload):
    response = client.post("/classify", json=payload)
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], str)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"texts": ["a"', "body is not valid JSON"),
        (b"[" * 1500, "body is not valid JSON"),  # past the JSON parser's nesting limit
    ],
)
def test_unparseable_bodies_get_a_422(client, body, message):
    response = client.post("/classify", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert message in response.json()["detail"]


def test_long_texts_are_cut_unless_truncate_is_false(client):
    long = " ".join(["word"] * 40)
    assert (
        client.post("/classify", json={"texts": [long], "truncate": True}).json()["truncated"] == 1
    )
    assert client.post("/classify", json={"texts": [long], "truncate": False}).status_code == 422
    body = client.post("/classify", json={"texts": ["short"], "truncate": False}).json()
    assert body["truncated"] == 0 and len(body["predictions"]) == 1


def test_a_body_over_the_limit_gets_413_by_its_length_or_as_it_streams(client):
    big = json.dumps({"texts": ["x" * 3000]}).encode()
    response = client.post("/classify", content=big, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert "request body over 2000 bytes" in response.json()["detail"]

    def chunks():  # no Content-Length: only counting the streamed bytes can catch it
        for start in range(0, len(big), 500):
            yield big[start : start + 500]

    response = client.post(
        "/classify", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert "request body over 2000 bytes" in response.json()["detail"]


def test_a_full_queue_gets_429_with_retry_after_and_leaves_the_model_alone(
    client, served_classifier, monkeypatch
):
    batcher = client.app.state.batcher
    forward_calls = []
    for method in ("forward", "forward_packed"):
        monkeypatch.setattr(served_classifier, method, lambda *a, **k: forward_calls.append(a))
    batcher.reserve(6)  # as if 6 texts were waiting: room for 2 more in a queue of 8
    try:
        response = client.post("/classify", json={"texts": ["a", "b", "c"]})
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "1"
        assert "the queue holds 8" in response.json()["detail"]
        assert forward_calls == [] and batcher.depth == 6
    finally:
        batcher.release(6)
    monkeypatch.undo()
    assert client.post("/classify", json={"texts": ["a", "b", "c"]}).status_code == 200
    assert batcher.depth == 0


def _samples(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_metrics_count_requests_batches_and_texts(served_classifier):
    app = create_app(served_classifier, max_texts=4, max_request_bytes=2000)
    with TestClient(app) as client:
        for _ in range(2):
            assert client.post("/classify", json={"texts": TEXTS}).status_code == 200
        assert client.post("/classify", json={"texts": [" "]}).status_code == 422
        big = b"x" * 3000
        assert client.post("/classify", content=big).status_code == 413
        assert client.get("/nowhere").status_code == 404
        samples = _samples(client)

    def requests(endpoint: str, status: str) -> float:
        labels = (("endpoint", endpoint), ("method", "POST"), ("status", status))
        return samples.get(("gpt_classifier_http_requests_total", labels), 0)

    assert requests("/classify", "200") == 2
    assert requests("/classify", "422") == 1
    assert requests("/classify", "413") == 1
    not_found = (("endpoint", "other"), ("method", "GET"), ("status", "404"))
    assert samples[("gpt_classifier_http_requests_total", not_found)] == 1
    latency = ("gpt_classifier_http_request_duration_seconds_count", (("endpoint", "/classify"),))
    assert samples[latency] == 4
    assert samples[("gpt_classifier_texts_classified_total", ())] == 2 * len(TEXTS)
    assert samples[("gpt_classifier_batch_texts_sum", ())] == 2 * len(TEXTS)
    assert samples[("gpt_classifier_batch_texts_count", ())] >= 2
    assert samples[("gpt_classifier_batch_tokens_sum", ())] >= 2 * len(TEXTS)
    assert samples[("gpt_classifier_queue_depth", ())] == 0


def test_docs_render_from_local_assets_only(client):
    page = client.get("/docs")
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*'([^']+)'""", page.text)
    urls = [a or b for a, b in urls]
    assert any(url.endswith("swagger-ui-bundle.js") for url in urls)
    assert any(url.endswith("swagger-ui.css") for url in urls)
    assert "openapi.json" in " ".join(urls)
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        assert client.get(url).status_code == 200, url
    assert "://" not in page.text  # no CDN, no absolute link of any kind


def test_openapi_documents_every_endpoint_and_error_code(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    assert set(paths) == {
        "/classify",
        "/classify/file",
        "/explain",
        "/info",
        "/health",
        "/metrics",
    }
    classify = paths["/classify"]["post"]
    assert set(classify["responses"]) == {"200", "408", "413", "422", "429", "503"}
    assert "Retry-After" in classify["responses"]["429"]["headers"]
    for code in ("408", "413", "422", "429", "503"):
        schema = classify["responses"][code]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorOut"}
    for path in ("/classify/file", "/explain"):
        responses = paths[path]["post"]["responses"]
        assert set(responses) == {"200", "408", "413", "422", "429", "503"}, path
        assert "Retry-After" in responses["429"]["headers"]
    body = spec["components"]["schemas"]["ClassifyRequest"]
    assert set(body["properties"]) == {"texts", "truncate"}
    assert "text/plain" in paths["/metrics"]["get"]["responses"]["200"]["content"]
    for path in ("/info", "/health"):
        assert (
            "$ref"
            in paths[path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read()


def test_serve_command_answers_over_http(saved_run, tokenizer_dir, served_classifier):
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
            # TimeoutError: the socket listens while the model loads, a loaded CI can take >5 s
            except (urllib.error.URLError, ConnectionError, TimeoutError):
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
            p.label for p in served_classifier.classify(TEXTS)
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
