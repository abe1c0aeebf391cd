"""Page assembly: honeypots never twice on a page, and not twice for a worker while avoidable."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iris.crowd.pages import assemble_page, pick_honeypots
from iris.errors import PoolExhaustedError


def test_page_holds_real_tasks_and_honeypots() -> None:
    rng = np.random.default_rng(0)
    page = assemble_page("p", list(range(49)), [100], rng=rng)
    assert len(page.tasks) == 50
    assert page.honeypots == frozenset({100})
    assert page.real == list(range(49))  # real tasks keep their order


def test_repeated_honeypot_on_a_page_is_refused() -> None:
    with pytest.raises(ValueError, match="honeypot repeated"):
        assemble_page("p", [1, 2], [7, 7], rng=np.random.default_rng(0))


def test_too_few_honeypots_is_a_named_error() -> None:
    with pytest.raises(PoolExhaustedError, match="needs 3 distinct honeypots, only 2 exist"):
        pick_honeypots([1, 2], n=3, seen={}, rng=np.random.default_rng(0))


@settings(max_examples=40, deadline=None)
@given(
    n_honeypots=st.integers(min_value=1, max_value=30),
    per_page=st.integers(min_value=1, max_value=4),
    pages=st.integers(min_value=1, max_value=40),
    seed=st.integers(min_value=0, max_value=10_000),
)
def test_honeypots_distinct_on_page_and_spread_over_pages(
    n_honeypots: int, per_page: int, pages: int, seed: int
) -> None:
    if per_page > n_honeypots:
        per_page = n_honeypots
    rng = np.random.default_rng(seed)
    honeypots = list(range(1000, 1000 + n_honeypots))
    seen: dict[int, int] = {}
    shown: list[int] = []
    for p in range(pages):
        chosen = pick_honeypots(honeypots, n=per_page, seen=seen, rng=rng)
        page = assemble_page(f"p{p}", list(range(10)), chosen, rng=rng)
        assert len(page.honeypots) == per_page  # never the same honeypot twice on a page
        for h in chosen:
            seen[h] = seen.get(h, 0) + 1
        shown += chosen
    # A worker sees a honeypot again only once every honeypot has been seen as often.
    counts = np.array([seen.get(h, 0) for h in honeypots])
    assert counts.max() - counts.min() <= 1
    assert len(set(shown[:n_honeypots])) == min(len(shown), n_honeypots)
