import pytest

from gpt_classifier import progress
from gpt_classifier.progress import progress_bar, tracked


def test_off_a_terminal_progress_is_a_short_line_now_and_then(monkeypatch, capsys):
    monkeypatch.setattr(progress, "HEARTBEAT_SECONDS", 0.0)
    with progress_bar(4, "epoch 1/2", unit="batches") as bar:
        for _ in range(4):
            bar.update(1)
        bar.set_postfix(loss="0.512")
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert len(lines) == 4
    assert lines[-1].startswith("epoch 1/2: 4/4 batches (100 %), ")


def test_heartbeat_waits_its_interval(monkeypatch, capsys):
    monkeypatch.setattr(progress, "HEARTBEAT_SECONDS", 3600.0)
    bar = progress_bar(1000, "classify", unit="rows")
    bar.update(999)
    bar.close()
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("enabled", [False, True])
def test_tracked_yields_every_item_in_order(monkeypatch, capsys, enabled):
    monkeypatch.setattr(progress, "HEARTBEAT_SECONDS", 0.0)
    assert list(tracked(iter("abc"), 3, "evaluate test", enabled=enabled)) == ["a", "b", "c"]
    err = capsys.readouterr().err
    assert (err.count("\n") == 3) is enabled and (err == "") is not enabled
