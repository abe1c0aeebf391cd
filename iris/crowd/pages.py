"""Page assembly: real tasks plus honeypots per page.

A page (an assignment, in Toloka's words) holds ``page_size - honeypots_per_page`` real
tasks and ``honeypots_per_page`` honeypots at random positions. A honeypot never appears
twice on one page, and a worker gets the honeypots they have seen least often, so nobody
sees the same honeypot twice while unseen ones remain — a worker cannot harvest the answer
set by remembering it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from iris.errors import PoolExhaustedError


@dataclass(frozen=True)
class Page:
    """One page: task ids in the order shown, and which of them are honeypots."""

    id: str
    tasks: tuple[int, ...]
    honeypots: frozenset[int]

    @property
    def real(self) -> list[int]:
        return [t for t in self.tasks if t not in self.honeypots]


def pick_honeypots(
    honeypots: Sequence[int],
    *,
    n: int,
    seen: Mapping[int, int],
    rng: np.random.Generator,
) -> list[int]:
    """Choose ``n`` distinct honeypots, the least seen by this worker first (ties at random).

    Args:
        honeypots: ids of every honeypot.
        n: how many the page needs.
        seen: honeypot id → times this worker has already seen it.
        rng: random generator (ties are broken with it).

    Raises:
        PoolExhaustedError: fewer honeypots than one page needs.
    """
    if n == 0:
        return []
    if len(honeypots) < n:
        raise PoolExhaustedError(f"a page needs {n} distinct honeypots, only {len(honeypots)} exist")
    ids = np.asarray(honeypots, dtype=np.int64)
    counts = np.array([seen.get(int(i), 0) for i in ids], dtype=np.int64)
    tiebreak = rng.random(len(ids))
    order = np.lexsort((tiebreak, counts))
    return [int(i) for i in ids[order[:n]]]


def assemble_page(
    page_id: str,
    real: Sequence[int],
    honeypots: Sequence[int],
    *,
    rng: np.random.Generator,
) -> Page:
    """Place the honeypots at random positions among the real tasks.

    Raises:
        ValueError: a honeypot repeats or is also a real task (a programming error).
    """
    if len(set(honeypots)) != len(honeypots):
        raise ValueError(f"page {page_id}: honeypot repeated: {list(honeypots)}")
    if set(honeypots) & set(real):
        raise ValueError(f"page {page_id}: a honeypot is also a real task")
    tasks = list(real)
    for hp in honeypots:
        tasks.insert(int(rng.integers(0, len(tasks) + 1)), hp)
    return Page(id=page_id, tasks=tuple(tasks), honeypots=frozenset(honeypots))
