"""Fuzzing POST /classify: whatever the body, the answer is 200, 413, 422 or 429 with a JSON
object, never a 500 (wrong types, missing keys, huge or empty strings, unicode, nesting, bytes)."""

from __future__ import annotations

import json

import pytest

for _module in ("fastapi", "prometheus_client", "swagger_ui_bundle"):
    pytest.importorskip(_module, reason="serving needs the 'serve' extra")
from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from gpt_classifier.inference import TextClassifier  # noqa: E402
from gpt_classifier.serving import create_app  # noqa: E402

MAX_BYTES = 4096
ANSWERS = {200, 413, 422, 429}

# Unicode beyond the default alphabet too: lone surrogates (legal in JSON escapes), controls.
texts = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=3),
    st.just(""),
    st.just("   \n\t"),
    st.just("<|endoftext|>"),
    st.integers(1, 900).map(lambda n: "spam " * n),  # past the model's length, or the body's
)
good_texts = st.text(min_size=1, max_size=40).filter(str.strip)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), texts)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)
bodies = st.one_of(
    # Mostly right or almost-right requests, where the interesting bugs hide.
    st.fixed_dictionaries(
        {"texts": st.lists(good_texts, min_size=1, max_size=8)},
        optional={"truncate": st.booleans()},
    ),
    st.fixed_dictionaries(
        {"texts": st.lists(texts, max_size=10)},
        optional={"truncate": json_values, "extra": json_values},
    ),
    st.fixed_dictionaries({"texts": json_values}),
    st.dictionaries(st.sampled_from(["texts", "truncate", "text", ""]), json_values, max_size=3),
    json_values,
)


@pytest.fixture(scope="module")
def client(saved_run, tokenizer_dir):
    classifier = TextClassifier.from_run(saved_run, device="cpu", tokenizer_dir=tokenizer_dir)
    app = create_app(
        classifier, max_texts=8, max_queue=8, max_request_bytes=MAX_BYTES, batch_wait_ms=0
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def _check(response) -> None:
    assert response.status_code in ANSWERS, (response.status_code, response.text[:300])
    event(f"status {response.status_code}")  # pytest --hypothesis-show-statistics shows the mix
    body = response.json()
    assert isinstance(body, dict)
    if response.status_code == 200:
        assert len(body["predictions"]) >= 1
    else:
        assert isinstance(body["detail"], str) and "\n" not in body["detail"]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(body=bodies, ascii_only=st.booleans())
def test_json_bodies_never_get_a_500(client, body, ascii_only):
    content = json.dumps(body, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    _check(client.post("/classify", content=content, headers={"Content-Type": "application/json"}))


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    content=st.one_of(st.binary(max_size=200), st.binary(min_size=MAX_BYTES + 1, max_size=5000)),
    content_type=st.sampled_from(["application/json", "text/plain", None]),
)
def test_arbitrary_bytes_never_get_a_500(client, content, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    _check(client.post("/classify", content=content, headers=headers))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    body=st.one_of(
        st.fixed_dictionaries({"text": texts}, optional={"truncate": json_values}),
        st.dictionaries(st.sampled_from(["text", "texts", "truncate"]), json_values, max_size=3),
        json_values,
    )
)
def test_explain_bodies_never_get_a_500(client, body):
    content = json.dumps(body).encode("utf-8", "surrogatepass")
    response = client.post(
        "/explain", content=content, headers={"Content-Type": "application/json"}
    )
    # A long text is cut to the model's 12 tokens: 13 inputs, more than the queue's 8 (422).
    assert response.status_code in ANSWERS, (response.status_code, response.text[:300])
    if response.status_code == 200:
        assert len(response.json()["tokens"]) >= 1
    else:
        assert "\n" not in response.json()["detail"]


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    content=st.one_of(
        st.binary(max_size=300),
        st.lists(st.text(max_size=20), max_size=12).map(lambda ls: "\n".join(ls).encode()),
        st.lists(good_texts, min_size=1, max_size=10).map(
            lambda ls: ("text\n" + "\n".join(json.dumps(t) for t in ls)).encode()
        ),
    ),
    name=st.sampled_from(
        ["a.csv", "a.tsv", "a.txt", "a.jsonl", "a.parquet", "a.xlsx", "noext", "../../x.csv", ""]
    ),
    text_column=st.sampled_from([None, "text", "nope", ""]),
    fmt=st.sampled_from([None, "csv", "lines", "bogus"]),
)
def test_uploaded_files_never_get_a_500(client, content, name, text_column, fmt):
    form = {k: v for k, v in {"text_column": text_column, "format": fmt}.items() if v is not None}
    response = client.post("/classify/file", files={"file": (name, content)}, data=form)
    _check(response)
