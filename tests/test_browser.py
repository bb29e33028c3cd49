"""The page in a real browser: Chromium (the system's, e.g. Debian's ``chromium`` package) driven
by Playwright against a real server on 127.0.0.1.

Skipped, saying why, when Playwright or a Chromium binary is missing (``.ci/run`` installs
both). Set ``GPT_CLASSIFIER_CHROMIUM`` to use another Chromium binary.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

for _module in ("fastapi", "prometheus_client", "swagger_ui_bundle", "multipart", "uvicorn"):
    pytest.importorskip(_module, reason="serving needs the 'serve' extra")
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the browser tests need Playwright: pip install playwright"
)

from gpt_classifier.cli.classify_commands import listen_socket  # noqa: E402
from gpt_classifier.inference import TextClassifier  # noqa: E402
from gpt_classifier.inference.explain import explain  # noqa: E402
from gpt_classifier.serving import create_app  # noqa: E402

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
MAX_TEXTS = 8
TIMEOUT_MS = 30_000  # a shared CI machine can be slow; the tests wait for elements, not times


def _chromium() -> str | None:
    configured = os.environ.get("GPT_CLASSIFIER_CHROMIUM")
    if configured:
        return configured
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


@pytest.fixture(scope="module")
def classifier(micro_run, tokenizer_dir):
    # float32: the server packs its passes, equal to the padded ones up to float rounding
    return TextClassifier.from_run(
        micro_run, device="cpu", tokenizer_dir=tokenizer_dir, precision="fp32"
    )


@pytest.fixture(scope="module")
def base_url(classifier, micro_run):
    """A real uvicorn server in a thread, on a free port of 127.0.0.1."""
    import uvicorn

    app = create_app(classifier, max_texts=MAX_TEXTS, max_queue=64, run_dir=str(micro_run))
    sock = listen_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    server.should_exit = True
    thread.join(timeout=30)
    sock.close()


@pytest.fixture(scope="module")
def browser():
    executable = _chromium()
    if executable is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set GPT_CLASSIFIER_CHROMIUM)")
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: CI containers run as root, where Chromium's sandbox refuses to start.
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser, base_url):
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []  # the page runs under its Content-Security-Policy: nothing refused
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.goto(base_url)
    page.wait_for_selector("#model-info .chip")  # /info answered: the page is ready
    yield page
    context.close()
    assert not [error for error in errors if "Content Security Policy" in error], errors


def _rows(page) -> list[list[str]]:
    return page.eval_on_selector_all(
        "#results-body tr",
        "rows => rows.map(r => [...r.cells].map(c => c.innerText.trim()))",
    )


def _wait_rows(page, count: int) -> list[list[str]]:
    # a locator, not a string predicate: the page's CSP forbids the eval that one needs
    sync_api.expect(page.locator("#results-body tr")).to_have_count(count)
    return _rows(page)


def test_the_model_panel_shows_the_run(page, classifier):
    panel = page.inner_text("#model-info")
    for name in classifier.classes:
        assert name in panel
    assert "Test accuracy" in panel and "Test macro F1" in panel
    assert "all" in panel and "last-real" in panel  # trainable part, pooling
    assert "Trained" in panel


def test_a_typed_message_gets_its_label_and_the_box_keeps_it(page, classifier):
    text = "win a free prize now 99"
    page.fill("#texts", text)
    page.click("#classify-button")
    (row,) = _wait_rows(page, 1)
    expected = classifier.classify([text])[0]
    assert row[1] == text and row[2] == expected.label
    assert row[3].replace("\u00a0", " ") == f"{100 * expected.probability:.1f} %"
    assert page.input_value("#texts") == text
    assert page.is_hidden("#error")


def test_ctrl_enter_classifies_one_message_per_line(page, classifier):
    texts = ["see you at lunch 7", "win a free prize now 3", "see you at lunch soon"]
    page.fill("#texts", "\n".join(texts) + "\n\n")  # blank lines are not messages
    page.press("#texts", "Control+Enter")
    rows = _wait_rows(page, 3)
    assert [row[1] for row in rows] == texts
    assert [row[2] for row in rows] == [p.label for p in classifier.classify(texts)]
    header = page.inner_text("#results-header")
    assert all(f"p({name})" in header for name in classifier.classes)
    assert page.is_hidden("#explain-card")  # explanations are for one message


def test_one_message_shows_each_token_highlighted(page, classifier):
    text = "win a free prize now 12"
    page.fill("#texts", text)
    page.press("#texts", "Control+Enter")
    page.wait_for_selector("#explain-card:not([hidden]) .token")
    tokens = page.eval_on_selector_all(
        "#explain-text .token",
        "spans => spans.map(s => [s.textContent, Number(s.dataset.score), "
        "getComputedStyle(s).backgroundColor])",
    )
    expected = explain(classifier, text)
    assert "".join(token for token, _, _ in tokens) == text
    assert [score for _, score, _ in tokens] == pytest.approx(
        [t.score for t in expected.tokens], abs=1e-3
    )
    strongest = max(range(len(tokens)), key=lambda i: abs(tokens[i][1]))
    assert tokens[strongest][2] != "rgba(0, 0, 0, 0)"  # coloured
    legend = page.inner_text(".legend")
    assert f"towards {expected.label}" in legend and f"away from {expected.label}" in legend


def test_an_uploaded_file_fills_a_sortable_table_and_downloads_as_csv(page, classifier, tmp_path):
    texts = ["see you at lunch 1", "win a free prize now 2", "hello, see you", "win win win"]
    upload = tmp_path / "messages.csv"
    with upload.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        writer.writerows([(f"m{i}", text) for i, text in enumerate(texts)])
    page.set_input_files("#file-input", str(upload))
    rows = _wait_rows(page, len(texts))
    assert [row[1] for row in rows] == texts
    assert "messages.csv" in page.inner_text("#results-summary")

    expected = classifier.classify(texts)
    first = classifier.classes[0]
    probability = {text: p.probabilities[first] for text, p in zip(texts, expected, strict=True)}
    page.click(f"th[data-key='p:{first}'] button")  # numbers sort high to low first
    by_first = [row[1] for row in _rows(page)]
    assert by_first == sorted(texts, key=lambda t: -probability[t])
    assert page.get_attribute(f"th[data-key='p:{first}']", "aria-sort") == "descending"
    page.click(f"th[data-key='p:{first}'] button")
    assert [row[1] for row in _rows(page)] == by_first[::-1]
    page.click("th[data-key='text'] button")
    assert [row[1] for row in _rows(page)] == sorted(texts)

    with page.expect_download() as download_info:
        page.click("#download-button")
    download = download_info.value
    assert download.suggested_filename == "messages-predictions.csv"
    content = Path(download.path()).read_text(encoding="utf-8")
    table = list(csv.reader(io.StringIO(content)))
    probabilities = [f"probability_{name}" for name in classifier.classes]
    assert table[0] == ["id", "text", "predicted_label", "probability", *probabilities]
    assert [row[1] for row in table[1:]] == texts  # file order, whatever the table's sort
    assert [row[0] for row in table[1:]] == [f"m{i}" for i in range(len(texts))]
    for row, prediction in zip(table[1:], expected, strict=True):
        assert row[2] == prediction.label
        assert float(row[3]) == pytest.approx(prediction.probability, abs=1e-5)


def test_an_empty_box_shows_one_error_line(page):
    page.fill("#texts", "   \n  ")
    page.press("#texts", "Control+Enter")
    page.wait_for_selector("#error:not([hidden])")
    assert "nothing to classify" in page.inner_text("#error")
    assert page.is_hidden("#results-card")


def test_too_many_messages_show_the_servers_error_line(page):
    page.fill("#texts", "\n".join(f"message {i}" for i in range(MAX_TEXTS + 1)))
    page.click("#classify-button")
    page.wait_for_selector("#error:not([hidden])")
    error = page.inner_text("#error")
    assert f"{MAX_TEXTS + 1} texts in one request; the limit is {MAX_TEXTS}" in error
    assert "HTTP 422" in error and "\n" not in error


def test_an_unreadable_file_shows_one_error_line_naming_it(page, tmp_path):
    broken = tmp_path / "broken.csv"
    broken.write_text('text\n"this quote never closes\nmore text\n', encoding="utf-8")
    page.set_input_files("#file-input", str(broken))
    page.wait_for_selector("#error:not([hidden])")
    error = page.inner_text("#error")
    assert "broken.csv:2" in error and "\n" not in error
