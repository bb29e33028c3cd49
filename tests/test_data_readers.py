"""Reading CSV, TSV, SMS-style and JSON-lines files; column choice; errors naming file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpt_classifier.data import Record, detect_format, read_records
from gpt_classifier.errors import GPTClassifierError

EXPECTED = [
    Record('He said "hi', "ham"),
    Record("WIN, now! call 0800", "spam"),
    Record("  spaces kept  ", "ham"),
]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _error(path: Path, match: str, **kwargs) -> str:
    with pytest.raises(GPTClassifierError, match=match) as info:
        read_records(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_sms_format_headerless_tab_split_on_first_tab(tmp_path):
    path = _write(
        tmp_path / "SMSSpamCollection",
        'ham\tHe said "hi\nspam\tWIN, now! call 0800\r\nham\t  spaces kept  \n\n',
    )
    assert detect_format(path) == "sms"
    records = read_records(path)
    assert records == EXPECTED
    assert [r.line for r in records] == [1, 2, 3]
    tabbed = _write(tmp_path / "t.txt", "spam\tc\nham\ta\tb\n")
    assert read_records(tabbed)[1].text == "a\tb"  # headerless two-field guess: sms


def test_tsv_with_header_and_auto_columns(tmp_path):
    path = _write(
        tmp_path / "data.tsv",
        'id\tSentence\tCategory\n1\tHe said "hi\tham\n2\tWIN, now! call 0800\tspam\n'
        "3\t  spaces kept  \tham\n",
    )
    assert detect_format(path) == "tsv"
    assert read_records(path) == EXPECTED
    assert read_records(path)[1].line == 3


def test_csv_with_quotes_newlines_and_bom(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text(
        '\ufefflabel,text\nham,"He said ""hi"\nspam,"WIN, now! call 0800"\n'
        'ham,"  spaces kept  "\nspam,"two\nlines"\nham,after\n',
        encoding="utf-8",
    )
    records = read_records(path)
    assert records[:3] == EXPECTED
    assert records[3] == Record("two\nlines", "spam")
    assert [r.line for r in records] == [2, 3, 4, 5, 7]  # a record starts on its first line


def test_book_style_csv_integer_labels(tmp_path):
    path = _write(tmp_path / "train.csv", 'Label,Text\n0,"ok, see you"\n1,WIN NOW\n')
    assert read_records(path) == [Record("ok, see you", "0"), Record("WIN NOW", "1")]


def test_jsonl_with_named_columns_and_integer_labels(tmp_path):
    rows = [
        {"review": 'He said "hi', "stars": 1, "extra": None},
        {"review": "WIN, now! call 0800", "stars": 5},
        {"review": "  spaces kept  ", "stars": 3.0},
    ]
    path = _write(tmp_path / "r.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    records = read_records(path, text_column="review", label_column="stars")
    assert [(r.text, r.label) for r in records] == [
        (e.text, s) for e, s in zip(EXPECTED, "153", strict=True)
    ]
    auto = read_records(_write(tmp_path / "a.ndjson", '{"text": "x", "label": "pos"}\n'))
    assert auto == [Record("x", "pos")]


def test_explicit_format_overrides_suffix(tmp_path):
    path = _write(tmp_path / "data.dat", "text,label\nhello,a\n")
    _error(path, r"data\.dat: cannot tell the format.*--format")
    assert read_records(path, fmt="csv") == [Record("hello", "a")]
    sms = _write(tmp_path / "x.tsv", "label\ttext\nham\thello\n")
    assert read_records(sms, fmt="sms")[0] == Record("text", "label")  # header read as data


def test_parquet_when_available(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["a b", "c"], "label": [0, 1]}), path)
    assert read_records(path) == [Record("a b", "0"), Record("c", "1")]


def test_parquet_without_pyarrow_is_a_clear_error(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith(("pyarrow", "pandas")):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    path = tmp_path / "d.parquet"
    path.write_bytes(b"PAR1")
    _error(path, r"d\.parquet: reading Parquet needs pyarrow")


# --- errors -----------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    _error(tmp_path / "nope.csv", r"data file not found: .*nope\.csv")


def test_empty_file_and_header_only(tmp_path):
    _error(_write(tmp_path / "e.csv", ""), r"e\.csv: the file is empty")
    _error(_write(tmp_path / "w.tsv", "\n \n"), r"w\.tsv: the file is empty")
    _error(_write(tmp_path / "h.csv", "label,text\n"), r"h\.csv: no examples")


def test_missing_column_lists_available(tmp_path):
    path = _write(tmp_path / "d.csv", "id,body_text,y_true\n1,hi,a\n")
    message = _error(path, r"d\.csv:1: no text column found")
    assert "'id', 'body_text', 'y_true'" in message and "--text-column" in message
    message = _error(
        path, r"d\.csv:1: no label column 'kind'", text_column="body_text", label_column="kind"
    )
    assert "available columns: 'id', 'body_text', 'y_true'" in message
    assert read_records(path, text_column="body_text", label_column="Y_TRUE") == [Record("hi", "a")]
    jsonl = _write(tmp_path / "d.jsonl", '{"text": "a", "label": 1}\n{"text": "b"}\n')
    _error(jsonl, r"d\.jsonl:2: no 'label' key; available keys: 'text'")


def test_empty_text_and_missing_label(tmp_path):
    _error(_write(tmp_path / "a.csv", "label,text\nham,ok\nspam,\n"), r"a\.csv:3: empty text")
    _error(_write(tmp_path / "b.csv", "label,text\nham,ok\n ,hello\n"), r"b\.csv:3: missing label")
    _error(_write(tmp_path / "c.txt", "ham\tok\nspam\t   \n"), r"c\.txt:2: empty text")
    _error(_write(tmp_path / "d.txt", "ham\tok\n\tno label\n"), r"d\.txt:2: missing label")
    _error(
        _write(tmp_path / "e.jsonl", '{"text": "a", "label": null}\n'), r"e\.jsonl:1: missing label"
    )
    _error(_write(tmp_path / "f.jsonl", '{"text": "", "label": 1}\n'), r"f\.jsonl:1: empty text")


def test_malformed_rows(tmp_path):
    _error(
        _write(tmp_path / "s.txt", "ham\tok\nno tab here\n"), r"s\.txt:2: expected 'label<TAB>text'"
    )
    _error(
        _write(tmp_path / "t.tsv", "label\ttext\nham\tok\nspam\tone\ttwo\n"),
        r"t\.tsv:3: 3 field\(s\) but the header has 2",
    )
    _error(_write(tmp_path / "c.csv", "label,text\nham\n"), r"c\.csv:2: 1 field\(s\)")
    _error(
        _write(tmp_path / "j.jsonl", '{"text": "a", "label": 1}\n{oops\n'),
        r"j\.jsonl:2: invalid JSON",
    )
    _error(_write(tmp_path / "k.jsonl", '["a", 1]\n'), r"k\.jsonl:1: expected a JSON object")
    _error(_write(tmp_path / "l.jsonl", '{"text": "a", "label": 1.5}\n'), r"l\.jsonl:1: label 1\.5")


def test_undecodable_bytes_name_line_and_offset(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("label,text\nham,fine\nspam,caf\xe9 offer\n".encode("latin-1"))
    message = _error(path, r"latin\.csv:3: not valid UTF-8")
    assert "0xe9" in message and "byte offset 28, column 9" in message


def test_sms_format_rejects_column_names(tmp_path):
    path = _write(tmp_path / "SMSSpamCollection", "ham\thi\n")
    _error(path, "has no named columns", text_column="text")
