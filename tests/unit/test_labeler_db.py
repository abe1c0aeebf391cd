"""The web labeler's store: one transaction per page issued, leases, identity, every rule at submit."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from iris.config import Settings
from iris.crowd.backends.web import Issue, LabelerDB, Refused, Submitted, WebOptions
from iris.crowd.spec import CampaignSpec
from iris.crowd.web_load import audit, load_settings_for, make_campaign
from iris.errors import CrowdError


def _campaign(
    tmp_path: Path, *, tasks: int = 20, **crowd: object
) -> tuple[LabelerDB, CampaignSpec, WebOptions, Settings]:
    base = load_settings_for(page_size=10, overlap=3)
    settings = replace(base, crowd=replace(base.crowd, **crowd))  # type: ignore[arg-type]
    workdir = make_campaign(tmp_path / "work", tasks=tasks, settings=settings)
    db = LabelerDB(workdir.crowd / "web" / "labeler.db")
    return db, CampaignSpec.from_settings(settings), WebOptions.from_settings(settings), settings


def _labels(db: LabelerDB, ids: list[int]) -> dict[int, int]:
    with db._read() as con:
        marks = ",".join("?" * len(ids))
        rows = con.execute(f"SELECT id, COALESCE(label, 1) FROM items WHERE id IN ({marks})", ids)
        return {int(i): int(label) for i, label in rows}


def _page(db: LabelerDB, worker: str, spec: CampaignSpec, options: WebOptions, **kw: object) -> Issue:
    return db.next_page(worker, spec, options, **kw)  # type: ignore[arg-type]


def _submit_right(db: LabelerDB, worker: str, spec: CampaignSpec, options: WebOptions) -> Submitted | Refused:
    issue = _page(db, worker, spec, options)
    assert issue.page is not None, issue
    return db.submit(worker, issue.page.page, _labels(db, issue.page.tasks), spec)


def test_ten_workers_asking_at_the_same_instant_never_exceed_the_overlap(tmp_path: Path) -> None:
    # 20 tasks x overlap 3 = 60 slots; 10 workers x 9 real tasks = 90 asked: they compete.
    db, spec, options, _ = _campaign(tmp_path, tasks=20)
    workers = [db.add_worker(options, stage="main") for _ in range(10)]
    barrier = threading.Barrier(10)
    issued: dict[str, Issue] = {}

    def ask(w: str) -> None:
        barrier.wait()
        issued[w] = LabelerDB(db.path).next_page(w, spec, options)

    threads = [threading.Thread(target=ask, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    real = Counter()
    for w, issue in issued.items():
        if issue.page is None:
            continue
        tasks = [t for t in issue.page.tasks if t not in issue.page.honeypots]
        assert len(tasks) == len(set(tasks)), w
        real.update(tasks)
    assert sum(real.values()) == 60  # every slot taken, none twice
    assert max(real.values()) == 3
    assert audit(db.path, overlap=3)["assignments_over_overlap"] == 0


def test_eight_parallel_requests_of_one_worker_get_one_page(tmp_path: Path) -> None:
    db, spec, options, _ = _campaign(tmp_path)
    worker = db.add_worker(options, stage="main")
    barrier = threading.Barrier(8)
    pages: list[str] = []

    def ask() -> None:
        barrier.wait()
        issue = LabelerDB(db.path).next_page(worker, spec, options)
        assert issue.page is not None
        pages.append(issue.page.page)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(pages) == 8 and len(set(pages)) == 1
    assert db.counts()["pending"] == 1


def test_an_expired_lease_returns_its_tasks_and_refuses_the_late_submit(tmp_path: Path) -> None:
    db, spec, options, _ = _campaign(tmp_path, tasks=9, overlap=1, web_lease_minutes=10)
    alice, bob = db.add_worker(options, stage="main"), db.add_worker(options, stage="main")
    first = _page(db, alice, spec, options).page
    assert first is not None
    assert _page(db, bob, spec, options).why == "wait"  # alice holds every task
    pending = db.pending_pages(now=first.issued_at + timedelta(minutes=4))
    assert [(p["worker"], p["age_s"]) for p in pending] == [(alice, 240.0)]

    later = first.issued_at + timedelta(minutes=11)
    second = _page(db, bob, spec, options, now=later).page
    assert second is not None
    real = set(first.tasks) - set(first.honeypots)
    assert real == set(second.tasks) - set(second.honeypots)
    late = db.submit(alice, first.page, _labels(db, first.tasks), spec, now=later)
    assert isinstance(late, Refused) and late.reason == "expired" and late.status == 410
    assert "10 minutes" in late.message
    assert db.answers().height == 0
    done = db.submit(bob, second.page, _labels(db, second.tasks), spec, now=later)
    assert isinstance(done, Submitted)
    assert db.answers()["worker"].unique().to_list() == [bob]


def test_a_stolen_page_is_refused_and_nothing_is_saved(tmp_path: Path) -> None:
    db, spec, options, _ = _campaign(tmp_path)
    alice, mallory = db.add_worker(options, stage="main"), db.add_worker(options, stage="main")
    page = _page(db, alice, spec, options).page
    assert page is not None
    stolen = db.submit(mallory, page.page, _labels(db, page.tasks), spec)
    assert isinstance(stolen, Refused) and stolen.reason == "not-yours" and stolen.status == 403
    assert db.answers().height == 0
    assert isinstance(db.submit(alice, page.page, _labels(db, page.tasks), spec), Submitted)
    again = db.submit(alice, page.page, _labels(db, page.tasks), spec)
    assert isinstance(again, Refused) and again.reason == "submitted"
    assert db.answers().height == len(page.tasks)


def test_a_banned_worker_gets_no_page_and_a_pending_one_is_refused(tmp_path: Path) -> None:
    # Everyone is "fast" (a page needs 1000 s): the first page saved bans its worker.
    db, spec, options, _ = _campaign(tmp_path, min_seconds_per_page=1000.0)
    worker = db.add_worker(options, stage="main")
    result = _submit_right(db, worker, spec, options)
    assert isinstance(result, Submitted) and result.ban is not None and result.ban.rule == "fast"
    assert "page" in result.ban.detail
    assert _page(db, worker, spec, options).why == "banned"

    # A ban that lands while a page is out (another process's QC, the owner): the submit is refused.
    other = db.add_worker(options, stage="main")
    page = _page(db, other, spec, options).page
    assert page is not None
    with db._tx() as con:
        con.execute(
            "UPDATE workers SET banned_rule='majority', banned_detail='x', banned_at=?, banned_until=? "
            "WHERE worker=?",
            (page.issued_at.isoformat(), (page.issued_at + timedelta(days=7)).isoformat(), other),
        )
    refused = db.submit(other, page.page, _labels(db, page.tasks), spec)
    assert isinstance(refused, Refused) and refused.reason == "banned" and refused.status == 403
    assert other not in db.answers()["worker"].to_list()
    assert db.counts()["pending"] == 0  # the banned worker's page went back


def test_after_stop_nobody_gets_a_page_and_submits_are_refused(tmp_path: Path) -> None:
    db, spec, options, _ = _campaign(tmp_path)
    worker = db.add_worker(options, stage="main")
    page = _page(db, worker, spec, options).page
    assert page is not None
    db.set_meta("stopped", "1")
    refused = db.submit(worker, page.page, _labels(db, page.tasks), spec)
    assert isinstance(refused, Refused) and refused.reason == "stopped"
    newcomer = db.add_worker(options)
    assert _page(db, newcomer, spec, options).why == "stopped"  # not even training
    assert db.answers().height == 0


def test_training_then_exam_drawn_per_worker_then_main(tmp_path: Path) -> None:
    db, spec, options, _ = _campaign(tmp_path, exam=6, web_exam_questions=4)
    a, b = db.add_worker(options), db.add_worker(options)
    training = _page(db, a, spec, options).page
    assert training is not None and training.kind == "training"
    wrong = {t: 1 - v for t, v in _labels(db, training.tasks).items()}
    result = db.submit(a, training.page, wrong, spec)
    assert isinstance(result, Submitted) and result.stage == "exam"
    assert result.hints == _labels(db, training.tasks) and result.answers == wrong
    exams = []
    for w in (a, b):
        if w == b:
            _submit_right(db, b, spec, options)
        exam = _page(db, w, spec, options).page
        assert exam is not None and exam.kind == "exam" and len(exam.tasks) == 4
        exams.append(exam)
    with db._read() as con:
        pool = {r[0] for r in con.execute("SELECT id FROM items WHERE role = 'exam'")}
    assert set(exams[0].tasks) <= pool and set(exams[1].tasks) <= pool
    # Drawn and ordered per worker (two equal draws of 4 ordered from 6 has odds 1/360;
    # a fresh third worker makes a false failure 1/130,000).
    c = db.add_worker(options)
    _submit_right(db, c, spec, options)
    third = _page(db, c, spec, options).page
    assert third is not None
    assert len({tuple(e.tasks) for e in [*exams, third]}) > 1
    passed = db.submit(a, exams[0].page, _labels(db, exams[0].tasks), spec)
    assert isinstance(passed, Submitted) and passed.stage == "main" and passed.correct == 4
    main = _page(db, a, spec, options).page
    assert main is not None and main.kind == "main" and len(main.honeypots) == 1


def test_a_failed_exam_is_final(tmp_path: Path) -> None:
    db, spec, options, _ = _campaign(tmp_path)
    worker = db.add_worker(options, stage="exam")
    exam = _page(db, worker, spec, options).page
    assert exam is not None
    result = db.submit(worker, exam.page, {t: 1 - v for t, v in _labels(db, exam.tasks).items()}, spec)
    assert isinstance(result, Submitted) and result.stage == "failed"
    assert _page(db, worker, spec, options).why == "failed"


def test_invitations_are_personal_and_open_signup_is_off_by_default(tmp_path: Path) -> None:
    db, _spec, options, _ = _campaign(tmp_path)
    assert options.open_signup is False
    tokens = db.create_invites(3)
    assert len(set(tokens)) == 3 and all(len(t) >= 24 for t in tokens)
    first = db.redeem(tokens[0], options)
    assert first is not None and db.redeem(tokens[0], options) == first  # the same person again
    assert db.redeem(tokens[1], options) not in (None, first)
    assert db.redeem("guessed-token", options) is None
    with pytest.raises(CrowdError, match="invitation"):
        db.signup(options)
    assert db.signup(replace(options, open_signup=True)).startswith("w")
    with db._read() as con:
        stored = [r[0] for r in con.execute("SELECT token_hash FROM invites")]
    assert not set(tokens) & set(stored)  # only hashes are kept


def test_incomplete_answers_are_rejected_and_the_page_stays_open(tmp_path: Path) -> None:
    db, spec, options, _ = _campaign(tmp_path)
    worker = db.add_worker(options, stage="main")
    page = _page(db, worker, spec, options).page
    assert page is not None
    partial = dict(list(_labels(db, page.tasks).items())[:-1])
    with pytest.raises(CrowdError, match="1 of 10 images have no answer"):
        db.submit(worker, page.page, partial, spec)
    with pytest.raises(CrowdError, match="0 or 1"):
        db.submit(worker, page.page, {t: 7 for t in page.tasks}, spec)
    assert isinstance(db.submit(worker, page.page, _labels(db, page.tasks), spec), Submitted)
