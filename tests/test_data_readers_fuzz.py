"""Property-based tests of the readers (Hypothesis).

1. Whatever the bytes (random, UTF-8 with or without a byte-order mark, Latin-1, near-CSV/TSV/
   JSON text full of quotes, separators and line-break look-alikes), reading raises nothing but
   ``GPTClassifierError``: a one-line message, never a traceback.
2. Files written by this program (``write_split_file``) or by a plain JSON-lines or CSV writer
   from random records read back as exactly those records, in order: no row lost or invented.

Every property runs ``EXAMPLES`` examples (deadline off: the first call of a reader is slow).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt_classifier.data import (
    LABEL_COLUMNS,
    TEXT_COLUMNS,
    Record,
    read_records,
    read_unlabelled,
    write_split_file,
)
from gpt_classifier.errors import GPTClassifierError

EXAMPLES = 150
fuzz = settings(max_examples=EXAMPLES, deadline=None)

# Pieces that stress quoting, separators and what str.splitlines() would take for line breaks.
PIECES = [
    '"',
    '""',
    ",",
    "\t",
    "\n",
    "\r",
    "\r\n",
    "\u2028",
    "\u2029",
    "\x85",
    "\x0c",
    "\x0b",
    "\x1c",
    "\x00",
    "\ufeff",
    " ",
    "{",
    "}",
    ":",
    "[",
    "]",
    "\\",
    "\\u",
    "\\ud800",
    "label",
    "text",
    "Label,Text",
    "label\ttext",
    '{"text": "',
    '", "label": ',
    "ham",
    "spam",
    "0",
    "1",
    "é",
    "😀",
]
tricky_text = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=4)), max_size=30).map(
    "".join
)

# JSON values, strings with unpaired surrogates included (JSON can spell "\ud800").
json_strings = st.text(
    st.one_of(st.characters(), st.characters(categories=["Cs"])), min_size=1, max_size=8
)
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(st.characters(), max_size=8),
        st.text(st.characters(categories=["Cs"]), min_size=1, max_size=2),
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)
json_lines = (
    st.lists(
        st.one_of(
            # Mostly objects with the right keys, so that reading gets past the first line.
            *[
                st.fixed_dictionaries(
                    {
                        "text": st.one_of(json_strings, json_strings, json_values),
                        "label": st.one_of(json_strings, st.integers(), json_values),
                    }
                )
            ]
            * 4,
            st.dictionaries(st.sampled_from(["text", "label", "id", "Text"]), json_values),
            json_values,
        ),
        min_size=1,
        max_size=6,
    )
    .flatmap(
        lambda objects: st.tuples(
            st.just(objects),
            # ensure_ascii spells a lone surrogate "\ud800"; without it, it is invalid UTF-8.
            st.sampled_from([True, True, False]),
            # Mostly real line breaks (so that objects get read), at times one str.splitlines()
            # would take for one (so that two objects share a line).
            st.lists(
                st.sampled_from(["\n"] * 6 + ["\r\n", "\r", "\n\n", "\u2028", "\x85"]),
                min_size=6,
            ),
        )
    )
    .map(
        lambda p: "".join(
            json.dumps(o, ensure_ascii=p[1]) + p[2][i] for i, o in enumerate(p[0])
        ).encode("utf-8", errors="surrogatepass")
    )
)


def _csv_text(rows: list[list[str]]) -> str:
    handle = io.StringIO()
    csv.writer(handle, lineterminator="\n").writerows([["label", "text"], *rows])
    return handle.getvalue()


# Well-formed CSV with one quote inserted or deleted somewhere: runaway quotes and their kin.
broken_csv = st.tuples(
    st.lists(st.lists(tricky_text, min_size=2, max_size=2), min_size=1, max_size=8).map(_csv_text),
    st.integers(min_value=0),
    st.booleans(),
).map(
    lambda p: (
        p[0][: p[1] % (len(p[0]) + 1)] + '"' + p[0][p[1] % (len(p[0]) + 1) :]
        if p[2]
        else p[0].replace('"', "", 1)
    ).encode("utf-8", errors="surrogatepass")
)

file_bytes = st.one_of(
    st.binary(max_size=200),
    tricky_text.map(lambda t: t.encode("utf-8", errors="surrogatepass")),
    tricky_text.map(lambda t: ("\ufeff" + t).encode("utf-8", errors="surrogatepass")),
    tricky_text.map(lambda t: t.encode("latin-1", errors="replace")),
    st.tuples(
        st.sampled_from(["label,text\n", "text,label\r\n", "label\ttext\n", "id,text\n", ""]),
        tricky_text,
    ).map(lambda p: (p[0] + p[1]).encode("utf-8", errors="surrogatepass")),
)

NAMES = ["d.csv", "d.tsv", "d.txt", "d", "d.jsonl", "SMSSpamCollection", "d.parquet"]
LABELLED_FORMATS = [None, "csv", "tsv", "sms", "jsonl", "parquet"]
TEXT_FORMATS = [*LABELLED_FORMATS, "lines"]

# Readable texts: any characters but unpaired surrogates, not blank (the reader rejects those).
characters = st.one_of(
    st.sampled_from([p for p in PIECES if len(p) == 1]),
    st.characters(exclude_categories=("Cs",)),
)
texts = st.text(characters, min_size=1, max_size=40).filter(lambda t: t.strip())
# Labels are stripped by the reader, so the written ones are already stripped.
labels = st.text(characters, min_size=1, max_size=6).map(str.strip).filter(bool)
records = st.lists(st.builds(Record, text=texts, label=labels), min_size=1, max_size=15)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(autouse=True, scope="module")
def _quiet_warnings():
    # Fuzzed CSVs trip the runaway-quote warning often; its text is tested elsewhere.
    logger = logging.getLogger("gpt_classifier.data")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


def _only_our_error(call):
    """The call's result, or None when it raised GPTClassifierError (anything else fails)."""
    try:
        return call()
    except GPTClassifierError as exc:
        assert str(exc) and "\n" not in str(exc), repr(str(exc))
        return None


def _check_both_readers(path: Path, fmt: str | None, lenient: bool) -> list[Record] | None:
    got = _only_our_error(
        lambda: read_records(path, fmt if fmt != "lines" else None, lenient=lenient)
    )
    rows = _only_our_error(lambda: read_unlabelled(path, fmt, lenient=lenient))
    for record in got or []:
        assert record.text.strip() and record.label == record.label.strip() and record.label
        record.text.encode("utf-8")  # writable to a split file
        record.label.encode("utf-8")
    for row in rows or []:
        assert row.text.strip()
        row.text.encode("utf-8")
    if got is not None and rows is not None and fmt in ("csv", "jsonl"):
        # One parser for both readers: where both read the file they see the same texts.
        assert [r.text for r in rows] == [r.text for r in got]
    return got


@fuzz
@given(
    data=file_bytes,
    name=st.sampled_from(NAMES),
    fmt=st.sampled_from(TEXT_FORMATS),
    lenient=st.booleans(),
)
def test_any_bytes_give_records_or_a_one_line_error(folder, data, name, fmt, lenient):
    path = folder / name
    path.write_bytes(data)
    _check_both_readers(path, fmt, lenient)


@fuzz
@given(
    data=json_lines,
    objects=st.lists(
        st.fixed_dictionaries(
            {"text": json_strings, "label": st.one_of(json_strings, st.integers(-9, 9))}
        ),
        min_size=1,
        max_size=5,
    ),
)
def test_any_json_lines_give_records_or_a_one_line_error(folder, data, objects):
    path = folder / "fuzz.jsonl"
    path.write_bytes(data)
    _check_both_readers(path, "jsonl", False)
    # Plain objects with any strings (lone surrogates too): those records, or an error.
    path.write_text("".join(json.dumps(o) + "\n" for o in objects), encoding="utf-8")
    got = _check_both_readers(path, "jsonl", False)
    objects = [json.loads(json.dumps(o)) for o in objects]  # "\ud800\udc00" reads as one char
    if got is not None:
        assert [(r.text, r.label) for r in got] == [
            (o["text"], str(o["label"]).strip()) for o in objects
        ]


@fuzz
@given(data=broken_csv, lenient=st.booleans())
def test_a_stray_quote_gives_records_or_a_one_line_error(folder, data, lenient):
    path = folder / "fuzz.csv"
    path.write_bytes(data)
    _check_both_readers(path, "csv", lenient)


@fuzz
@given(records=records)
def test_split_files_read_back_exactly(folder, records):
    path = write_split_file(records, folder / "train.csv")
    back = read_records(path)
    assert back == records
    assert [(r.text, r.label) for r in back] == [(r.text, r.label) for r in records]
    # The same file as texts to classify: the same texts, the labels as a column.
    rows = read_unlabelled(path, text_column="Text")
    assert [(r.text, r.fields["Label"]) for r in rows] == [(r.text, r.label) for r in records]


@fuzz
@given(records=records, ascii_only=st.booleans(), newline=st.sampled_from(["\n", "\r\n"]))
def test_json_lines_read_back_exactly(folder, records, ascii_only, newline):
    path = folder / "data.jsonl"
    lines = [
        json.dumps({"text": r.text, "label": r.label}, ensure_ascii=ascii_only) for r in records
    ]
    path.write_text(newline.join(lines) + newline, encoding="utf-8", newline="")
    assert read_records(path) == records
    assert [r.text for r in read_unlabelled(path)] == [r.text for r in records]


@fuzz
@given(records=records, terminator=st.sampled_from(["\r\n", "\n"]), bom=st.booleans())
def test_csv_from_another_writer_reads_back_exactly(folder, records, terminator, bom):
    # csv's defaults (what pandas and spreadsheets write): "\r\n" and minimal quoting. With "\n"
    # a bare "\r" would not be quoted; such files are not well-formed CSV, so keep them out.
    if terminator == "\n":
        records = [r for r in records if "\r" not in r.text + r.label] or [Record("x", "y")]
    path = folder / "other.csv"
    with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator=terminator)
        writer.writerow(["id", "text", "label"])
        writer.writerows([i, r.text, r.label] for i, r in enumerate(records))
    assert read_records(path) == records
    rows = read_unlabelled(path)
    assert [(r.fields["id"], r.text) for r in rows] == [
        (str(i), r.text) for i, r in enumerate(records)
    ]


@fuzz
@given(
    lines=st.lists(
        st.text(characters, min_size=1, max_size=30).filter(
            lambda t: t.strip() and "\n" not in t and "\r" not in t
        ),
        min_size=1,
        max_size=15,
    ),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
)
def test_plain_text_is_one_text_per_line(folder, lines, newline):
    # A first line naming a column would make the file a table: keep to texts that do not.
    path = folder / "texts.txt"
    path.write_text(newline.join(lines) + newline, encoding="utf-8", newline="")
    first = {f.strip().lower() for f in lines[0].split("\t")}
    if first & {*TEXT_COLUMNS, *LABEL_COLUMNS}:
        return
    rows = read_unlabelled(path)
    assert [r.text for r in rows] == lines
    assert [r.line for r in rows] == list(range(1, len(lines) + 1))


def _rows_or_error(read):
    try:
        return [(row.text, row.fields, row.line) for row in read()]
    except GPTClassifierError as exc:
        return str(exc)


@fuzz
@given(
    data=st.one_of(file_bytes, json_lines, broken_csv),
    name=st.sampled_from([n for n in NAMES if n != "d.parquet"]),
    fmt=st.sampled_from([f for f in TEXT_FORMATS if f != "parquet"]),
    lenient=st.booleans(),
)
def test_the_streaming_reader_reads_as_the_whole_file_reader(folder, data, name, fmt, lenient):
    """``classify --file`` streams its input (data/readers.py): the same rows, or the same
    error message, as ``read_unlabelled`` reading the file at once."""
    from gpt_classifier.data.readers import iter_text_rows, scan_text_file

    path = folder / name
    path.write_bytes(data)
    whole = _rows_or_error(lambda: read_unlabelled(path, fmt, lenient=lenient))
    streamed = _rows_or_error(
        lambda: list(iter_text_rows(scan_text_file(path, fmt, lenient=lenient)))
    )
    assert streamed == whole
