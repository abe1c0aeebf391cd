"""Backend ``web``: a self-hosted labeler that people open in a browser.

The campaign lives in one SQLite file, ``WORK/crowd/web/labeler.db`` (WAL mode,
``synchronous=FULL``); ``iris crowd serve`` (:mod:`iris.crowd.web_server`) serves it.

A worker is created by an invitation link (``iris crowd invite N``) or, when
``crowd.web_open_signup`` is on, by the start button. They go through the training page
(answers checked, their own answer shown beside the right one), an exam drawn and ordered
for them from the exam pool (the skill is granted at ``exam_pass``), then main pages of real
tasks with honeypots mixed in.

The rules the store keeps, each inside one ``BEGIN IMMEDIATE`` transaction:

* a page is issued in one transaction: the tasks are chosen and reserved together, so a
  task never has more than ``overlap`` answers plus reservations (answers of banned workers
  do not count when ``reissue_banned``), and a worker never gets the same task twice
  (a unique index backs this up);
* a worker holds at most one pending page (a unique index again); asking again returns it;
* a page is a lease: after ``web_lease_minutes`` it expires, its tasks go back to the queue
  and a late submit is refused with a reason;
* a submit is checked for page ownership, lease, worker stage, ban and campaign stop, and
  its answers are written in the same transaction that checks them. When ``submit`` returns,
  the answers are committed to the WAL with ``synchronous=FULL``: a killed server keeps them.

Quality control runs after each main page with the same rules as every backend; a banned
worker's pending page expires at once and their tasks are re-issued to others.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from iris import tables
from iris.config import Settings
from iris.crowd import quality
from iris.crowd.backends.base import CampaignInputs, CampaignStatus, Collected, Plan, tasks_done
from iris.crowd.pages import assemble_page, pick_honeypots
from iris.crowd.spec import CampaignSpec
from iris.errors import CrowdError

SCHEMA_VERSION = "2"

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL, role TEXT NOT NULL, label INTEGER, priority INTEGER
);
CREATE TABLE IF NOT EXISTS workers (
    worker TEXT PRIMARY KEY, via TEXT NOT NULL, stage TEXT NOT NULL, exam TEXT NOT NULL,
    exam_score REAL, banned_rule TEXT, banned_detail TEXT, banned_at TEXT, banned_until TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS invites (
    token_hash TEXT PRIMARY KEY, created_at TEXT NOT NULL, note TEXT NOT NULL, worker TEXT
);
CREATE TABLE IF NOT EXISTS pages (
    page TEXT PRIMARY KEY, worker TEXT NOT NULL, kind TEXT NOT NULL, tasks TEXT NOT NULL,
    honeypots TEXT NOT NULL, issued_at TEXT NOT NULL, expires_at TEXT NOT NULL,
    state TEXT NOT NULL, closed_at TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS one_pending_page_per_worker ON pages(worker) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS pages_by_state ON pages(state, expires_at);
CREATE TABLE IF NOT EXISTS assignments (
    task INTEGER NOT NULL, worker TEXT NOT NULL, page TEXT NOT NULL, state TEXT NOT NULL,
    PRIMARY KEY (page, task)
);
CREATE UNIQUE INDEX IF NOT EXISTS task_once_per_worker ON assignments(task, worker) WHERE state != 'expired';
CREATE INDEX IF NOT EXISTS assignments_by_task ON assignments(task, state);
CREATE INDEX IF NOT EXISTS items_by_priority ON items(role, priority, id);
CREATE TABLE IF NOT EXISTS answers (
    task INTEGER NOT NULL, worker TEXT NOT NULL, label INTEGER NOT NULL, page TEXT NOT NULL,
    submitted_at TEXT NOT NULL, duration REAL NOT NULL, is_honeypot INTEGER NOT NULL,
    PRIMARY KEY (task, worker, page)
);
CREATE UNIQUE INDEX IF NOT EXISTS real_answer_once_per_worker ON answers(task, worker) WHERE is_honeypot = 0;
CREATE INDEX IF NOT EXISTS answers_by_worker ON answers(worker);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

PageKind = Literal["training", "exam", "main"]
Refusal = Literal["unknown", "not-yours", "submitted", "expired", "banned", "stopped", "stage"]

MAX_ID = 2**63 - 1
"""SQLite integers are signed 64-bit: a larger id cannot name an item."""


def _now() -> datetime:
    return datetime.now(UTC)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class WebOptions:
    """How the labeler hands out pages (from the ``crowd.web_*`` settings)."""

    lease: timedelta = timedelta(minutes=30)
    open_signup: bool = False
    exam_questions: int = 0
    """Exam questions drawn per worker (0 = the whole exam pool), in the worker's own order."""

    @classmethod
    def from_settings(cls, settings: Settings) -> WebOptions:
        c = settings.crowd
        if c.web_lease_minutes <= 0:
            raise CrowdError(f"crowd.web_lease_minutes = {c.web_lease_minutes!r}, expected > 0")
        if c.web_exam_questions < 0:
            raise CrowdError(f"crowd.web_exam_questions = {c.web_exam_questions!r}, expected >= 0")
        return cls(
            lease=timedelta(minutes=c.web_lease_minutes),
            open_signup=c.web_open_signup,
            exam_questions=c.web_exam_questions,
        )


@dataclass(frozen=True)
class IssuedPage:
    """A page handed to a worker: ``kind`` is training, exam or main."""

    page: str
    kind: PageKind
    tasks: list[int]
    honeypots: list[int]
    issued_at: datetime
    expires_at: datetime
    number: int = 1
    """This worker's n-th page of this kind."""


@dataclass(frozen=True)
class Ban:
    rule: str
    detail: str
    at: datetime
    until: datetime


@dataclass(frozen=True)
class WorkerState:
    """Where a worker stands: stage (training, exam, main, failed), exam score, ban."""

    worker: str
    stage: str
    exam_score: float | None
    ban: Ban | None
    created_at: datetime

    @property
    def banned(self) -> bool:
        return self.ban is not None


@dataclass(frozen=True)
class Refused:
    """Why a submit was not saved; ``status`` is the HTTP status to answer with."""

    reason: Refusal
    message: str
    status: int


@dataclass(frozen=True)
class Submitted:
    """What a submission did: how many were right where that is known, and the worker's stage."""

    kind: PageKind
    correct: int
    checked: int
    stage: str
    answers: dict[int, int] = field(default_factory=dict)
    """The worker's answers, task → label."""
    hints: dict[int, int] = field(default_factory=dict)
    """Training only: task → right label, for the ones answered wrongly."""
    ban: Ban | None = None


@dataclass(frozen=True)
class Issue:
    """The outcome of asking for work: a page, or why there is none."""

    page: IssuedPage | None = None
    why: Literal["page", "banned", "failed", "stopped", "done", "wait"] = "page"
    worker: WorkerState | None = None


class LabelerDB:
    """The labeler's state. Every method is one transaction, safe across threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        # Writers of this process queue here rather than in SQLite's busy handler, whose
        # sleeps (up to 100 ms each, no order) made the latency tail long under load.
        self._write_lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._tx() as db:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            version = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            n_items = db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
            if version is None and n_items:
                raise CrowdError(
                    f"{path}: a web campaign from an older iris (no schema version); "
                    "relaunch it with `iris crowd launch --restart`"
                )
            if version is not None and version[0] != SCHEMA_VERSION:
                raise CrowdError(f"{path}: schema {version[0]}, this iris reads {SCHEMA_VERSION}")
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            db.execute("INSERT OR IGNORE INTO meta VALUES ('secret_key', ?)", (secrets.token_hex(32),))
            db.execute("INSERT OR IGNORE INTO meta VALUES ('owner_token', ?)", (secrets.token_urlsafe(24),))

    # --- connections --------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed answer is on disk before the worker hears "saved", so neither
            # a SIGKILL nor a power cut loses it.
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=60000")
            self._local.conn = conn
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: ``BEGIN IMMEDIATE`` takes the write lock before anything is read,
        so what it reads cannot change under it."""
        db = self._conn()
        with self._write_lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: one consistent snapshot (WAL readers never wait for the writer)."""
        db = self._conn()
        db.execute("BEGIN")
        try:
            yield db
        finally:
            db.execute("COMMIT")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

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
        with self._tx() as db:
            db.executemany("INSERT OR IGNORE INTO items VALUES (?, ?, ?, ?, ?)", rows)
            db.execute("INSERT OR IGNORE INTO meta VALUES ('launched_at', ?)", (_now().isoformat(),))

    def meta(self, key: str) -> str | None:
        with self._read() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    @property
    def secret_key(self) -> str:
        return self.meta("secret_key") or ""

    @property
    def owner_token(self) -> str:
        return self.meta("owner_token") or ""

    @property
    def stopped(self) -> bool:
        return self.meta("stopped") == "1"

    def item_path(self, item: int) -> str | None:
        if not 0 <= item <= MAX_ID:
            return None
        with self._read() as db:
            row = db.execute("SELECT path FROM items WHERE id = ?", (item,)).fetchone()
        return None if row is None else str(row[0])

    def examples(self, n: int = 4) -> tuple[list[int], list[int]]:
        """Training image ids of each class (positive, negative) for the instructions."""
        with self._read() as db:
            rows = db.execute("SELECT id, label FROM items WHERE role = 'training' ORDER BY id").fetchall()
        return [i for i, label in rows if label == 1][:n], [i for i, label in rows if label == 0][:n]

    # --- identity -----------------------------------------------------------------------
    def create_invites(self, n: int, *, note: str = "") -> list[str]:
        """``n`` new invitation tokens (only their hashes are stored)."""
        tokens = [secrets.token_urlsafe(18) for _ in range(n)]
        with self._tx() as db:
            db.executemany(
                "INSERT INTO invites VALUES (?, ?, ?, NULL)",
                [(_hash(t), _now().isoformat(), note) for t in tokens],
            )
        return tokens

    def redeem(self, token: str, options: WebOptions) -> str | None:
        """The worker an invitation token belongs to, created on its first use; None when the
        token is unknown. The link stays the worker's personal way back in (another device, a
        lost cookie), so a worker cannot start over as someone new with it."""
        with self._tx() as db:
            row = db.execute("SELECT worker FROM invites WHERE token_hash = ?", (_hash(token),)).fetchone()
            if row is None:
                return None
            if row[0] is not None:
                return str(row[0])
            worker = self._new_worker(db, via="invite", options=options)
            db.execute("UPDATE invites SET worker = ? WHERE token_hash = ?", (worker, _hash(token)))
            return worker

    def signup(self, options: WebOptions) -> str:
        """A new worker through open signup.

        Raises:
            CrowdError: open signup is off.
        """
        if not options.open_signup:
            raise CrowdError("open signup is off; ask the owner for an invitation link")
        with self._tx() as db:
            return self._new_worker(db, via="signup", options=options)

    def _new_worker(self, db: sqlite3.Connection, *, via: str, options: WebOptions) -> str:
        pool = [r[0] for r in db.execute("SELECT id FROM items WHERE role = 'exam' ORDER BY id")]
        has_training = db.execute("SELECT 1 FROM items WHERE role = 'training' LIMIT 1").fetchone()
        n = options.exam_questions or len(pool)
        rng = np.random.default_rng(secrets.randbits(64))
        exam = [int(pool[i]) for i in rng.permutation(len(pool))[:n]]
        while True:
            worker = "w" + secrets.token_hex(5)
            try:
                db.execute(
                    "INSERT INTO workers (worker, via, stage, exam, created_at) VALUES (?, ?, ?, ?, ?)",
                    (
                        worker,
                        via,
                        "training" if has_training else "exam",
                        json.dumps(exam),
                        _now().isoformat(),
                    ),
                )
                return worker
            except sqlite3.IntegrityError:  # pragma: no cover - a 40-bit collision
                continue

    def add_worker(self, options: WebOptions, *, stage: str | None = None) -> str:
        """A new worker without an invitation (tests, benchmarks, the owner labeling alone);
        ``stage`` puts them straight at that stage."""
        with self._tx() as db:
            worker = self._new_worker(db, via="owner", options=options)
            if stage:
                db.execute("UPDATE workers SET stage = ? WHERE worker = ?", (stage, worker))
            return worker

    def worker(self, name: str, *, now: datetime | None = None) -> WorkerState | None:
        with self._read() as db:
            return self._worker(db, name, now or _now())

    @staticmethod
    def _worker(db: sqlite3.Connection, name: str, now: datetime) -> WorkerState | None:
        row = db.execute(
            "SELECT stage, exam_score, banned_rule, banned_detail, banned_at, banned_until, created_at "
            "FROM workers WHERE worker = ?",
            (name,),
        ).fetchone()
        if row is None:
            return None
        ban = None
        if row[5] and datetime.fromisoformat(row[5]) > now:
            ban = Ban(row[2], row[3] or "", datetime.fromisoformat(row[4]), datetime.fromisoformat(row[5]))
        return WorkerState(name, row[0], row[1], ban, datetime.fromisoformat(row[6]))

    def banned(self, name: str, *, now: datetime | None = None) -> str | None:
        """The rule a worker is banned under, or None."""
        state = self.worker(name, now=now)
        return state.ban.rule if state and state.ban else None

    # --- pages --------------------------------------------------------------------------
    @staticmethod
    def _expire(db: sqlite3.Connection, now: datetime, *, worker: str | None = None) -> int:
        """Close pending pages whose lease ran out (or every pending page of ``worker``)."""
        if worker is None:
            rows = db.execute(
                "SELECT page FROM pages WHERE state = 'pending' AND expires_at <= ?", (now.isoformat(),)
            ).fetchall()
        else:
            rows = db.execute(
                "SELECT page FROM pages WHERE state = 'pending' AND worker = ?", (worker,)
            ).fetchall()
        pages = [(r[0],) for r in rows]
        if pages:
            stamp = now.isoformat()
            db.executemany(
                "UPDATE pages SET state = 'expired', closed_at = ? WHERE page = ?",
                [(stamp, p) for (p,) in pages],
            )
            db.executemany("UPDATE assignments SET state = 'expired' WHERE page = ?", pages)
        return len(pages)

    def next_page(
        self, name: str, spec: CampaignSpec, options: WebOptions, *, now: datetime | None = None
    ) -> Issue:
        """The page this worker should answer now, in one write transaction.

        A pending page is handed out again (a worker holds at most one). Otherwise a new
        page is chosen and its tasks reserved before the transaction commits.
        """
        now = now or _now()
        with self._tx() as db:
            self._expire(db, now)
            state = self._worker(db, name, now)
            if state is None:
                raise CrowdError(f"unknown worker {name!r}")
            if state.ban:
                return Issue(why="banned", worker=state)
            if state.stage == "failed":
                return Issue(why="failed", worker=state)
            if self._stopped(db):
                return Issue(why="stopped", worker=state)
            pending = db.execute(
                "SELECT page, kind, tasks, honeypots, issued_at, expires_at FROM pages "
                "WHERE worker = ? AND state = 'pending'",
                (name,),
            ).fetchone()
            if pending:
                number = db.execute(
                    "SELECT COUNT(*) FROM pages WHERE worker = ? AND kind = ? AND state != 'expired'",
                    (name, pending[1]),
                ).fetchone()[0]
                page = IssuedPage(
                    pending[0],
                    pending[1],
                    json.loads(pending[2]),
                    json.loads(pending[3]),
                    datetime.fromisoformat(pending[4]),
                    datetime.fromisoformat(pending[5]),
                    number,
                )
                return Issue(page=page, worker=state)
            if state.stage == "training":
                ids = [r[0] for r in db.execute("SELECT id FROM items WHERE role = 'training' ORDER BY id")]
                return Issue(page=self._issue(db, name, "training", ids, [], now, options), worker=state)
            if state.stage == "exam":
                exam = json.loads(
                    db.execute("SELECT exam FROM workers WHERE worker = ?", (name,)).fetchone()[0]
                )
                return Issue(page=self._issue(db, name, "exam", exam, [], now, options), worker=state)
            tasks = self._tasks_for(db, name, spec)
            if not tasks:
                # Tasks on other people's pages may come back to this worker when they expire.
                waiting = db.execute(
                    "SELECT 1 FROM assignments WHERE state = 'pending' AND task NOT IN "
                    "(SELECT task FROM assignments WHERE worker = ? AND state != 'expired') LIMIT 1",
                    (name,),
                ).fetchone()
                return Issue(why="wait" if waiting else "done", worker=state)
            seen: dict[int, int] = {}
            for (hps,) in db.execute(
                "SELECT honeypots FROM pages WHERE worker = ? AND state != 'expired'", (name,)
            ):
                for hp in json.loads(hps):
                    seen[hp] = seen.get(hp, 0) + 1
            gold = [r[0] for r in db.execute("SELECT id FROM items WHERE role = 'honeypot' ORDER BY id")]
            rng = np.random.default_rng(secrets.randbits(64))
            honeypots = pick_honeypots(gold, n=min(spec.honeypots_per_page, len(gold)), seen=seen, rng=rng)
            order = assemble_page("", tasks, honeypots, rng=rng)
            issued = self._issue(db, name, "main", list(order.tasks), honeypots, now, options)
            db.executemany(
                "INSERT INTO assignments VALUES (?, ?, ?, 'pending')", [(t, name, issued.page) for t in tasks]
            )
            return Issue(page=issued, worker=state)

    @staticmethod
    def _stopped(db: sqlite3.Connection) -> bool:
        row = db.execute("SELECT value FROM meta WHERE key = 'stopped'").fetchone()
        return row is not None and row[0] == "1"

    @staticmethod
    def _tasks_for(db: sqlite3.Connection, name: str, spec: CampaignSpec) -> list[int]:
        """Real tasks whose answers plus reservations are short of ``overlap``, that this
        worker holds or answered nowhere, first by priority."""
        # Walks the tasks in priority order (an index) and stops at a full page; each task's
        # count is an index lookup, so a page costs about the same early and late.
        rows = db.execute(
            """
            SELECT i.id FROM items i
            WHERE i.role = 'task'
              AND (
                SELECT COUNT(*) FROM assignments a LEFT JOIN workers w ON w.worker = a.worker
                WHERE a.task = i.id
                  AND (a.state = 'pending' OR (a.state = 'answered' AND (w.banned_until IS NULL OR ?)))
              ) < ?
              AND NOT EXISTS (
                SELECT 1 FROM assignments m WHERE m.task = i.id AND m.worker = ? AND m.state != 'expired'
              )
            ORDER BY i.priority, i.id LIMIT ?
            """,
            (0 if spec.rules.reissue_banned else 1, spec.overlap, name, spec.real_per_page),
        ).fetchall()
        return [int(r[0]) for r in rows]

    @staticmethod
    def _issue(
        db: sqlite3.Connection,
        name: str,
        kind: PageKind,
        tasks: list[int],
        honeypots: list[int],
        now: datetime,
        options: WebOptions,
    ) -> IssuedPage:
        page = f"{kind}-{secrets.token_hex(8)}"
        expires = now + options.lease
        db.execute(
            "INSERT INTO pages VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', NULL)",
            (
                page,
                name,
                kind,
                json.dumps(tasks),
                json.dumps(honeypots),
                now.isoformat(),
                expires.isoformat(),
            ),
        )
        number = db.execute(
            "SELECT COUNT(*) FROM pages WHERE worker = ? AND kind = ? AND state != 'expired'", (name, kind)
        ).fetchone()[0]
        return IssuedPage(page, kind, tasks, honeypots, now, expires, number)

    def submit(
        self,
        name: str,
        page: str,
        answers: dict[int, int],
        spec: CampaignSpec,
        *,
        now: datetime | None = None,
    ) -> Submitted | Refused:
        """Check every rule and record a page's answers (all of them, or none) in one
        transaction, then grade it or run quality control.

        Returns:
            :class:`Submitted`, or :class:`Refused` saying why nothing was saved (someone
            else's page, an expired lease, a ban, a stopped campaign, the wrong stage).

        Raises:
            CrowdError: answers that do not cover exactly the page's tasks, or labels other
                than 0/1 (the page stays pending, so the worker can fix it).
        """
        now = now or _now()
        with self._tx() as db:
            row = db.execute(
                "SELECT worker, kind, tasks, honeypots, issued_at, expires_at, state FROM pages "
                "WHERE page = ?",
                (page,),
            ).fetchone()
            if row is None:
                return Refused("unknown", "This page does not exist.", 404)
            owner, kind, tasks, honeypots = row[0], row[1], json.loads(row[2]), set(json.loads(row[3]))
            if owner != name:
                return Refused("not-yours", "This page was handed to another worker; it was not saved.", 403)
            if row[6] == "submitted":
                return Refused("submitted", "This page was saved already; nothing was changed.", 409)
            expires = datetime.fromisoformat(row[5])
            state = self._worker(db, name, now)
            if state is None:  # pragma: no cover - a page always has a worker
                return Refused("unknown", "Unknown worker.", 404)
            if state.ban:
                self._expire(db, now, worker=name)
                return Refused(
                    "banned", f"You are banned until {state.ban.until:%Y-%m-%d %H:%M} UTC; not saved.", 403
                )
            if self._stopped(db):
                self._expire(db, now, worker=name)
                return Refused(
                    "stopped", "The owner has stopped this campaign; your answers are not needed.", 409
                )
            if row[6] == "expired" or expires <= now:
                self._expire(db, now)
                minutes = (expires - datetime.fromisoformat(row[4])).total_seconds() / 60
                return Refused(
                    "expired",
                    f"This page expired: pages are kept for {minutes:g} minutes, and its images "
                    "went back to the queue for others. Your answers on it were not saved.",
                    410,
                )
            if (kind, state.stage) not in {("training", "training"), ("exam", "exam"), ("main", "main")}:
                self._expire(db, now, worker=name)
                return Refused("stage", f"A {kind} page, but you are at the {state.stage} stage.", 409)
            if set(answers) != set(tasks):
                missing = len(set(tasks) - set(answers))
                raise CrowdError(
                    f"page {page!r}: {missing} of {len(tasks)} images have no answer"
                    + (
                        f" and {len(set(answers) - set(tasks))} answers are for images not on it"
                        if set(answers) - set(tasks)
                        else ""
                    )
                )
            if any(v not in (0, 1) for v in answers.values()):
                raise CrowdError(f"page {page!r}: labels must be 0 or 1")
            duration = (now - datetime.fromisoformat(row[4])).total_seconds()
            stamp = now.isoformat()
            db.executemany(
                "INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(t, name, answers[t], page, stamp, duration, int(t in honeypots)) for t in tasks],
            )
            db.execute("UPDATE pages SET state = 'submitted', closed_at = ? WHERE page = ?", (stamp, page))
            db.execute("UPDATE assignments SET state = 'answered' WHERE page = ?", (page,))
            known = tasks if kind != "main" else sorted(honeypots)
            marks = ",".join("?" * len(known))
            truth = {
                int(i): int(label)
                for i, label in db.execute(
                    f"SELECT id, label FROM items WHERE label IS NOT NULL AND id IN ({marks})", known
                )
            }
            correct = sum(answers[t] == label for t, label in truth.items())
            stage = state.stage
            if kind == "training":
                stage = "exam"
            elif kind == "exam":
                score = correct / max(len(truth), 1)
                stage = "main" if score >= spec.exam_pass else "failed"
                db.execute("UPDATE workers SET exam_score = ? WHERE worker = ?", (score, name))
            db.execute("UPDATE workers SET stage = ? WHERE worker = ?", (stage, name))
        # Quality control of this worker, before they hear back: the page that earns a ban is
        # the last one saved. It reads a snapshot without holding the write lock (this
        # worker has no other page out, so nothing of theirs changes meanwhile).
        bans = self._check_worker(spec, now, name, page, duration, len(tasks)) if kind == "main" else {}
        hints = {t: label for t, label in truth.items() if answers[t] != label} if kind == "training" else {}
        return Submitted(kind, correct, len(truth), stage, dict(answers), hints, bans.get(name))

    def quality_control(self, spec: CampaignSpec, *, now: datetime | None = None) -> dict[str, Ban]:
        """Apply the quality rules to every answer so far; ban whom they catch (their pending
        page expires at once). Returns worker → ban of the new bans."""
        with self._tx() as db:
            return self._quality_control(db, spec, now or _now())

    def _quality_control(self, db: sqlite3.Connection, spec: CampaignSpec, now: datetime) -> dict[str, Ban]:
        """Evaluate the rules on every answer and ban whom they catch."""
        answers = self._answers(db)
        already = {r[0] for r in db.execute("SELECT worker FROM workers WHERE banned_until IS NOT NULL")}
        bans = quality.evaluate(answers, self._gold(db), spec.rules, now=now, already_banned=already)
        return self._ban(db, bans, now)

    def _ban(self, db: sqlite3.Connection, bans: pl.DataFrame, now: datetime) -> dict[str, Ban]:
        out: dict[str, Ban] = {}
        for ban in bans.iter_rows(named=True):
            db.execute(
                "UPDATE workers SET banned_rule = ?, banned_detail = ?, banned_at = ?, banned_until = ? "
                "WHERE worker = ? AND (banned_until IS NULL OR banned_until <= ?)",
                (
                    ban["rule"],
                    ban["detail"],
                    ban["at"].isoformat(),
                    ban["until"].isoformat(),
                    ban["worker"],
                    now.isoformat(),
                ),
            )
            self._expire(db, now, worker=ban["worker"])
            out[str(ban["worker"])] = Ban(ban["rule"], ban["detail"], ban["at"], ban["until"])
        return out

    def _check_worker(
        self, spec: CampaignSpec, now: datetime, worker: str, page: str, duration: float, n_tasks: int
    ) -> dict[str, Ban]:
        """The rules on one worker after their page ``page``: the fast rule on that page (earlier
        pages were checked when they came in), the honeypot and majority rules on the answers
        to the tasks this worker answered, which is all they need about them. So a submit costs
        what the worker did, not what the whole campaign did; a rule that cannot fire yet (too
        few answers for its window, or a threshold of 0) is not evaluated."""
        rules = spec.rules
        fast = rules.fast
        threshold = fast.min_seconds * (min(n_tasks / fast.page_size, 1.0) if fast.page_size else 1.0)
        bans = pl.DataFrame(schema=quality.BANS)
        if duration < threshold:
            bans = pl.DataFrame(
                [
                    {
                        "worker": worker,
                        "rule": "fast",
                        "detail": f"page {page} in {duration:.1f}s < {threshold:.3g}s",
                        "at": now,
                        "until": now + timedelta(days=fast.ban_days),
                    }
                ],
                schema=quality.BANS,
            )
        else:
            with self._read() as db:
                hp, real = db.execute(
                    "SELECT COALESCE(SUM(a.is_honeypot), 0), COALESCE(SUM(1 - a.is_honeypot), 0) "
                    "FROM answers a JOIN pages p ON p.page = a.page WHERE a.worker = ? AND p.kind = 'main'",
                    (worker,),
                ).fetchone()
                honeypot_can = rules.honeypot.min_accuracy > 0 and hp >= rules.honeypot.window
                majority_can = rules.majority.min_agreement > 0 and real >= rules.majority.window
                skill_can = rules.skill.on and hp + real >= rules.skill.min_answers
                if not (honeypot_can or majority_can or skill_can):
                    return {}
                answers = self._answers(db, worker=worker)
                already = {
                    r[0] for r in db.execute("SELECT worker FROM workers WHERE banned_until IS NOT NULL")
                }
                gold = self._gold(db)
            no_fast = replace(rules, fast=replace(fast, min_seconds=0.0))
            bans = quality.evaluate(answers, gold, no_fast, now=now, already_banned=already)
            bans = bans.filter(pl.col("worker") == worker)
            if not bans.height:
                return {}
        with self._tx() as db:
            return self._ban(db, bans, now)

    @staticmethod
    def _gold(db: sqlite3.Connection) -> pl.DataFrame:
        return pl.DataFrame(
            db.execute("SELECT id, label FROM items WHERE role = 'honeypot'").fetchall(),
            schema={"task": pl.Int64, "label": pl.Int8},
            orient="row",
        )

    # --- reading back -------------------------------------------------------------------
    def answers(self) -> pl.DataFrame:
        """ANSWERS table of the main pages (honeypot answers included)."""
        with self._read() as db:
            return self._answers(db)

    @staticmethod
    def _answers(db: sqlite3.Connection, *, worker: str | None = None) -> pl.DataFrame:
        """ANSWERS of the main pages; with ``worker``, every answer on the tasks that worker answered."""
        where, args = "", []
        if worker is not None:
            where, args = " AND a.task IN (SELECT task FROM answers WHERE worker = ?)", [worker]
        rows = db.execute(
            "SELECT a.task, a.worker, a.label, a.page, a.submitted_at, a.duration, a.is_honeypot "
            "FROM answers a JOIN pages p ON p.page = a.page WHERE p.kind = 'main'"
            + where
            + " ORDER BY a.submitted_at, a.page, a.task",
            args,
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
        with self._read() as db:
            rows = db.execute(
                "SELECT worker, banned_rule, banned_detail, banned_at, banned_until FROM workers "
                "WHERE banned_until IS NOT NULL ORDER BY banned_at, worker"
            ).fetchall()
        if not rows:
            return pl.DataFrame(schema=quality.BANS)
        return pl.DataFrame(
            [
                {
                    "worker": w,
                    "rule": rule,
                    "detail": detail or f"banned by rule {rule}",
                    "at": datetime.fromisoformat(at),
                    "until": datetime.fromisoformat(until),
                }
                for w, rule, detail, at, until in rows
            ],
            schema=quality.BANS,
        )

    def counts(self) -> dict[str, int]:
        with self._read() as db:
            one = lambda sql: int(db.execute(sql).fetchone()[0])  # noqa: E731
            return {
                "pages": one("SELECT COUNT(*) FROM pages WHERE kind = 'main' AND state = 'submitted'"),
                "exams": one("SELECT COUNT(*) FROM pages WHERE kind = 'exam' AND state = 'submitted'"),
                "pending": one("SELECT COUNT(*) FROM pages WHERE state = 'pending'"),
                "expired": one("SELECT COUNT(*) FROM pages WHERE state = 'expired'"),
                "workers": one("SELECT COUNT(*) FROM workers"),
                "banned": one("SELECT COUNT(*) FROM workers WHERE banned_until IS NOT NULL"),
                "tasks": one("SELECT COUNT(*) FROM items WHERE role = 'task'"),
                "invites": one("SELECT COUNT(*) FROM invites"),
                "invites_used": one("SELECT COUNT(*) FROM invites WHERE worker IS NOT NULL"),
            }

    def pending_pages(self, *, now: datetime | None = None) -> list[dict[str, Any]]:
        """Pages handed out and not yet submitted: page, worker, kind, tasks, age and time left (s)."""
        now = now or _now()
        with self._read() as db:
            rows = db.execute(
                "SELECT page, worker, kind, tasks, issued_at, expires_at FROM pages WHERE state = 'pending' "
                "ORDER BY issued_at"
            ).fetchall()
        return [
            {
                "page": page,
                "worker": worker,
                "kind": kind,
                "tasks": len(json.loads(tasks)),
                "issued_at": issued,
                "age_s": round((now - datetime.fromisoformat(issued)).total_seconds(), 1),
                "expires_in_s": round((datetime.fromisoformat(expires) - now).total_seconds(), 1),
            }
            for page, worker, kind, tasks, issued, expires in rows
        ]

    def worker_table(self, spec: CampaignSpec, *, now: datetime | None = None) -> list[dict[str, Any]]:
        """One row per worker: stage, exam score, answers, honeypot accuracy, agreement with
        the others' majority, and the ban with its reason."""
        now = now or _now()
        with self._read() as db:
            answers = self._answers(db)
            gold = self._gold(db)
            workers = db.execute(
                "SELECT worker, via, stage, exam_score, banned_rule, banned_detail, banned_until, created_at "
                "FROM workers ORDER BY created_at, worker"
            ).fetchall()
        banned = {w[0] for w in workers if w[6]}
        hp = {r["worker"]: r for r in quality.honeypot_accuracy(answers, gold).iter_rows(named=True)}
        agr = {
            r["worker"]: r
            for r in quality.majority_agreement(
                answers, ignore=banned, min_others=spec.rules.majority.min_others
            ).iter_rows(named=True)
        }
        per_worker = answers.filter(~pl.col("is_honeypot")).group_by("worker").len()
        n_answers = dict(zip(per_worker["worker"].to_list(), per_worker["len"].to_list(), strict=True))
        pages = answers.group_by("worker").agg(pl.col("page").n_unique())
        n_pages = dict(zip(pages["worker"].to_list(), pages["page"].to_list(), strict=True))
        rows = []
        for worker, via, stage, exam_score, rule, detail, until, created in workers:
            active = bool(until) and datetime.fromisoformat(until) > now
            rows.append(
                {
                    "worker": worker,
                    "via": via,
                    "stage": stage,
                    "exam_score": exam_score,
                    "pages": n_pages.get(worker, 0),
                    "answers": n_answers.get(worker, 0),
                    "honeypots": hp[worker]["honeypots"] if worker in hp else 0,
                    "honeypot_accuracy": hp[worker]["accuracy"] if worker in hp else None,
                    "agreement": agr[worker]["agreement"] if worker in agr else None,
                    "banned": active,
                    "ban_rule": rule,
                    "ban_detail": detail,
                    "banned_until": until,
                    "created_at": created,
                }
            )
        return rows


class WebBackend:
    """Backend ``web``: ``launch`` loads the campaign into SQLite; people answer through
    ``iris crowd serve``; ``collect`` reads what they submitted."""

    name = "web"

    def __init__(self, *, settings: Settings, state_dir: Path) -> None:
        self.settings = settings
        self.state_dir = state_dir

    @property
    def path(self) -> Path:
        return self.state_dir / "labeler.db"

    @property
    def db(self) -> LabelerDB:
        return LabelerDB(self.path)

    def plan(self, inputs: CampaignInputs) -> Plan:
        spec = inputs.spec
        WebOptions.from_settings(self.settings)
        if inputs.role("honeypot").height < spec.honeypots_per_page:
            raise CrowdError(
                f"web labeler: {inputs.role('honeypot').height} honeypots, "
                f"a page needs {spec.honeypots_per_page}"
            )
        return Plan.of(
            self.name,
            inputs,
            [
                f"SQLite campaign at {self.path}",
                "serve it with `iris crowd serve`, invite people with `iris crowd invite N`",
            ],
        )

    def launch(self, inputs: CampaignInputs) -> CampaignStatus:
        self.db.load(inputs)
        return self.status(inputs)

    def status(self, inputs: CampaignInputs) -> CampaignStatus:
        if not self.path.exists():
            return CampaignStatus(backend=self.name, state="not-launched", tasks_total=inputs.tasks.height)
        db = self.db
        counts = db.counts()
        answers = db.answers()
        banned = set(db.bans()["worker"].to_list()) if inputs.spec.rules.reissue_banned else set()
        done = tasks_done(answers, overlap=inputs.spec.overlap, ignore_workers=banned)
        state = "stopped" if db.stopped else "complete" if done >= inputs.tasks.height else "running"
        work = f"iris -w {inputs.root}"
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
            detail={
                "pending_pages": counts["pending"],
                "expired_pages": counts["expired"],
                "invites": counts["invites"],
                "invites_used": counts["invites_used"],
                "next_step": (
                    f"serve it with `{work} crowd serve`, invite people with `{work} crowd invite 10`"
                    + (" (none invited yet)" if not counts["invites"] else "")
                ),
            },
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
