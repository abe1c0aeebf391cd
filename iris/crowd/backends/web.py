"""Backend ``web``: a self-hosted labeler that people open in a browser.

The campaign lives in one SQLite file, ``WORK/crowd/web/labeler.db``; ``iris crowd serve``
(``iris.crowd.web_server``) serves it and every answer is written the moment it is
submitted, so nothing collected is lost when the server stops. A worker goes through the
training page (answers checked, with the right answer shown as a hint), the exam (the
skill is granted at ``exam_pass``), then main pages of real tasks with honeypots mixed in.
Quality control runs after each submitted page with the same rules as every backend;
a banned worker is shown a notice and their tasks are re-issued to others.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from iris import tables
from iris.config import Settings
from iris.crowd import quality
from iris.crowd.backends.base import CampaignInputs, CampaignStatus, Collected, Plan, tasks_done
from iris.crowd.pages import assemble_page, pick_honeypots
from iris.errors import CrowdError

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL, role TEXT NOT NULL, label INTEGER, priority INTEGER
);
CREATE TABLE IF NOT EXISTS workers (
    worker TEXT PRIMARY KEY, stage TEXT NOT NULL, exam_score REAL, banned_rule TEXT,
    banned_until TEXT, created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pages (
    page TEXT PRIMARY KEY, worker TEXT NOT NULL, kind TEXT NOT NULL, tasks TEXT NOT NULL,
    honeypots TEXT NOT NULL, issued_at TEXT NOT NULL, submitted_at TEXT
);
CREATE TABLE IF NOT EXISTS answers (
    task INTEGER NOT NULL, worker TEXT NOT NULL, label INTEGER NOT NULL, page TEXT NOT NULL,
    submitted_at TEXT NOT NULL, duration REAL NOT NULL, is_honeypot INTEGER NOT NULL,
    PRIMARY KEY (task, worker, page)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class IssuedPage:
    """A page handed to a worker: ``kind`` is training, exam or main."""

    page: str
    kind: str
    tasks: list[int]
    honeypots: list[int]


@dataclass(frozen=True)
class Submitted:
    """What a submission did: how many were right where that is known, and the worker's stage."""

    kind: str
    correct: int
    checked: int
    stage: str
    hints: dict[int, int]
    """Training only: task → right label, for the ones answered wrongly."""
    banned: str | None = None


class LabelerDB:
    """The labeler's state. Every method is one transaction, safe across server threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level="IMMEDIATE")
        db.execute("PRAGMA journal_mode=WAL")
        try:
            yield db
            db.commit()
        finally:
            db.close()

    # --- campaign set-up -------------------------------------------------------------
    def load(self, inputs: CampaignInputs) -> None:
        """Insert the tasks and the ground truth; re-loading the same campaign adds nothing."""
        rows: list[tuple[int, str, str, int | None, int | None]] = [
            (int(r["id"]), r["path"], "task", None, int(r["priority"]))
            for r in inputs.tasks.iter_rows(named=True)
        ]
        rows += [
            (int(r["id"]), r["path"], r["role"], int(r["label"]), None)
            for r in inputs.ground_truth.iter_rows(named=True)
        ]
        with self._connect() as db:
            db.executemany("INSERT OR IGNORE INTO items VALUES (?, ?, ?, ?, ?)", rows)
            db.execute("INSERT OR IGNORE INTO meta VALUES ('launched_at', ?)", (_now().isoformat(),))

    def meta(self, key: str) -> str | None:
        with self._connect() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def item_path(self, item: int) -> str | None:
        with self._connect() as db:
            row = db.execute("SELECT path FROM items WHERE id = ?", (item,)).fetchone()
        return None if row is None else str(row[0])

    # --- workers ------------------------------------------------------------------------
    def worker(self, name: str) -> dict[str, Any]:
        """The worker's record, created at the training stage on first sight."""
        with self._connect() as db:
            db.execute(
                "INSERT OR IGNORE INTO workers (worker, stage, created_at) VALUES (?, 'training', ?)",
                (name, _now().isoformat()),
            )
            cur = db.execute("SELECT * FROM workers WHERE worker = ?", (name,))
            names = [c[0] for c in cur.description]
            return dict(zip(names, cur.fetchone(), strict=True))

    def banned(self, name: str, *, now: datetime | None = None) -> str | None:
        """The rule a worker is banned under, or None."""
        record = self.worker(name)
        until = record["banned_until"]
        if until and datetime.fromisoformat(until) > (now or _now()):
            return str(record["banned_rule"])
        return None

    # --- pages --------------------------------------------------------------------------
    def next_page(self, name: str, spec: Any, *, seed: int = 0) -> IssuedPage | None:
        """The page this worker should answer now (an unsubmitted one is handed out again);
        None when the worker has nothing left to do."""
        stage = self.worker(name)["stage"]
        if stage == "failed" or self.banned(name):
            return None
        with self._connect() as db:
            pending = db.execute(
                "SELECT page, kind, tasks, honeypots FROM pages WHERE worker = ? AND submitted_at IS NULL",
                (name,),
            ).fetchone()
            if pending:
                return IssuedPage(pending[0], pending[1], json.loads(pending[2]), json.loads(pending[3]))
            if stage in ("training", "exam"):
                ids = [r[0] for r in db.execute("SELECT id FROM items WHERE role = ? ORDER BY id", (stage,))]
                return self._issue(db, name, stage, ids, [])
            tasks = self._tasks_for(db, name, spec)
            if not tasks:
                return None
            seen: dict[int, int] = {}
            for (hps,) in db.execute("SELECT honeypots FROM pages WHERE worker = ?", (name,)):
                for hp in json.loads(hps):
                    seen[hp] = seen.get(hp, 0) + 1
            gold = [r[0] for r in db.execute("SELECT id FROM items WHERE role = 'honeypot' ORDER BY id")]
            n_pages = db.execute("SELECT COUNT(*) FROM pages").fetchone()[0]
            rng = np.random.default_rng([seed, n_pages])
            honeypots = pick_honeypots(gold, n=min(spec.honeypots_per_page, len(gold)), seen=seen, rng=rng)
            page = assemble_page("", tasks, honeypots, rng=rng)
            return self._issue(db, name, "main", list(page.tasks), honeypots)

    @staticmethod
    def _tasks_for(db: sqlite3.Connection, name: str, spec: Any) -> list[int]:
        """Real tasks still short of ``overlap`` valid answers (counting pages handed out and
        not yet submitted), that this worker has not seen, first by priority."""
        rows = db.execute(
            """
            WITH valid AS (
                SELECT a.task FROM answers a JOIN workers w ON w.worker = a.worker
                WHERE a.is_honeypot = 0 AND (w.banned_until IS NULL OR ?)
            ), pending AS (
                SELECT value AS task FROM pages, json_each(pages.tasks)
                WHERE pages.submitted_at IS NULL AND pages.kind = 'main'
            ), counts AS (
                SELECT task, COUNT(*) AS n FROM (SELECT task FROM valid UNION ALL SELECT task FROM pending)
                GROUP BY task
            ), mine AS (
                SELECT value AS task FROM pages, json_each(pages.tasks) WHERE pages.worker = ?
            )
            SELECT i.id FROM items i LEFT JOIN counts c ON c.task = i.id
            WHERE i.role = 'task' AND COALESCE(c.n, 0) < ? AND i.id NOT IN (SELECT task FROM mine)
            ORDER BY i.priority, i.id LIMIT ?
            """,
            (0 if spec.rules.reissue_banned else 1, name, spec.overlap, spec.real_per_page),
        ).fetchall()
        return [int(r[0]) for r in rows]

    @staticmethod
    def _issue(
        db: sqlite3.Connection, name: str, kind: str, tasks: list[int], honeypots: list[int]
    ) -> IssuedPage:
        page = f"{kind}-{uuid.uuid4().hex[:12]}"
        db.execute(
            "INSERT INTO pages VALUES (?, ?, ?, ?, ?, ?, NULL)",
            (page, name, kind, json.dumps(tasks), json.dumps(honeypots), _now().isoformat()),
        )
        return IssuedPage(page, kind, tasks, honeypots)

    def labels(self, ids: list[int]) -> dict[int, int]:
        with self._connect() as db:
            marks = ",".join("?" * len(ids))
            rows = db.execute(f"SELECT id, label FROM items WHERE label IS NOT NULL AND id IN ({marks})", ids)
            return {int(i): int(label) for i, label in rows}

    def submit(self, name: str, page: str, answers: dict[int, int], spec: Any) -> Submitted:
        """Record a page's answers (all of them, or none), then grade or run quality control.

        Raises:
            CrowdError: unknown page, someone else's page, already submitted, or answers that
                do not cover exactly the page's tasks.
        """
        now = _now()
        with self._connect() as db:
            row = db.execute(
                "SELECT worker, kind, tasks, honeypots, issued_at, submitted_at FROM pages WHERE page = ?",
                (page,),
            ).fetchone()
            if row is None or row[0] != name:
                raise CrowdError(f"page {page!r} was not handed to worker {name!r}")
            if row[5] is not None:
                raise CrowdError(f"page {page!r} was submitted already")
            kind, tasks, honeypots = row[1], json.loads(row[2]), set(json.loads(row[3]))
            if set(answers) != set(tasks):
                raise CrowdError(
                    f"page {page!r}: answers for {len(answers)} tasks, expected all {len(tasks)}"
                )
            if any(v not in (0, 1) for v in answers.values()):
                raise CrowdError(f"page {page!r}: labels must be 0 or 1")
            duration = (now - datetime.fromisoformat(row[4])).total_seconds()
            db.executemany(
                "INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(t, name, answers[t], page, now.isoformat(), duration, int(t in honeypots)) for t in tasks],
            )
            db.execute("UPDATE pages SET submitted_at = ? WHERE page = ?", (now.isoformat(), page))
        truth = self.labels([t for t in tasks if kind != "main" or t in honeypots])
        correct = sum(answers[t] == label for t, label in truth.items())
        stage = "main"
        if kind == "training":
            stage = "exam"
        elif kind == "exam":
            score = correct / max(len(truth), 1)
            stage = "main" if score >= spec.exam_pass else "failed"
            with self._connect() as db:
                db.execute("UPDATE workers SET exam_score = ? WHERE worker = ?", (score, name))
        with self._connect() as db:
            db.execute("UPDATE workers SET stage = ? WHERE worker = ?", (stage, name))
        hints = {t: label for t, label in truth.items() if answers[t] != label} if kind == "training" else {}
        banned = self._quality_control(spec, now) if kind == "main" else None
        return Submitted(kind, correct, len(truth), stage, hints, banned.get(name) if banned else None)

    def _quality_control(self, spec: Any, now: datetime) -> dict[str, str]:
        answers = self.answers()
        with self._connect() as db:
            already = {r[0] for r in db.execute("SELECT worker FROM workers WHERE banned_until IS NOT NULL")}
            gold = pl.DataFrame(
                db.execute("SELECT id, label FROM items WHERE role = 'honeypot'").fetchall(),
                schema={"task": pl.Int64, "label": pl.Int8},
                orient="row",
            )
        bans = quality.evaluate(answers, gold, spec.rules, now=now, already_banned=already)
        with self._connect() as db:
            for ban in bans.iter_rows(named=True):
                db.execute(
                    "UPDATE workers SET banned_rule = ?, banned_until = ? WHERE worker = ?",
                    (ban["rule"], ban["until"].isoformat(), ban["worker"]),
                )
        return {str(b["worker"]): str(b["rule"]) for b in bans.iter_rows(named=True)}

    # --- reading back -------------------------------------------------------------------
    def answers(self) -> pl.DataFrame:
        """ANSWERS table of the main pages (honeypot answers included)."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT a.task, a.worker, a.label, a.page, a.submitted_at, a.duration, a.is_honeypot "
                "FROM answers a JOIN pages p ON p.page = a.page WHERE p.kind = 'main' "
                "ORDER BY a.submitted_at, a.page, a.task"
            ).fetchall()
        frame = pl.DataFrame(
            rows,
            schema={
                "task": pl.Int64,
                "worker": pl.String,
                "label": pl.Int8,
                "page": pl.String,
                "submitted_at": pl.String,
                "duration": pl.Float64,
                "is_honeypot": pl.Int8,
            },
            orient="row",
        )
        return frame.with_columns(
            pl.col("submitted_at").str.to_datetime(time_zone="UTC", time_unit="us"),
            pl.col("is_honeypot").cast(pl.Boolean),
        )

    def bans(self) -> pl.DataFrame:
        with self._connect() as db:
            rows = db.execute(
                "SELECT worker, banned_rule, banned_until FROM workers WHERE banned_until IS NOT NULL"
            ).fetchall()
        if not rows:
            return pl.DataFrame(schema=quality.BANS)
        return pl.DataFrame(
            [
                {
                    "worker": w,
                    "rule": rule,
                    "detail": f"banned by rule {rule}",
                    "at": _now(),
                    "until": datetime.fromisoformat(until),
                }
                for w, rule, until in rows
            ],
            schema=quality.BANS,
        )

    def counts(self) -> dict[str, int]:
        with self._connect() as db:
            return {
                "pages": db.execute(
                    "SELECT COUNT(*) FROM pages WHERE kind = 'main' AND submitted_at IS NOT NULL"
                ).fetchone()[0],
                "workers": db.execute("SELECT COUNT(*) FROM workers").fetchone()[0],
                "banned": db.execute(
                    "SELECT COUNT(*) FROM workers WHERE banned_until IS NOT NULL"
                ).fetchone()[0],
                "tasks": db.execute("SELECT COUNT(*) FROM items WHERE role = 'task'").fetchone()[0],
            }


class WebBackend:
    """Backend ``web``: ``launch`` loads the campaign into SQLite; people answer through
    ``iris crowd serve``; ``collect`` reads what they submitted."""

    name = "web"

    def __init__(self, *, settings: Settings, state_dir: Path) -> None:
        self.settings = settings
        self.state_dir = state_dir

    @property
    def db(self) -> LabelerDB:
        return LabelerDB(self.state_dir / "labeler.db")

    def plan(self, inputs: CampaignInputs) -> Plan:
        spec = inputs.spec
        if inputs.role("honeypot").height < spec.honeypots_per_page:
            raise CrowdError(
                f"web labeler: {inputs.role('honeypot').height} honeypots, "
                f"a page needs {spec.honeypots_per_page}"
            )
        return Plan.of(
            self.name,
            inputs,
            [
                f"SQLite campaign at {self.state_dir / 'labeler.db'}",
                "serve it with `iris crowd serve` and send people its address",
            ],
        )

    def launch(self, inputs: CampaignInputs) -> CampaignStatus:
        self.db.load(inputs)
        return self.status(inputs)

    def status(self, inputs: CampaignInputs) -> CampaignStatus:
        if not (self.state_dir / "labeler.db").exists():
            return CampaignStatus(backend=self.name, state="not-launched", tasks_total=inputs.tasks.height)
        db = self.db
        counts = db.counts()
        answers = db.answers()
        banned = set(db.bans()["worker"].to_list())
        done = tasks_done(answers, overlap=inputs.spec.overlap, ignore_workers=banned)
        stopped = db.meta("stopped") == "1"
        state = "stopped" if stopped else "complete" if done >= inputs.tasks.height else "running"
        return CampaignStatus(
            backend=self.name,
            state=state,  # type: ignore[arg-type]
            pages=counts["pages"],
            answers=answers.height,
            tasks_total=inputs.tasks.height,
            tasks_done=done,
            workers=counts["workers"],
            banned=counts["banned"],
            cost=counts["pages"] * inputs.spec.price_per_page,
        )

    def collect(self, inputs: CampaignInputs) -> Collected:
        db = self.db
        answers = db.answers()
        bans = db.bans()
        if inputs.spec.rules.reject_banned and bans.height:
            answers = answers.filter(~pl.col("worker").is_in(bans["worker"].to_list()))
        return Collected(answers=answers.select(list(tables.ANSWERS)), bans=bans)

    def stop(self, inputs: CampaignInputs) -> CampaignStatus:
        self.db.set_meta("stopped", "1")
        return self.status(inputs)
