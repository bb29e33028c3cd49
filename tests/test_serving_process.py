"""``gpt-classifier serve`` as a real process on 127.0.0.1: a busy port fails before the model
loads, SIGTERM answers every request already received and exits 0."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

for _module in ("fastapi", "prometheus_client", "swagger_ui_bundle", "uvicorn"):
    pytest.importorskip(_module, reason="serving needs the 'serve' extra")
from click.testing import CliRunner  # noqa: E402

from gpt_classifier.cli.main import cli  # noqa: E402
from gpt_classifier.inference import TextClassifier  # noqa: E402

TEXTS = ["WINNER!! Claim your prize now", "see you at 5?", "ok", "call me later"]


def test_a_busy_port_fails_before_the_model_loads(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        # The run does not exist: the port must be the first thing checked.
        result = CliRunner().invoke(cli, ["serve", str(tmp_path / "no-run"), "--port", str(port)])
    assert result.exit_code == 2
    assert f"error: cannot listen on 127.0.0.1:{port}: address already in use" in result.output
    assert "serving" not in result.output


def test_max_queue_below_max_texts_is_refused(tmp_path):
    result = CliRunner().invoke(
        cli, ["serve", str(tmp_path), "--max-texts", "10", "--max-queue", "5", "--port", "0"]
    )
    assert result.exit_code == 2
    assert "--max-queue 5 is below --max-texts 10" in result.output


def _post(url: str, texts: list[str]) -> tuple[int, dict]:
    request = urllib.request.Request(
        url,
        data=json.dumps({"texts": texts}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _queue_depth(base: str) -> float:
    with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("gpt_classifier_queue_depth "):
                return float(line.split()[1])
    raise AssertionError("no gpt_classifier_queue_depth in /metrics")


def test_sigterm_answers_every_queued_request_then_exits_0(saved_run, tokenizer_dir):
    server = subprocess.Popen(
        [sys.executable, "-m", "gpt_classifier.cli.main", "serve", str(saved_run)]
        + ["--port", "0", "--tokenizer-dir", str(tokenizer_dir), "--device", "cpu"]
        # A batch would wait 20 s for more texts than will ever come: the requests are still
        # queued, unanswered, when SIGTERM arrives (which also ends the wait).
        + ["--batch-wait-ms", "20000", "--batch-size", "64"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        banner = server.stderr.readline()  # printed once the model is loaded and the port bound
        assert "serving" in banner, banner + server.stderr.read()
        base = "http://" + banner.split("http://")[1].split()[0]
        clients = ThreadPoolExecutor(len(TEXTS))
        futures = [clients.submit(_post, base + "/classify", [text]) for text in TEXTS]
        while _queue_depth(base) < len(TEXTS):  # every request admitted, none answered
            assert server.poll() is None and not any(f.done() for f in futures)
            time.sleep(0.02)
        assert not any(future.done() for future in futures)
        server.send_signal(signal.SIGTERM)
        answers = [future.result(timeout=60) for future in futures]
        clients.shutdown()
        assert server.wait(timeout=60) == 0
        remaining = server.stderr.read()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    classifier = TextClassifier.from_run(saved_run, device="cpu", tokenizer_dir=tokenizer_dir)
    for text, (status, body) in zip(TEXTS, answers, strict=True):
        assert status == 200, body
        assert body["predictions"][0]["label"] == classifier.classify([text])[0].label
    assert "stopped: every request received was answered" in remaining
    assert "Traceback" not in remaining


@pytest.mark.parametrize("when", ["while torch imports", "while the model loads"])
def test_ctrl_c_during_startup_prints_one_line_and_exits_130(saved_run, tokenizer_dir, when):
    # As the console script starts (its entry point imported: no torch yet), plus a marker
    # written when torch starts to import; the load is held at a pause point. A SIGINT sent
    # after the marker lands in the commands' imports or, on a fast machine, in the held load.
    launcher = """if True:
        import sys
        from gpt_classifier.cli import main

        class Marker:
            def find_spec(self, name, path=None, target=None):
                if name == "torch":
                    print("started", file=sys.stderr, flush=True)

        sys.meta_path.insert(0, Marker())
        main()
    """
    marker = "started" if when == "while torch imports" else "paused at serve-load"
    server = subprocess.Popen(
        [sys.executable, "-c", launcher, "serve", str(saved_run), "--port", "0"]
        + ["--tokenizer-dir", str(tokenizer_dir), "--device", "cpu"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "GPT_CLASSIFIER_PAUSE_AT": "serve-load", "PYTHONUNBUFFERED": "1"},
    )
    try:
        while (line := server.stderr.readline()) and marker not in line:
            pass
        assert marker in line
        server.send_signal(signal.SIGINT)
        rest = server.communicate(timeout=120)[1]
    finally:
        server.kill()
    assert server.returncode == 130, rest
    assert rest.replace("paused at serve-load\n", "") == "interrupted\n"


@pytest.fixture
def quick_timeouts_server(served_classifier, monkeypatch):
    """The server as ``serve`` configures it, in a thread, with header and body deadlines of
    half a second; its address."""
    import threading

    import uvicorn

    from gpt_classifier.cli.classify_commands import listen_socket
    from gpt_classifier.serving import create_app, server

    monkeypatch.setattr(server, "HEADER_TIMEOUT_SECONDS", 0.5)
    monkeypatch.setattr(server, "BODY_TIMEOUT_SECONDS", 0.5)
    sock = listen_socket("127.0.0.1", 0)
    running = uvicorn.Server(server.server_config(create_app(served_classifier, max_texts=4)))
    thread = threading.Thread(target=running.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not running.started:
        assert thread.is_alive(), "the test server did not start"
        time.sleep(0.02)
    yield sock.getsockname()
    running.should_exit = True
    thread.join(timeout=30)
    sock.close()


def _read_until_closed(client: socket.socket) -> bytes:
    client.settimeout(30)  # far past the deadlines: a connection left open fails the test
    answer = b""
    while chunk := client.recv(65536):
        answer += chunk
    return answer


def test_a_client_stalling_in_its_headers_is_disconnected(quick_timeouts_server):
    with socket.create_connection(quick_timeouts_server) as client:
        client.sendall(b"POST /classify HTTP/1.1\r\nHost: test\r\nContent-Ty")
        assert _read_until_closed(client) == b""  # closed, nothing answered


def test_a_client_stalling_in_its_body_gets_408_and_is_disconnected(quick_timeouts_server):
    with socket.create_connection(quick_timeouts_server) as client:
        # a first request on the connection is answered: the deadline is per request
        client.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        first = b""
        while b'{"status":"ok"}' not in first:
            first += client.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        head = b"POST /classify HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        client.sendall(head + b'Content-Length: 100\r\n\r\n{"texts": ["hal')
        answer = _read_until_closed(client)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"the request body did not arrive within 0.5 s" in answer
