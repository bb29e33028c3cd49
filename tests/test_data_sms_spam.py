"""Built-in sms-spam: download from a local HTTP server, checksum, cache, real counts."""

from __future__ import annotations

import csv
import functools
import hashlib
import http.server
import io
import threading
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from gpt_classifier.data import SMS_SPAM_SHA256, read_records, sms_spam_path
from gpt_classifier.errors import GPTClassifierError
from gpt_classifier.fileio import cache_dir

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FIXTURE_SHA256 = "2c9216731d4a9d3b8a240638c7f3f1e5593e75d5793ec739c102e2f01271b7c3"
SMALL = b"ham\tHello there\nspam\tWIN a prize now\nham\tSee you at 5\n"
SMALL_SHA = hashlib.sha256(SMALL).hexdigest()


def _zip(member: str, content: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, content)
        archive.writestr("readme", b"the collection")
    return buffer.getvalue()


@pytest.fixture
def server():
    """An HTTP server on 127.0.0.1 serving ``routes`` (path -> bytes); anything else is 404."""
    routes: dict[str, bytes] = {}
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            hits.append(self.path)
            body = routes.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield base, routes, hits
    httpd.shutdown()
    httpd.server_close()


def test_downloads_extracts_verifies_and_caches(server, tmp_path):
    base, routes, hits = server
    routes["/sms.zip"] = _zip("SMSSpamCollection", SMALL)
    path = sms_spam_path(
        url=f"{base}/sms.zip", cache_dir=tmp_path, sha256=SMALL_SHA, progress=False
    )
    assert path == tmp_path / "sms_spam_collection" / "SMSSpamCollection"
    assert path.read_bytes() == SMALL
    assert [p.name for p in path.parent.iterdir()] == ["SMSSpamCollection"]  # no temp files left
    # Cached: a second call does not download.
    again = sms_spam_path(
        url=f"{base}/sms.zip", cache_dir=tmp_path, sha256=SMALL_SHA, progress=False
    )
    assert again == path and hits == ["/sms.zip"]


def test_real_zip_from_local_server(server, tmp_path, sms_spam_file, sms_spam):
    """The UCI zip's layout with the real file (or the fixture, checked against its own hash)."""
    base, routes, _ = server
    routes["/228/sms+spam+collection.zip"] = _zip("SMSSpamCollection", sms_spam_file.read_bytes())
    expected = SMS_SPAM_SHA256 if sms_spam.full else FIXTURE_SHA256
    path = sms_spam_path(
        url=f"{base}/228/sms+spam+collection.zip",
        cache_dir=tmp_path,
        progress=False,
        **({} if sms_spam.full else {"sha256": FIXTURE_SHA256}),
    )
    assert path.read_bytes() == sms_spam_file.read_bytes()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == expected


def test_bad_checksum_is_an_error_and_nothing_is_cached(server, tmp_path):
    base, routes, _ = server
    routes["/sms.zip"] = _zip("SMSSpamCollection", SMALL + b"ham\ttampered\n")
    with pytest.raises(GPTClassifierError, match="sha256") as info:
        sms_spam_path(url=f"{base}/sms.zip", cache_dir=tmp_path, sha256=SMALL_SHA, progress=False)
    assert "--data-file" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "sms_spam_collection" / "SMSSpamCollection").exists()


def test_corrupt_cache_is_downloaded_again(server, tmp_path):
    base, routes, hits = server
    routes["/sms.zip"] = _zip("SMSSpamCollection", SMALL)
    cached = tmp_path / "sms_spam_collection" / "SMSSpamCollection"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"truncated")
    sms_spam_path(url=f"{base}/sms.zip", cache_dir=tmp_path, sha256=SMALL_SHA, progress=False)
    assert cached.read_bytes() == SMALL and hits == ["/sms.zip"]


def test_http_error_tells_to_pass_data_file(server, tmp_path):
    base, _, _ = server
    with pytest.raises(GPTClassifierError, match=r"HTTP 404.*--data-file"):
        sms_spam_path(url=f"{base}/missing.zip", cache_dir=tmp_path, progress=False)


def test_unreachable_server_tells_to_pass_data_file(tmp_path):
    import socket

    with socket.socket() as sock:  # a port with nobody listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(GPTClassifierError, match=r"cannot download .*--data-file"):
        sms_spam_path(url=f"http://127.0.0.1:{port}/x.zip", cache_dir=tmp_path, progress=False)


def test_not_a_zip_and_missing_member(server, tmp_path):
    base, routes, _ = server
    routes["/page.zip"] = b"<html>maintenance</html>"
    routes["/other.zip"] = _zip("something-else.txt", SMALL)
    with pytest.raises(GPTClassifierError, match="not a zip"):
        sms_spam_path(url=f"{base}/page.zip", cache_dir=tmp_path, progress=False)
    with pytest.raises(GPTClassifierError, match="holds no SMSSpamCollection"):
        sms_spam_path(url=f"{base}/other.zip", cache_dir=tmp_path, progress=False)


def test_prepare_dataset_uses_the_cache(monkeypatch, tmp_path, sms_spam_file, sms_spam):
    from gpt_classifier.data import prepare, prepare_dataset

    cached = tmp_path / "sms_spam_collection" / "SMSSpamCollection"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(sms_spam_file.read_bytes())
    monkeypatch.setenv("GPT_CLASSIFIER_CACHE", str(tmp_path))
    if not sms_spam.full:  # the fixture is the cached file: it has its own checksum
        monkeypatch.setattr(
            prepare, "sms_spam_path", functools.partial(sms_spam_path, sha256=FIXTURE_SHA256)
        )
    prepared = prepare_dataset()  # no file: the built-in dataset, found in the cache
    assert prepared.summary.raw == sms_spam.raw
    assert "sms-spam" in prepared.summary.source and str(cached) in prepared.summary.source


def test_cache_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("GPT_CLASSIFIER_CACHE", str(tmp_path / "explicit"))
    assert cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("GPT_CLASSIFIER_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "gpt-classifier"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "gpt-classifier"
    assert cache_dir("prefix-cache") == cache_dir() / "prefix-cache"


def test_real_file_all_rows(sms_spam_file: Path, sms_spam):
    records = read_records(sms_spam_file)  # format sms from the file name
    assert len(records) == sms_spam.rows
    assert Counter(r.label for r in records) == sms_spam.raw
    if sms_spam.full:
        assert len(records) == 5574 and sms_spam.raw == {"ham": 4827, "spam": 747}
    # Texts with unbalanced double quotes stay single rows, verbatim.
    assert any(r.text.count('"') % 2 for r in records)
    assert records[0].text.startswith("Go until jurong point") and records[0].line == 1
    # ... where a CSV reader with default quoting merges lines at a runaway quote.
    with sms_spam_file.open(newline="", encoding="utf-8") as handle:
        assert len(list(csv.reader(handle, delimiter="\t"))) == sms_spam.csv_rows < len(records)


def test_the_fixture_is_what_its_readme_says():
    """tests/fixtures/README.md gives each file's sha256; the tokenizer's equal GPT-2's."""
    from gpt_classifier.tokenizer import TOKENIZER_FILES

    readme = (FIXTURES / "README.md").read_text(encoding="utf-8")
    files = {"sms_spam_collection/SMSSpamCollection": FIXTURE_SHA256}
    files |= {f"gpt2-tokenizer/{name}": digest for name, digest in TOKENIZER_FILES.items()}
    for name, digest in files.items():
        assert hashlib.sha256((FIXTURES / name).read_bytes()).hexdigest() == digest, name
        assert f"`{name}`" in readme and digest in readme, name
