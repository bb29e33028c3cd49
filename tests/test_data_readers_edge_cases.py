"""Issue 12 (reliability), the input side: runaway CSV quotes, texts over csv's default field
size limit, line breaks that are not line breaks, and outputs that would overwrite something."""

from __future__ import annotations

import csv
import json
import logging
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from gpt_classifier.cli.main import cli
from gpt_classifier.data import (
    Record,
    prepare_dataset,
    read_records,
    read_splits,
    read_unlabelled,
    write_split_file,
    write_splits,
)
from gpt_classifier.errors import GPTClassifierError
from gpt_classifier.inference.file_stream import read_texts


def _error(call, match: str) -> str:
    with pytest.raises(GPTClassifierError, match=match) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


def _two_hundred_rows(broken_row: int, broken: str) -> str:
    """A Label,Text CSV with 200 rows; data row ``broken_row`` (1-based, line broken_row + 1)
    replaced by ``broken``."""
    lines = ["label,text"]
    lines += [f"{'spam' if i % 4 == 0 else 'ham'},message number {i}" for i in range(1, 201)]
    lines[broken_row] = broken
    return "\n".join(lines) + "\n"


# --- 5: a runaway quote -----------------------------------------------------------------------


def test_an_unbalanced_quote_in_row_150_is_an_error_naming_its_line(tmp_path):
    path = tmp_path / "runaway.csv"
    path.write_text(_two_hundred_rows(150, 'ham,"Hello there, see you'), encoding="utf-8")
    message = _error(lambda: read_records(path), r"runaway\.csv:151: a quoted field starts here")
    assert "150 row(s) read from 200 non-blank line(s)" in message
    assert "swallowing line 152" in message and "--lenient" in message
    # Texts to classify go through the same parser and the same rule.
    _error(lambda: read_unlabelled(path), r"runaway\.csv:151: a quoted field")


def test_lenient_reads_on_with_a_warning_that_gives_the_counts(tmp_path, caplog):
    path = tmp_path / "runaway.csv"
    path.write_text(_two_hundred_rows(150, 'ham,"Hello there'), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="gpt_classifier.data"):
        records = read_records(path, lenient=True)
    assert len(records) == 150 and records[-1].text.startswith("Hello there\nham,message")
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "runaway.csv:151: warning:" in warning
    assert "150 row(s) read from 200 non-blank line(s)" in warning and "--lenient" in warning


def test_a_quote_closed_by_later_text_is_an_error_too(tmp_path):
    # The field's quote closes at the next quote of the file, mid-text: '"hi' in row 160.
    text = _two_hundred_rows(150, 'ham,"Hello there')
    text = text.replace("ham,message number 159\n", 'ham,He said "hi" to me\n')
    path = tmp_path / "closed.csv"
    path.write_text(text, encoding="utf-8")
    _error(lambda: read_records(path), r"closed\.csv:151: a quoted field starts here, runs over 10")


def test_legit_multi_line_fields_still_read(tmp_path, caplog):
    path = tmp_path / "multi.csv"
    path.write_text(
        'label,text\nham,"one\nembedded newline"\nspam,"Dear John,\nsee you, bye\r\nme"\n'
        'ham,"said ""hi""\nthen left"\nspam,last\n',
        encoding="utf-8",
    )
    with caplog.at_level(logging.WARNING, logger="gpt_classifier.data"):
        records = read_records(path)
        texts = read_unlabelled(path)
    assert records == [
        Record("one\nembedded newline", "ham"),
        Record("Dear John,\nsee you, bye\r\nme", "spam"),
        Record('said "hi"\nthen left', "ham"),
        Record("last", "spam"),
    ]
    assert [r.line for r in records] == [2, 4, 7, 9]
    assert [t.text for t in texts] == [r.text for r in records]
    assert caplog.records == []


def test_a_clean_quote_holding_records_is_read_with_a_warning(tmp_path, caplog):
    # Syntactically fine (a CSV writer could have written it), but its lines look like rows.
    path = tmp_path / "odd.csv"
    path.write_text(_two_hundred_rows(150, 'ham,"Hello').replace("number 170\n", '170"\n'))
    with caplog.at_level(logging.WARNING, logger="gpt_classifier.data"):
        records = read_records(path)
    assert len(records) == 180
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "odd.csv:151: warning:" in warning and "look like records" in warning
    assert "180 row(s) read from 200" in warning


def test_prepare_dataset_takes_lenient(tmp_path):
    path = tmp_path / "runaway.csv"
    path.write_text(_two_hundred_rows(150, 'ham,"Hello there'), encoding="utf-8")
    _error(lambda: prepare_dataset(data_file=path), r"runaway\.csv:151:")
    prepared = prepare_dataset(data_file=path, lenient=True, balance="none")
    assert sum(prepared.summary.raw.values()) == 150
    _error(lambda: prepare_dataset(train_file=path), r"runaway\.csv:151:")
    assert len(prepare_dataset(train_file=path, lenient=True).train) == 150


def test_data_prepare_lenient_flag(tmp_path, tokenizer_dir):
    path = tmp_path / "runaway.csv"
    path.write_text(_two_hundred_rows(150, 'ham,"Hello there'), encoding="utf-8")
    args = ["data", "prepare", "--data-file", str(path), "--tokenizer-dir", str(tokenizer_dir)]
    result = CliRunner().invoke(cli, [*args, "--output-dir", str(tmp_path / "a")])
    assert result.exit_code == 2 and "runaway.csv:151: a quoted field" in result.stderr
    assert not (tmp_path / "a").exists()
    result = CliRunner().invoke(cli, [*args, "--lenient", "--output-dir", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert "ham" in result.stdout and (tmp_path / "b" / "train.csv").is_file()


# --- 6: texts over csv's default field size limit ---------------------------------------------


def test_a_200000_character_text_round_trips_through_the_split_files(tmp_path):
    long_text = "spam offer " * 18_000 + "end"  # 198,003 characters, over 131,072
    long_text += "x" * (200_000 - len(long_text))
    assert len(long_text) == 200_000
    limit = csv.field_size_limit()
    records = [Record(long_text, "spam"), Record("short", "ham")]
    split = write_split_file(records, tmp_path / "validation.csv")
    assert read_records(split) == records
    assert csv.field_size_limit() == limit  # no process-wide change left behind
    # From JSON lines through the whole pipeline: written, then read back by the run's reader.
    source = tmp_path / "long.jsonl"
    rows = [{"text": long_text, "label": "spam"}] + [
        {"text": f"text {i}", "label": ["ham", "spam"][i % 2]} for i in range(20)
    ]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    prepared = prepare_dataset(data_file=source, balance="none", fractions="0.5,0.5,0")
    write_splits(prepared, tmp_path / "run")
    again = read_splits(tmp_path / "run")
    assert again.train == prepared.train and again.validation == prepared.validation
    assert long_text in {r.text for r in again.train + again.validation}
    assert read_texts(tmp_path / "run" / "train.csv", "Text")[1] == [r.text for r in again.train]


# --- 7: only \n, \r\n and \r break lines ------------------------------------------------------

ODD_BREAKS = "a\u2028b\x85c\x0cd\x0be\x1cf\x1dg\x1eh"


def test_jsonl_with_unicode_line_separators_is_valid(tmp_path):
    path = tmp_path / "t.jsonl"
    rows = [{"id": 1, "text": ODD_BREAKS, "label": "ham"}, {"id": 2, "text": "ok", "label": "x"}]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    assert "\u2028" in path.read_text(encoding="utf-8")  # written raw, as JSON allows
    assert read_texts(path)[1] == [ODD_BREAKS, "ok"]
    assert [r.text for r in read_records(path)] == [ODD_BREAKS, "ok"]


def test_csv_with_a_form_feed_gives_one_row_per_record(tmp_path):
    path = tmp_path / "ff.csv"
    path.write_text(f"id,text\n1,{ODD_BREAKS}\n2,second\n", encoding="utf-8")
    rows, texts = read_texts(path)
    assert texts == [ODD_BREAKS, "second"]
    assert [row["id"] for row in rows] == ["1", "2"]


def test_txt_is_one_text_per_line_split_on_newlines_only(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(f"first\t(tab kept)\r\n{ODD_BREAKS}\rthird\n\n  \nfourth".encode())
    assert read_texts(path)[1] == ["first\t(tab kept)", ODD_BREAKS, "third", "fourth"]
    assert [r.line for r in read_unlabelled(path)] == [1, 2, 3, 6]
    # The same file as labelled data (label<TAB>text per line) breaks lines the same way.
    sms = tmp_path / "s.txt"
    sms.write_bytes(f"ham\t{ODD_BREAKS}\rspam\tb\r\nham\tc\n".encode())
    assert [r.text for r in read_records(sms)] == [ODD_BREAKS, "b", "c"]
    # A .txt with a header row is a table for both readers.
    table = tmp_path / "h.txt"
    table.write_text("label\ttext\nham\thello\nspam\tbuy now\n", encoding="utf-8")
    assert read_texts(table)[1] == [r.text for r in read_records(table)] == ["hello", "buy now"]


def _classify(saved_run, tokenizer_dir, *args):
    return CliRunner().invoke(
        cli, ["classify", str(saved_run), "--tokenizer-dir", str(tokenizer_dir), *map(str, args)]
    )


def test_classify_file_keeps_ids_aligned(tmp_path, saved_run, tokenizer_dir):
    source = tmp_path / "in.csv"
    source.write_text(f"id,text\n1,{ODD_BREAKS}\n2,second\n", encoding="utf-8")
    result = _classify(saved_run, tokenizer_dir, "--file", source, "--json")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["text"] for line in result.stdout.split("\n")[:2]] == [
        ODD_BREAKS,
        "second",
    ]
    target = tmp_path / "out.csv"
    result = _classify(saved_run, tokenizer_dir, "--file", source, "--output", target)
    assert result.exit_code == 0, result.output
    with target.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["id"], r["text"]) for r in rows] == [("1", ODD_BREAKS), ("2", "second")]


# --- 2: outputs that would overwrite something ------------------------------------------------


def test_classify_output_never_overwrites_its_input(tmp_path, saved_run, tokenizer_dir):
    source = tmp_path / "in.csv"
    source.write_text("id,text\n1,hello\n", encoding="utf-8")
    before = source.read_bytes()
    (tmp_path / "sub").mkdir()
    (tmp_path / "alias.csv").symlink_to(source)
    for target in (source, tmp_path / "sub" / ".." / "in.csv", tmp_path / "alias.csv"):
        for extra in ([], ["--overwrite"]):
            result = _classify(
                saved_run, tokenizer_dir, "--file", source, "--output", target, *extra
            )
            assert result.exit_code == 2 and "is the input file" in result.stderr, result.output
    link = tmp_path / "link.csv"
    os.link(source, link)  # another name for the same file
    result = _classify(saved_run, tokenizer_dir, "--file", source, "--output", link, "--overwrite")
    assert result.exit_code == 2 and "is the input file" in result.stderr
    assert source.read_bytes() == before


def test_classify_output_refuses_an_existing_file_unless_overwrite(
    tmp_path, saved_run, tokenizer_dir
):
    source, target = tmp_path / "in.csv", tmp_path / "out.csv"
    source.write_text("id,text\n1,hello\n", encoding="utf-8")
    target.write_text("precious\n", encoding="utf-8")
    result = _classify(saved_run, tokenizer_dir, "--file", source, "--output", target)
    assert result.exit_code == 2 and "exists; pass --overwrite" in result.stderr
    assert target.read_text(encoding="utf-8") == "precious\n"
    result = _classify(
        saved_run, tokenizer_dir, "--file", source, "--output", target, "--overwrite"
    )
    assert result.exit_code == 0, result.output
    assert target.read_text(encoding="utf-8").startswith("id,text,predicted_label,probability")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_data_prepare_refuses_a_non_empty_folder_before_any_work(tmp_path, tokenizer_dir):
    out = tmp_path / "splits"
    out.mkdir()
    (out / "train.csv").write_text("Label,Text\nkeep,me\n", encoding="utf-8")
    # The data file does not exist: the refusal must come first, before reading anything.
    args = ["data", "prepare", "--tokenizer-dir", str(tokenizer_dir), "--output-dir", str(out)]
    result = CliRunner().invoke(cli, [*args, "--data-file", str(tmp_path / "missing.csv")])
    assert result.exit_code == 2 and "is not empty; pass --overwrite" in result.stderr
    assert (out / "train.csv").read_text(encoding="utf-8") == "Label,Text\nkeep,me\n"
    data = tmp_path / "d.csv"
    rows = [f"{['ham', 'spam'][i % 2]},text {i}" for i in range(20)]
    data.write_text("label,text\n" + "\n".join(rows) + "\n", encoding="utf-8")
    result = CliRunner().invoke(cli, [*args, "--data-file", str(data), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert "keep" not in (out / "train.csv").read_text(encoding="utf-8")


def test_only_regular_files_are_ever_replaced(tmp_path, saved_run, tokenizer_dir):
    source, fifo = tmp_path / "in.csv", tmp_path / "fifo.csv"
    source.write_text("id,text\n1,hello\n", encoding="utf-8")
    os.mkfifo(fifo)
    targets = {fifo: "a FIFO", Path(os.devnull): "a character device"}  # click refuses a folder
    for target, kind in targets.items():
        for extra in ([], ["--overwrite"]):
            result = _classify(
                saved_run, tokenizer_dir, "--file", source, "--output", target, *extra
            )
            assert result.exit_code == 2, result.output
            assert f"{target} is {kind}, not a regular file" in result.stderr
    # The writers underneath (data prepare's, every atomic write) and output folders alike.
    _error(lambda: write_split_file([Record("x", "ham")], fifo), "is a FIFO, not a regular")
    out = tmp_path / "splits"
    out.mkdir()
    os.mkfifo(out / "train.csv")
    data = tmp_path / "d.csv"
    data.write_text("label,text\n" + "".join(f"{i % 2},t {i}\n" for i in range(20)), "utf-8")
    args = ["data", "prepare", "--tokenizer-dir", str(tokenizer_dir), "--overwrite"]
    for folder, kind in ((out / "train.csv", "a FIFO, not a directory"), (out, "a FIFO")):
        result = CliRunner().invoke(
            cli, [*args, "--output-dir", str(folder), "--data-file", str(data)]
        )
        assert result.exit_code == 2 and kind in result.stderr, result.output
    assert stat.S_ISFIFO(fifo.stat().st_mode) and stat.S_ISFIFO((out / "train.csv").stat().st_mode)
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


# --- 12: integer options ----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-3"])
def test_classify_batch_size_must_be_positive(saved_run, tokenizer_dir, value):
    result = _classify(saved_run, tokenizer_dir, "--batch-size", value, "hello")
    assert result.exit_code == 2 and "Invalid value for '--batch-size'" in result.stderr


def test_unlabelled_reader_errors_are_one_line(tmp_path):
    empty = tmp_path / "e.csv"
    empty.write_text("id,text\n1,ok\n2, \n", encoding="utf-8")
    _error(lambda: read_texts(empty), r"e\.csv:3: empty text in column 'text'")
    assert read_texts(Path(empty), fmt="lines")[1] == ["id,text", "1,ok", "2, "]
    _error(lambda: read_texts(tmp_path / "nope.txt"), "input file not found")
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"text": "a"}\n{"text": "\\ud800"}\n', encoding="utf-8")
    _error(lambda: read_texts(bad), r"b\.jsonl:2: invalid Unicode \(unpaired surrogate U\+D800")


@pytest.mark.parametrize("suffix, sep", [(".csv", ","), (".tsv", "\t")])
def test_a_repeated_column_name_in_the_header_is_refused(tmp_path, suffix, sep):
    path = tmp_path / f"d{suffix}"
    path.write_text(sep.join(["label", "text", "text"]) + "\n" + sep.join("abc") + "\n")
    _error(lambda: read_records(path), r"d\.\w+:1: the header names column 'text' twice")
    _error(lambda: read_unlabelled(path), r"d\.\w+:1: the header names column 'text' twice")
    fine = tmp_path / f"ok{suffix}"
    fine.write_text(sep.join(["label", "text", "", ""]) + "\n" + sep.join("ab  ") + "\n")
    assert [r.text for r in read_records(fine)] == ["b"]
