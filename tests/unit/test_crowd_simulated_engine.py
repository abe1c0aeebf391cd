"""The simulated crowd's task queue hands out exactly what a full scan would."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from iris.crowd.backends.simulated import TaskQueue


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 600),
    overlap=st.integers(1, 3),
    k=st.integers(1, 60),
    steps=st.lists(st.tuples(st.booleans(), st.integers(0, 2**32 - 1)), min_size=1, max_size=40),
)
def test_free_for_equals_a_full_scan(n: int, overlap: int, k: int, steps: list[tuple[bool, int]]) -> None:
    """Taking pages and handing tasks back (re-issues, expired pages) in any order, the next
    page is always the first k open tasks the worker has not taken, in priority order."""
    queue = TaskQueue(np.arange(n, dtype=np.int64) + 100, overlap)
    workers = [np.zeros(n, dtype=bool) for _ in range(3)]
    taken: list[np.ndarray] = []
    for give_back, seed in steps:
        rng = np.random.default_rng(seed)
        if give_back and taken:
            queue.give_back(taken.pop(int(rng.integers(len(taken)))))
            continue
        done = workers[int(rng.integers(len(workers)))]
        expected = np.flatnonzero((queue.need > 0) & ~done)[:k]
        got = queue.free_for(done, k)
        assert np.array_equal(got, expected)
        queue.take(got)
        done[got] = True
        taken.append(got)
    assert queue.left() == int(queue.need.sum()) >= 0
