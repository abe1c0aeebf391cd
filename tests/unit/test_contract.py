"""The stage contract: the context opens the store lazily, closes only what it opened, and
every report turns into JSON one way."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from iris.config import Settings
from iris.contract import StageContext, StageReport, report_dict
from iris.workdir import Workdir, init_workdir


@dataclass(frozen=True)
class _Report(StageReport):
    n: int
    where: Path
    extra: dict[str, float] = field(default_factory=dict)


def test_a_report_is_json_one_way() -> None:
    report = _Report(n=3, where=Path("/tmp/x"), extra={"a": 0.5})
    assert report.as_dict() == {"n": 3, "where": "/tmp/x", "extra": {"a": 0.5}}
    assert json.loads(report.to_json()) == report.as_dict() == report_dict(report)
    with pytest.raises(TypeError, match="dataclass"):
        report_dict(object())


class _Store:
    closed = 0

    def close(self) -> None:
        self.closed += 1


def test_the_context_opens_the_store_once_and_closes_it(tmp_path: Path, monkeypatch) -> None:
    workdir = init_workdir(tmp_path / "work")
    opened: list[_Store] = []

    def fake_open(w: Workdir, s: Settings) -> _Store:
        opened.append(_Store())
        return opened[-1]

    monkeypatch.setattr("iris.store.open_store", fake_open)
    with StageContext(workdir, Settings()) as ctx:
        assert opened == []  # nothing opened until a stage asks
        assert ctx.store is ctx.store
    assert len(opened) == 1 and opened[0].closed == 1


def test_a_store_handed_in_stays_open(tmp_path: Path) -> None:
    store = _Store()
    with StageContext(init_workdir(tmp_path / "work"), Settings(), store=store) as ctx:  # type: ignore[arg-type]
        assert ctx.store is store
    assert store.closed == 0


def test_the_context_closes_on_an_error(tmp_path: Path, monkeypatch) -> None:
    store = _Store()
    monkeypatch.setattr("iris.store.open_store", lambda w, s: store)
    with pytest.raises(RuntimeError), StageContext(init_workdir(tmp_path / "work"), Settings()) as ctx:
        assert ctx.store is store
        raise RuntimeError("a stage failed")
    assert store.closed == 1
