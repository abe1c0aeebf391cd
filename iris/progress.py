"""Progress bars for long work (tqdm on stderr; silent when IRIS_PROGRESS=0)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def enabled() -> bool:
    return os.environ.get("IRIS_PROGRESS", "1") not in {"0", "false", "no"}


def progress(iterable: Iterable[T], *, desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """Wrap ``iterable`` in a progress bar labelled ``desc``."""
    yield from tqdm(iterable, desc=desc, total=total, unit=unit, disable=not enabled(), dynamic_ncols=True)


def bar(*, desc: str, total: int | None = None, unit: str = "it") -> tqdm:
    """A manual progress bar: call ``.update(n)`` and ``.close()``."""
    return tqdm(desc=desc, total=total, unit=unit, disable=not enabled(), dynamic_ncols=True)
