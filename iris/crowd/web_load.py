"""A scripted crowd for the web labeler: people as HTTP clients, for load tests and benchmarks.

:func:`make_campaign` builds a small web campaign whose images carry their answer in their
colour (reddish = positive), so a scripted worker that *looks* at an image answers it
right, as a careful person would. :class:`ScriptedWorker` walks the labeler over plain
HTTP/1.1 (keep-alive, its own cookie): invitation link, training, exam, then pages until
there are none. :func:`run_crowd` runs many at once in threads and times every request;
:func:`audit` then reads the SQLite file and checks what the labeler promises.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import numpy as np
import polars as pl
from PIL import Image

from iris import tables
from iris.config import Settings, render_toml
from iris.workdir import Workdir, init_workdir


def load_settings_for(
    *, page_size: int = 10, overlap: int = 3, training: int = 4, exam: int = 4, lease_minutes: float = 30.0
) -> Settings:
    """Web-campaign settings for scripted workers: small pages, quality rules that never fire
    on honest workers (answers come back within milliseconds)."""
    base = Settings()
    crowd = replace(
        base.crowd,
        backend="web",
        training=training,
        exam=exam,
        exam_pass=0.75,
        overlap=overlap,
        page_size=page_size,
        honeypots_per_page=1,
        min_seconds_per_page=0.0,
        min_honeypot_accuracy=0.0,
        min_majority_agreement=0.0,
        web_lease_minutes=lease_minutes,
    )
    return replace(base, crowd=crowd, task=replace(base.task, positive_name="red", negative_name="blue"))


def make_campaign(
    root: Path, *, tasks: int, honeypots: int = 12, settings: Settings | None = None, seed: int = 0
) -> Workdir:
    """A launched web campaign in ``root`` with ``tasks`` pool images to label.

    Images are 16×24 (not square, to show the true aspect ratio) in red or blue tones; the
    ground truth is training + exam + ``honeypots`` images.
    """
    from iris.crowd import campaign

    settings = settings or load_settings_for()
    workdir = init_workdir(root, settings=settings, force=True)
    rng = np.random.default_rng(seed)
    n_gt = settings.crowd.training + settings.crowd.exam + honeypots
    rows = []
    for i in range(n_gt + tasks):
        label = int(rng.integers(0, 2))
        pixels = rng.integers(0, 90, (24, 16, 3), dtype=np.uint8)
        pixels[..., 0 if label else 2] += 150
        rel = f"images/{i + 1}.png"
        Image.fromarray(pixels).save(workdir.root / rel)
        split = "gt" if i < n_gt else "pool"
        rows.append(
            {
                "id": i + 1,
                "source": f"img{i}.png",
                "path": rel,
                "split": split,
                "label": label if split == "gt" else None,
                "width": 16,
                "height": 24,
                "sha256": f"{i:064x}",
            }
        )
    tables.write(pl.DataFrame(rows, schema=tables.IMAGES), workdir.table("images"))
    pool = [r["id"] for r in rows if r["split"] == "pool"]
    shortlist = pl.DataFrame(
        {
            "id": pool,
            "reason": ["problematic"] * len(pool),
            "problematic_neighbours": [0] * len(pool),
            "priority": list(range(len(pool))),
        },
        schema=tables.SHORTLIST,
    )
    tables.write(shortlist, workdir.table("shortlist"))
    workdir.config.write_text(render_toml(settings), encoding="utf-8")
    campaign.launch(workdir, settings)
    return workdir


def look(png: bytes) -> int:
    """What a careful person answers for one of :func:`make_campaign`'s images."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int32)
    return int(pixels[..., 0].mean() > pixels[..., 2].mean())


# --- a server in a child process ---------------------------------------------------------
@dataclass
class ServerProcess:
    """``iris crowd serve`` in a child process (so it can be SIGKILLed)."""

    workdir: Workdir
    port: int = 0
    proc: subprocess.Popen[str] | None = None
    url: str = ""

    def start(self, timeout_s: float = 60.0) -> ServerProcess:
        cmd = [sys.executable, "-m", "iris", "-w", str(self.workdir.root), "crowd", "serve"]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ}
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        lines = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            found = re.search(r"iris labeler at (http://127\.0\.0\.1:(\d+))/", line)
            if found:
                self.url, self.port = found.group(1), int(found.group(2))
                threading.Thread(target=self._drain, daemon=True).start()
                _wait_healthy(self.url, deadline)
                return self
        self.kill()
        raise RuntimeError("labeler server did not start:\n" + "".join(lines))

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for _ in self.proc.stdout:
            pass

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)


def _wait_healthy(url: str, deadline: float) -> None:
    parts = urlsplit(url)
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=5)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url}/healthz never answered")


# --- scripted workers --------------------------------------------------------------------
PAGE_RE = re.compile(r"name='page' value='([^']+)'")
KIND_RE = re.compile(r"data-kind='(\w+)'")
SLOT_RE = re.compile(r"name='a(\d+)' value='1'")
TESTID_RE = re.compile(r"data-testid='(saved|banned|failed|done|wait|stopped|score|refused-[a-z-]+)'")


@dataclass
class Acked:
    """A submit the server answered with success: these answers must be in the database."""

    worker: str
    page: str
    kind: str
    answers: dict[int, int]
    """slot → label."""


@dataclass
class WorkerLog:
    latencies: list[float] = field(default_factory=list)
    acked: list[Acked] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    outcome: str = ""
    requests: int = 0


class ScriptedWorker:
    """One person over HTTP/1.1 keep-alive, with their own session cookie."""

    def __init__(self, url: str, invite: str, *, look_main: bool = True, timeout_s: float = 60.0) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.invite = invite
        self.look_main = look_main
        self.timeout_s = timeout_s
        self.cookie = ""
        self.name = urlsplit(invite).path.rsplit("/", 1)[-1][:8]
        self.log = WorkerLog()
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: str | None = None) -> tuple[int, bytes]:
        headers = {"Cookie": self.cookie} if self.cookie else {}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
            start = time.perf_counter()
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected) as exc:
                # A keep-alive connection the server closed while it was idle: reconnect once.
                # A POST is sent again only when it could not even be written.
                self.conn.close()
                self.conn = None
                if attempt or (method == "POST" and not isinstance(exc, BrokenPipeError)):
                    raise
                continue
            self.log.latencies.append(time.perf_counter() - start)
            self.log.requests += 1
            cookie = response.getheader("set-cookie")
            if cookie:
                self.cookie = cookie.split(";", 1)[0]
            if response.getheader("connection", "").lower() == "close":
                self.conn.close()
                self.conn = None
            return response.status, data
        raise AssertionError("unreachable")  # pragma: no cover

    def run(self, *, max_requests: int = 2000, wait_s: float = 0.05, max_waits: int = 200) -> WorkerLog:
        """Walk the labeler until there is nothing left (bounded by ``max_requests``)."""
        try:
            status, _ = self.request("GET", urlsplit(self.invite).path)
            if status not in (200, 303):
                self.log.outcome = f"join {status}"
                return self.log
            waits = 0
            while self.log.requests < max_requests:
                status, body = self.request("GET", "/work")
                text = body.decode()
                page = PAGE_RE.search(text)
                if page is None:
                    marker = TESTID_RE.search(text)
                    outcome = marker.group(1) if marker else f"http {status}"
                    if outcome == "wait" and waits < max_waits:
                        waits += 1
                        time.sleep(wait_s)
                        continue
                    self.log.outcome = outcome
                    return self.log
                waits = 0
                self.answer(page.group(1), KIND_RE.search(text).group(1), text)  # type: ignore[union-attr]
            self.log.outcome = "max-requests"
        except (OSError, http.client.HTTPException) as exc:  # the server went away mid-answer
            self.log.errors.append(f"{type(exc).__name__}: {exc}")
            self.log.outcome = "connection-lost"
        finally:
            if self.conn:
                self.conn.close()
        return self.log

    def answer(self, page: str, kind: str, text: str) -> None:
        slots = [int(s) for s in SLOT_RE.findall(text)]
        answers: dict[int, int] = {}
        for slot in slots:
            if kind != "main" or self.look_main:
                status, png = self.request("GET", f"/img/{page}/{slot}")
                answers[slot] = look(png) if status == 200 else 1
            else:
                answers[slot] = 1
        form = urlencode({"page": page, **{f"a{s}": v for s, v in answers.items()}})
        status, body = self.request("POST", "/submit", form)
        if status == 200:
            self.log.acked.append(Acked(self.name, page, kind, answers))
        else:
            marker = TESTID_RE.search(body.decode())
            self.log.errors.append(f"submit {status} {marker.group(1) if marker else ''}")


@dataclass
class CrowdRun:
    logs: list[WorkerLog]
    seconds: float

    @property
    def latencies(self) -> np.ndarray:
        return np.array([x for log in self.logs for x in log.latencies])

    @property
    def requests(self) -> int:
        return sum(log.requests for log in self.logs)

    @property
    def acked(self) -> list[Acked]:
        return [a for log in self.logs for a in log.acked]

    def summary(self) -> dict[str, Any]:
        lat = self.latencies
        return {
            "workers": len(self.logs),
            "requests": self.requests,
            "seconds": round(self.seconds, 2),
            "requests_per_s": round(self.requests / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": round(float(np.percentile(lat, 50)) * 1000, 1) if lat.size else None,
            "p99_ms": round(float(np.percentile(lat, 99)) * 1000, 1) if lat.size else None,
            "acked_pages": len(self.acked),
            "outcomes": {
                o: sum(1 for g in self.logs if g.outcome == o) for o in {g.outcome for g in self.logs}
            },
        }


def run_crowd(
    url: str,
    invites: list[str],
    *,
    look_main: bool = True,
    during: Callable[[list[ScriptedWorker]], None] | None = None,
    max_requests: int = 2000,
) -> CrowdRun:
    """Every invitation walked by its own worker thread, all at once.

    Args:
        during: called in the main thread while the workers run (to kill the server, say).
    """
    workers = [ScriptedWorker(url, link, look_main=look_main) for link in invites]
    barrier = threading.Barrier(len(workers))

    def go(w: ScriptedWorker) -> None:
        barrier.wait()
        w.run(max_requests=max_requests)

    threads = [threading.Thread(target=go, args=(w,), daemon=True) for w in workers]
    start = time.perf_counter()
    for t in threads:
        t.start()
    if during:
        during(workers)
    for t in threads:
        t.join(timeout=600)
    return CrowdRun([w.log for w in workers], time.perf_counter() - start)


# --- what the database proves ------------------------------------------------------------
def audit(db_path: Path, *, overlap: int, acked: list[Acked] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    """Read the labeler's SQLite file and count every broken promise (all zero when sound).

    Returns:
        answers, tasks_over_overlap, max_answers_per_task, duplicate_answers,
        worker_task_twice, pages_with_wrong_count, acked_missing, acked_wrong_label,
        orphan_answers, pending_pages_per_worker_over_1, assignments_over_overlap.
    """
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        one = lambda sql: db.execute(sql).fetchone()[0]  # noqa: E731
        per_task = dict(
            db.execute(
                "SELECT a.task, COUNT(*) FROM answers a JOIN pages p ON p.page = a.page "
                "JOIN workers w ON w.worker = a.worker "
                "WHERE p.kind = 'main' AND a.is_honeypot = 0 AND w.banned_until IS NULL GROUP BY a.task"
            ).fetchall()
        )
        reserved = dict(
            db.execute(
                "SELECT a.task, COUNT(*) FROM assignments a JOIN workers w ON w.worker = a.worker "
                "WHERE a.state = 'pending' OR (a.state = 'answered' AND w.banned_until IS NULL) "
                "GROUP BY a.task"
            ).fetchall()
        )
        pages = {
            page: (worker, json.loads(tasks))
            for page, worker, tasks in db.execute(
                "SELECT page, worker, tasks FROM pages WHERE state = 'submitted'"
            ).fetchall()
        }
        got: dict[str, dict[int, int]] = {}
        for task, page, label in db.execute("SELECT task, page, label FROM answers"):
            got.setdefault(page, {})[task] = label
        missing = wrong = 0
        for ack in acked:
            if ack.page not in pages:
                missing += len(ack.answers)
                continue
            tasks = pages[ack.page][1]
            for slot, label in ack.answers.items():
                task = tasks[slot]
                if task not in got.get(ack.page, {}):
                    missing += 1
                elif got[ack.page][task] != label:
                    wrong += 1
        return {
            "answers": one(
                "SELECT COUNT(*) FROM answers a JOIN pages p ON p.page = a.page WHERE p.kind = 'main'"
            ),
            "tasks_answered": len(per_task),
            "max_answers_per_task": max(per_task.values(), default=0),
            "tasks_over_overlap": sum(n > overlap for n in per_task.values()),
            "assignments_over_overlap": sum(n > overlap for n in reserved.values()),
            "duplicate_answers": one(
                "SELECT COUNT(*) - (SELECT COUNT(*) FROM (SELECT DISTINCT task, worker, page FROM answers)) "
                "FROM answers"
            ),
            "worker_task_twice": one(
                "SELECT COUNT(*) FROM (SELECT task, worker FROM answers WHERE is_honeypot = 0 "
                "GROUP BY task, worker HAVING COUNT(*) > 1)"
            ),
            "pages_with_wrong_count": sum(
                len(got.get(page, {})) != len(set(tasks)) for page, (_w, tasks) in pages.items()
            ),
            "orphan_answers": one(
                "SELECT COUNT(*) FROM answers a LEFT JOIN pages p ON p.page = a.page "
                "WHERE p.page IS NULL OR p.state != 'submitted'"
            ),
            "pending_pages_per_worker_over_1": one(
                "SELECT COUNT(*) FROM (SELECT worker FROM pages WHERE state = 'pending' "
                "GROUP BY worker HAVING COUNT(*) > 1)"
            ),
            "acked_pages": len(acked),
            "acked_missing": missing,
            "acked_wrong_label": wrong,
        }
    finally:
        db.close()


BROKEN = (
    "tasks_over_overlap",
    "assignments_over_overlap",
    "duplicate_answers",
    "worker_task_twice",
    "pages_with_wrong_count",
    "orphan_answers",
    "pending_pages_per_worker_over_1",
    "acked_missing",
    "acked_wrong_label",
)
"""The keys of :func:`audit` that must be zero."""


@contextmanager
def serve_in_thread(workdir: Workdir, settings: Settings) -> Iterator[str]:
    """The labeler served by uvicorn in a background thread of this process; yields its URL."""
    from iris.crowd.web_server import bind, make_server

    server = make_server(workdir, settings)
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
