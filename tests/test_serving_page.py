"""The page's endpoints: POST /explain, POST /classify/file (the CLI's readers), what /info
says about the run, and the page itself (served locally, nothing from elsewhere)."""

from __future__ import annotations

import re

import pytest

for _module in ("fastapi", "prometheus_client", "swagger_ui_bundle", "multipart"):
    pytest.importorskip(_module, reason="serving needs the 'serve' extra")
from fastapi.testclient import TestClient  # noqa: E402

from gpt_classifier.inference import TextClassifier  # noqa: E402
from gpt_classifier.inference.explain import explain  # noqa: E402
from gpt_classifier.inference.file_stream import read_texts  # noqa: E402
from gpt_classifier.serving import create_app  # noqa: E402
from gpt_classifier.serving.app import upload_name  # noqa: E402


@pytest.fixture(scope="module")
def client(served_classifier, saved_run):
    app = create_app(served_classifier, max_texts=4, max_queue=12, run_dir=str(saved_run))
    with TestClient(app) as client:
        yield client


def test_explain_answers_what_the_python_api_computes(client, served_classifier):
    text = "WINNER!! Claim your prize now"
    body = client.post("/explain", json={"text": text}).json()
    expected = explain(served_classifier, text)
    assert body["label"] == expected.label and body["method"] == "occlusion"
    assert body["probability"] == pytest.approx(expected.probability, abs=1e-5)
    assert [t["token"] for t in body["tokens"]] == [t.token for t in expected.tokens]
    assert [t["score"] for t in body["tokens"]] == pytest.approx(
        [t.score for t in expected.tokens], abs=1e-3
    )
    assert body["truncated"] is False
    assert client.app.state.batcher.depth == 0


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"text": "   "}, "text 1 is empty"),
        ({"text": " ".join(["word"] * 40), "truncate": False}, "text 1 has 40 tokens"),
        ({"texts": ["a"]}, "texts: Extra inputs are not permitted"),
    ],
)
def test_explain_errors_are_one_line_422s(client, payload, message):
    response = client.post("/explain", json=payload)
    assert response.status_code == 422
    assert message in response.json()["detail"]


def test_explaining_more_tokens_than_the_queue_holds_is_refused(served_classifier):
    app = create_app(served_classifier, max_texts=4, max_queue=8)
    with TestClient(app) as client:
        response = client.post("/explain", json={"text": " ".join(["word"] * 40)})
    assert response.status_code == 422
    assert "explaining it takes 13 inputs and the queue holds 8" in response.json()["detail"]


def test_explain_gets_429_when_the_queue_is_full(client):
    batcher = client.app.state.batcher
    batcher.reserve(10)
    try:
        response = client.post("/explain", json={"text": "see you at 5?"})
        assert response.status_code == 429 and response.headers["Retry-After"] == "1"
    finally:
        batcher.release(10)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("texts.csv", b'id,message\n1,hello there\n2,"WIN a prize, now"\n'),
        ("texts.tsv", b"message\tid\nhello there\t1\nWIN a prize now\t2\n"),
        ("texts.jsonl", b'{"text": "hello there", "id": 1}\n{"text": "WIN now"}\n'),
        ("texts.txt", b"hello there\r\nWIN a prize now\r\n\r\nok\n"),
    ],
)
def test_uploaded_files_are_read_as_classify_file_reads_them(
    client, served_classifier, tmp_path, name, content
):
    path = tmp_path / name
    path.write_bytes(content)
    rows, texts = read_texts(path)
    response = client.post("/classify/file", files={"file": (name, content, "text/plain")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["filename"] == name and body["texts"] == texts and body["rows"] == rows
    expected = served_classifier.classify(texts)
    assert [p["label"] for p in body["predictions"]] == [p.label for p in expected]
    for got, want in zip(body["predictions"], expected, strict=True):
        assert got["probability"] == pytest.approx(want.probability, abs=1e-6)


def test_upload_options_pick_the_column_and_the_format(client):
    content = b"a,b\nfirst,hello there\nsecond,WIN now\n"
    files = {"file": ("data.csv", content)}
    body = client.post("/classify/file", files=files, data={"text_column": "b"}).json()
    assert body["texts"] == ["hello there", "WIN now"]
    body = client.post("/classify/file", files=files, data={"format": "lines"}).json()
    assert body["texts"] == ["a,b", "first,hello there", "second,WIN now"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.csv", b'text\n"never closed\nmore\n', "bad.csv:2"),
        ("empty.csv", b"text\n", "empty.csv: no texts in the file"),
        ("latin.txt", "caf\xe9\n".encode("latin-1"), "latin.txt"),
        ("data.csv", b"id,text\n1,\n", "data.csv:2: empty text"),
        ("data.xlsx", b"PK\x03\x04", "cannot tell the format from the suffix '.xlsx'"),
        ("five.txt", b"a\nb\nc\nd\ne\n", "more than 4 texts in five.txt; the limit is 4"),
        # reading stops at the fifth row: the broken sixth is never reached
        ("six.jsonl", b'{"text": "a"}\n' * 5 + b"{broken\n", "more than 4 texts in six.jsonl"),
    ],
)
def test_unreadable_uploads_get_one_line_naming_the_file(client, name, content, message):
    response = client.post("/classify/file", files={"file": (name, content)})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert message in detail and "\n" not in detail
    assert "gpt-classifier-upload" not in detail  # the server's temporary folder stays private


def _dictionary_parquet(rows: int, text: str, dictionary: bool = True) -> bytes:
    """``rows`` rows of the one ``text``: stored once plus an index per row (else plainly, the
    compression making it small)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    indices = pa.array([0] * rows, pa.int32())
    column = pa.DictionaryArray.from_arrays(indices, pa.array([text]))
    table = pa.table({"text": column if dictionary else column.cast(pa.string())})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, use_dictionary=dictionary, compression="zstd")
    return sink.getvalue().to_pybytes()


@pytest.mark.parametrize(
    ("rows", "text", "dictionary", "message"),
    [
        (200_000, "x" * 1000, True, "200000 texts in bomb.parquet; the limit is 4"),
        # 4 MB of text: over the 1 MiB a plain upload of the same texts may take; counted from
        # the dictionary, then from the footer's uncompressed size
        (4, "x" * 1_000_000, True, "bomb.parquet decodes to 4000000 bytes, over the 1048576"),
        (4, "x" * 1_000_000, False, "bomb.parquet decodes to 4000"),
    ],
)
def test_a_parquet_bomb_is_refused_before_its_texts_are_decoded(
    client, monkeypatch, rows, text, dictionary, message
):
    pytest.importorskip("pyarrow")
    from gpt_classifier.data import readers

    bomb = _dictionary_parquet(rows, text, dictionary)
    assert len(bomb) < 300_000  # the upload itself is well under --max-request-bytes

    def never(*_args):
        raise AssertionError("the Parquet file was decoded")

    monkeypatch.setattr(readers, "parquet_rows", never)
    if not dictionary:  # refused from the footer: not even read as dictionaries
        import pyarrow.parquet as pq

        monkeypatch.setattr(pq, "read_table", never)
    response = client.post("/classify/file", files={"file": ("bomb.parquet", bomb)})
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]


def test_a_parquet_upload_within_the_limits_is_read(client):
    pytest.importorskip("pyarrow")
    response = client.post(
        "/classify/file", files={"file": ("ok.parquet", _dictionary_parquet(3, "see you"))}
    )
    assert response.status_code == 200, response.text
    assert response.json()["texts"] == ["see you"] * 3


def test_a_column_that_is_not_there_is_named(client):
    response = client.post(
        "/classify/file", files={"file": ("t.csv", b"text\nhi\n")}, data={"text_column": "nope"}
    )
    assert response.status_code == 422
    assert response.json()["detail"] == "t.csv: no column 'nope'; columns: 'text'"


def test_a_request_without_a_file_or_with_a_broken_form_is_a_422(client):
    response = client.post("/classify/file", data={"text_column": "text"})
    assert response.status_code == 422 and "file" in response.json()["detail"]
    response = client.post(
        "/classify/file",
        content=b"--xyz\r\nbroken",
        headers={"Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert response.status_code == 422


def test_upload_names_keep_only_a_plain_base_name():
    assert upload_name("texts.csv") == "texts.csv"
    assert upload_name("C:\\Users\\me\\texts.csv") == "texts.csv"
    assert upload_name("../../etc/passwd") == "passwd"
    assert upload_name("-rf .csv") == "upload.csv"
    assert upload_name(None) == "upload"
    assert upload_name("SMSSpamCollection") == "SMSSpamCollection"  # read as the sms format


def test_info_describes_a_trained_run(micro_run, tokenizer_dir):
    clf = TextClassifier.from_run(micro_run, device="cpu", tokenizer_dir=tokenizer_dir)
    with TestClient(create_app(clf, run_dir=str(micro_run))) as client:
        info = client.get("/info").json()
    assert info["trainable"] == "all" and info["init"] == "random"
    assert info["padding"] == "batch" and info["pooling"] == "last-real"
    assert 0 <= info["test"]["accuracy"] <= 1 and 0 <= info["test"]["macro_f1"] <= 1
    assert info["test"]["examples"] > 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", info["trained_at"])


def test_info_of_a_run_without_metrics_says_so(client):
    info = client.get("/info").json()
    assert info["test"] is None and info["trainable"] is None
    assert info["trained_at"] is not None  # saved runs have their completion marker


def test_the_page_and_its_files_come_from_this_server_only(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", page.text)
    assert {"page/style.css", "page/app.js"} <= set(urls)
    for url in urls:
        assert "://" not in url and not url.startswith("/"), url  # relative: works behind a prefix
        assert client.get("/" + url).status_code == 200, url
    for asset in ("page/app.js", "page/style.css"):
        assert "://" not in client.get("/" + asset).text


def test_the_page_forbids_framing_sniffing_and_inline_code(client):
    page = client.get("/")
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "unsafe" not in policy
    assert "frame-ancestors 'none'" in policy
    # nothing inline for the policy to refuse: no <script>/<style> body, no on* or style=
    assert not re.search(r"<script[^>]*>\s*[^<\s]", page.text)
    assert not re.search(r"<style|\son\w+\s*=|\sstyle\s*=", page.text, re.IGNORECASE)
    assert client.get("/docs").headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize("path", ["/classify", "/classify/file", "/explain"])
def test_a_full_queue_refuses_at_the_door_without_reading_the_body(client, path):
    batcher = client.app.state.batcher
    batcher.reserve(batcher.max_queue)
    try:
        # Not even valid JSON: the body is never parsed, the answer is the 429.
        response = client.post(path, content=b"{", headers={"Content-Type": "application/json"})
    finally:
        batcher.release(batcher.max_queue)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    assert "the queue holds 12" in response.json()["detail"]
    assert client.post(path, content=b"{").status_code == 422  # room again: parsed
