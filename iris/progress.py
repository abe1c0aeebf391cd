"""Progress for long work, on stderr: a tqdm bar on a terminal, log lines anywhere else.

A bar redraws itself with ``\\r`` many times a second; in a file or a CI log each redraw is
kept, so a log of ``iris demo`` would be mostly frames. When the stream is not a terminal
(nor a notebook), progress is instead one line every ``IRIS_PROGRESS_EVERY`` seconds
(5 by default; 0 writes a line per update), and, as work goes on, no more often than
every tenth of the time it has taken so far, so that a long job writes tens of lines,
not hundreds (20 minutes: 40 lines)::

    embed: 3,072/11,800 img (26%), 212 img/s

and, for work that wrote such a line, one more when it ends::

    embed: 11,800/11,800 img (100%) in 55 s, 214 img/s

Work that ends before its first line is due leaves no line (the stage reports its own
summary). ``IRIS_PROGRESS=0`` silences both kinds.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TextIO, TypeVar

import tqdm.auto
import tqdm.autonotebook
import tqdm.std

from iris.config import progress_every

T = TypeVar("T")


class Progress(Protocol):
    """What a stage may do with a progress bar."""

    def update(self, n: float = 1) -> Any: ...

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> Any: ...

    def close(self) -> Any: ...


def enabled() -> bool:
    return os.environ.get("IRIS_PROGRESS", "1") not in {"0", "false", "no"}


def _count(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _rate(done: float, seconds: float, unit: str) -> str:
    if seconds <= 0 or done <= 0:
        return ""
    rate = done / seconds
    if rate >= 10:
        return f"{rate:,.0f} {unit}/s"
    return f"{rate:.1f} {unit}/s" if rate >= 1 else f"{1 / rate:.1f} s/{unit}"


class LogProgress:
    """Progress as plain lines on ``file``: one at most every ``every`` seconds (and every
    ``share`` of the time so far), and one at the end.

    Args:
        every: seconds between two lines; 0 writes one per update.
        share: the gap also grows to this share of the elapsed time (when ``every`` > 0).
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(
        self,
        *,
        desc: str,
        total: int | None,
        unit: str,
        file: TextIO,
        every: float,
        share: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.desc, self.total, self.unit, self.file, self.every = desc, total, unit, file, every
        self.share = share if every > 0 else 0.0
        self.clock = clock
        self.n: float = 0
        self.postfix = ""
        self.started = clock()
        self.last = self.started
        self.lines = 0
        self.closed = False

    def _line(self, *, end: bool) -> str:
        seconds = self.clock() - self.started
        done = _count(self.n)
        if self.total:
            head = f"{self.desc}: {done}/{_count(self.total)} {self.unit} ({self.n / self.total:.0%})"
        else:
            head = f"{self.desc}: {done} {self.unit}"
        parts = [head + (f" in {seconds:.0f} s" if end else "")]
        rate = _rate(self.n, seconds, self.unit)
        if rate:
            parts.append(rate)
        if self.postfix:
            parts.append(self.postfix)
        return ", ".join(parts)

    def _write(self, *, end: bool) -> None:
        self.file.write(self._line(end=end) + "\n")
        self.file.flush()
        self.lines += 1

    def update(self, n: float = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self.last >= max(self.every, self.share * (now - self.started)):
            self.last = now
            self._write(end=False)

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**(dict(ordered_dict) if ordered_dict else {}), **kwargs}
        self.postfix = " ".join(f"{key}={value}" for key, value in items.items())

    def close(self) -> None:
        if not self.closed and self.lines:
            self._write(end=True)
        self.closed = True


def _is_terminal(file: TextIO) -> bool:
    if tqdm.autonotebook.tqdm is not tqdm.std.tqdm:  # a notebook: tqdm.auto draws a widget
        return True
    try:
        return file.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def bar(*, desc: str, total: int | None = None, unit: str = "it", file: TextIO | None = None) -> Progress:
    """A manual progress bar on ``file`` (stderr by default): call ``.update(n)`` and ``.close()``.

    A tqdm bar on a terminal, a :class:`LogProgress` elsewhere, silent when IRIS_PROGRESS=0.
    """
    stream = sys.stderr if file is None else file
    if not enabled():
        return tqdm.std.tqdm(disable=True)
    if _is_terminal(stream):
        return tqdm.auto.tqdm(desc=desc, total=total, unit=unit, file=stream, dynamic_ncols=True)
    return LogProgress(desc=desc, total=total, unit=unit, file=stream, every=progress_every())


def progress(
    iterable: Iterable[T],
    *,
    desc: str,
    total: int | None = None,
    unit: str = "it",
    file: TextIO | None = None,
) -> Iterator[T]:
    """Wrap ``iterable`` in a progress bar labelled ``desc`` (see :func:`bar`)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    shown = bar(desc=desc, total=total, unit=unit, file=file)
    try:
        for item in iterable:
            yield item
            shown.update(1)
    finally:
        shown.close()
