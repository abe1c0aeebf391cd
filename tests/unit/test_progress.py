"""Progress: tqdm bars on a terminal, plain lines in a log, nothing with IRIS_PROGRESS=0."""

from __future__ import annotations

import io
import re

import pytest
import tqdm.std

from iris.config import load_settings
from iris.errors import ConfigError
from iris.progress import LogProgress, bar, progress


def heads(text: str) -> list[str]:
    """Each line without its rate, its seconds written as N (the real clock's figures vary)."""
    return [re.sub(r" in \d+ s$", " in N s", line.split(",")[0]) for line in text.splitlines()]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IRIS_PROGRESS", "1")
    monkeypatch.delenv("IRIS_PROGRESS_EVERY", raising=False)


def test_a_log_gets_a_line_every_interval_and_one_at_the_end() -> None:
    log, clock = io.StringIO(), Clock()
    work = LogProgress(desc="embed", total=1000, unit="img", file=log, every=5.0, clock=clock)
    for _ in range(10):  # 100 images a second, an update every second
        clock.now += 1.0
        work.update(100)
    work.set_postfix(loss="0.123")
    work.close()
    work.close()  # a second close writes nothing more
    assert log.getvalue().splitlines() == [
        "embed: 500/1,000 img (50%), 100 img/s",
        "embed: 1,000/1,000 img (100%), 100 img/s",
        "embed: 1,000/1,000 img (100%) in 10 s, 100 img/s, loss=0.123",
    ]


def test_long_work_writes_tens_of_lines_not_hundreds() -> None:
    """20 minutes at one image a second: every 5 s for the first 50 s, then every tenth of
    the time so far (240 lines at a fixed 5 s)."""
    log, clock = io.StringIO(), Clock()
    work = LogProgress(desc="train: epoch", total=1200, unit="img", file=log, every=5.0, clock=clock)
    for _ in range(1200):
        clock.now += 1.0
        work.update(1)
    work.close()
    done = [int(line.split(": ")[2].split("/")[0].replace(",", "")) for line in log.getvalue().splitlines()]
    assert len(done) == 40
    assert done[:13] == [5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 56, 63, 70]
    assert done[-3:] == [1017, 1130, 1200]


def test_work_shorter_than_the_interval_writes_nothing() -> None:
    log, clock = io.StringIO(), Clock()
    work = LogProgress(desc="fine-tune", total=5, unit="batch", file=log, every=5.0, clock=clock)
    for _ in range(5):
        clock.now += 0.5
        work.update(1)
    work.close()
    assert log.getvalue() == ""


def test_an_unknown_total_and_a_slow_rate() -> None:
    log, clock = io.StringIO(), Clock()
    work = LogProgress(desc="simulated crowd", total=None, unit="page", file=log, every=0.0, clock=clock)
    clock.now += 4.0
    work.update(1)
    assert log.getvalue() == "simulated crowd: 1 page, 4.0 s/page\n"


def test_a_stream_that_is_not_a_terminal_gets_lines_not_frames(
    shown: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IRIS_PROGRESS_EVERY", "0")
    log = io.StringIO()
    work = bar(desc="ingest", total=300, unit="img", file=log)
    assert isinstance(work, LogProgress)
    for _ in range(3):
        work.update(100)
    work.close()
    text = log.getvalue()
    assert "\r" not in text
    assert heads(text) == [
        "ingest: 100/300 img (33%)",
        "ingest: 200/300 img (67%)",
        "ingest: 300/300 img (100%)",
        "ingest: 300/300 img (100%) in N s",
    ]


def test_the_iterable_wrapper_logs_too(shown: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IRIS_PROGRESS_EVERY", "0")
    log = io.StringIO()
    assert list(progress(range(2), desc="fashion-mnist", unit="img", file=log)) == [0, 1]
    assert heads(log.getvalue()) == [
        "fashion-mnist: 1/2 img (50%)",
        "fashion-mnist: 2/2 img (100%)",
        "fashion-mnist: 2/2 img (100%) in N s",
    ]


def test_a_terminal_keeps_its_tqdm_bar(shown: None) -> None:
    screen = Terminal()
    work = bar(desc="embed", total=10, unit="img", file=screen)
    assert isinstance(work, tqdm.std.tqdm)
    work.update(10)
    work.close()
    assert "\r" in screen.getvalue() and "10/10" in screen.getvalue()


@pytest.mark.parametrize("stream", [io.StringIO(), Terminal()], ids=["log", "terminal"])
def test_iris_progress_0_silences_both(monkeypatch: pytest.MonkeyPatch, stream: io.StringIO) -> None:
    monkeypatch.setenv("IRIS_PROGRESS", "0")
    monkeypatch.setenv("IRIS_PROGRESS_EVERY", "0")
    work = bar(desc="embed", total=10, file=stream)
    work.update(10)
    work.close()
    assert list(progress(range(3), desc="x", file=stream)) == [0, 1, 2]
    assert stream.getvalue() == ""


@pytest.mark.parametrize("text", ["soon", "-1", "inf", "nan"])
def test_a_bad_interval_is_refused_with_the_settings(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ={"IRIS_PROGRESS_EVERY": text})
    assert str(caught.value) == f"IRIS_PROGRESS_EVERY = {text!r}: expected a number of seconds >= 0"


def test_the_interval_variable_is_not_warned_about() -> None:
    lines: list[str] = []
    load_settings(None, environ={"IRIS_PROGRESS_EVERY": "2.5"}, warn=lines.append)
    assert lines == []
