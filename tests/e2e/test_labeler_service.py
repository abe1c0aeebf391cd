"""The web labeler as a service over real HTTP on 127.0.0.1: load, races, SIGKILL, hostile clients.

Every server here listens on the loopback interface only; every client loop is bounded.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from click.testing import CliRunner

from iris.cli import main
from iris.config import Settings
from iris.crowd import campaign
from iris.crowd import stage as crowd_stage
from iris.crowd.backends.web import LabelerDB
from iris.crowd.web_load import (
    BROKEN,
    PAGE_RE,
    ScriptedWorker,
    ServerProcess,
    audit,
    load_settings_for,
    make_campaign,
    run_crowd,
    serve_in_thread,
)
from iris.crowd.web_server import describe, invite_links
from iris.workdir import Workdir

pytestmark = pytest.mark.slow


def _settings(**crowd: object) -> Settings:
    base = load_settings_for(page_size=10, overlap=3)
    return replace(base, crowd=replace(base.crowd, **crowd))  # type: ignore[arg-type]


def _db(workdir: Workdir) -> LabelerDB:
    return LabelerDB(workdir.crowd / "web" / "labeler.db")


@pytest.fixture
def small(tmp_path: Path) -> Iterator[tuple[Workdir, Settings, str]]:
    settings = _settings(web_timeout_s=1.0)
    workdir = make_campaign(tmp_path / "work", tasks=30, settings=settings)
    with serve_in_thread(workdir, settings) as url:
        yield workdir, settings, url


@pytest.fixture
def short_lease(tmp_path: Path) -> Iterator[tuple[Workdir, Settings, str]]:
    settings = _settings(web_lease_minutes=0.03)  # 1.8 s
    workdir = make_campaign(tmp_path / "work", tasks=30, settings=settings)
    with serve_in_thread(workdir, settings) as url:
        yield workdir, settings, url


def _port(url: str) -> int:
    return urlsplit(url).port or 80


def _raw(url: str, data: bytes, *, timeout: float = 10.0) -> bytes:
    """Send raw bytes, return everything the server answers until it closes (or the timeout)."""
    with socket.create_connection(("127.0.0.1", _port(url)), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
        return b"".join(chunks)


def _joined(url: str, workdir: Workdir, settings: Settings, *, stage: str | None = None) -> ScriptedWorker:
    worker = ScriptedWorker(url, invite_links(workdir, settings, 1, base_url=url)[0])
    status, _ = worker.request("GET", urlsplit(worker.invite).path)
    assert status == 303 and worker.cookie.startswith("iris_worker=")
    if stage:
        token_hash = hashlib.sha256(urlsplit(worker.invite).path.rsplit("/", 1)[1].encode()).hexdigest()
        with _db(workdir)._tx() as con:
            con.execute(
                "UPDATE workers SET stage = ? WHERE worker = (SELECT worker FROM invites WHERE "
                "token_hash = ?)",
                (stage, token_hash),
            )
    return worker


def _current_page(worker: ScriptedWorker) -> tuple[str, str]:
    status, body = worker.request("GET", "/work")
    text = body.decode()
    found = PAGE_RE.search(text)
    assert status == 200 and found, text[:500]
    return found.group(1), text


# --- load, race, kill ---------------------------------------------------------------------
def test_fifty_workers_over_http_lose_nothing_and_never_exceed_the_overlap(tmp_path: Path) -> None:
    settings = _settings()
    workdir = make_campaign(tmp_path / "work", tasks=300, settings=settings)
    server = ServerProcess(workdir).start()
    try:
        links = invite_links(workdir, settings, 50, base_url=server.url)
        run = run_crowd(server.url, links, look_main=False)
    finally:
        server.stop()
    report = audit(workdir.crowd / "web" / "labeler.db", overlap=3, acked=run.acked)
    assert {k: report[k] for k in BROKEN} == dict.fromkeys(BROKEN, 0)
    assert report["tasks_answered"] == 300 and report["max_answers_per_task"] == 3
    assert report["answers"] == 900 + report["acked_pages"] - 100  # 900 real + one honeypot per main page
    assert all(log.outcome == "done" and not log.errors for log in run.logs)
    assert campaign.status(workdir, settings).state == "complete"
    print("\nlabeler load:", run.summary())


def test_ten_workers_asking_for_pages_at_the_same_instant_over_http(
    small: tuple[Workdir, Settings, str],
) -> None:
    workdir, settings, url = small  # 30 tasks x 3 = 90 slots, 10 workers x 9 asked
    workers = [_joined(url, workdir, settings, stage="main") for _ in range(10)]
    barrier = threading.Barrier(10)
    pages: dict[int, str] = {}

    def ask(i: int, w: ScriptedWorker) -> None:
        barrier.wait()
        pages[i] = _current_page(w)[0]

    threads = [threading.Thread(target=ask, args=(i, w)) for i, w in enumerate(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(pages.values())) == 10
    report = audit(workdir.crowd / "web" / "labeler.db", overlap=3)
    assert report["assignments_over_overlap"] == 0
    with _db(workdir)._read() as con:
        per_task = [n for (n,) in con.execute("SELECT COUNT(*) FROM assignments GROUP BY task")]
        per_worker = con.execute(
            "SELECT COUNT(*) FROM (SELECT task, worker FROM assignments GROUP BY task, worker "
            "HAVING COUNT(*) > 1)"
        ).fetchone()[0]
    # Served one after another: nine pages fill 27 tasks to the overlap, the tenth gets the 3 left.
    assert sorted(per_task) == [1] * 3 + [3] * 27 and per_worker == 0


def test_a_sigkilled_server_keeps_every_acknowledged_answer(tmp_path: Path) -> None:
    settings = _settings()
    workdir = make_campaign(tmp_path / "work", tasks=200, settings=settings)
    server = ServerProcess(workdir).start()
    links = invite_links(workdir, settings, 30, base_url=server.url)

    def kill_midway(workers: list[ScriptedWorker]) -> None:
        deadline = time.monotonic() + 120
        while sum(len(w.log.acked) for w in workers) < 60 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.kill()  # SIGKILL while the others are mid-request

    first = run_crowd(server.url, links, look_main=False, during=kill_midway)
    db_path = workdir.crowd / "web" / "labeler.db"
    after_kill = audit(db_path, overlap=3, acked=first.acked)
    assert after_kill["acked_pages"] >= 60
    assert {k: after_kill[k] for k in BROKEN} == dict.fromkeys(BROKEN, 0)
    assert any(log.outcome == "connection-lost" for log in first.logs)

    # The same people come back (their links sign them in again) and finish the campaign.
    again = ServerProcess(workdir, port=server.port).start()
    try:
        second = run_crowd(again.url, links, look_main=False)
    finally:
        again.stop()
    final = audit(db_path, overlap=3, acked=first.acked + second.acked)
    assert {k: final[k] for k in BROKEN} == dict.fromkeys(BROKEN, 0)
    assert final["tasks_answered"] == 200 and final["max_answers_per_task"] == 3
    assert all(log.outcome == "done" for log in second.logs)


# --- each defect -------------------------------------------------------------------------
def test_an_expired_page_is_refused_politely_over_http(short_lease: tuple[Workdir, Settings, str]) -> None:
    workdir, settings, url = short_lease
    worker = _joined(url, workdir, settings, stage="main")
    page, text = _current_page(worker)
    assert "data-expires=" in text
    owner = {"Authorization": f"Bearer {_db(workdir).owner_token}"}
    pending = _get_json(url, "/api/pending", owner)["pending"]
    assert [p["page"] for p in pending] == [page] and pending[0]["age_s"] >= 0
    time.sleep(2.0)
    status, body = worker.request(
        "POST", "/submit", urlencode({"page": page, **{f"a{i}": 1 for i in range(10)}})
    )
    assert status == 410 and b"refused-expired" in body and b"went back to the queue" in body
    assert b"href='/work'" in body  # not a dead end
    new_page, _ = _current_page(worker)
    assert new_page != page


def test_a_stolen_page_is_refused_over_http(small: tuple[Workdir, Settings, str]) -> None:
    workdir, settings, url = small
    alice, mallory = (_joined(url, workdir, settings, stage="main") for _ in range(2))
    page, _ = _current_page(alice)
    form = urlencode({"page": page, **{f"a{i}": 1 for i in range(10)}})
    status, body = mallory.request("POST", "/submit", form)
    assert status == 403 and b"refused-not-yours" in body
    status, _ = mallory.request("GET", f"/img/{page}/0")
    assert status == 404  # nor can anyone else see its images
    forged = ScriptedWorker(url, alice.invite)
    forged.cookie = alice.cookie[:-4] + "AAAA"
    assert forged.request("POST", "/submit", form)[0] == 401
    assert _db(workdir).answers().height == 0


def test_a_banned_worker_sees_why_for_how_long_and_what_next(tmp_path: Path) -> None:
    settings = _settings(min_seconds_per_page=1000.0)
    workdir = make_campaign(tmp_path / "work", tasks=30, settings=settings)
    with serve_in_thread(workdir, settings) as url:
        worker = _joined(url, workdir, settings, stage="main")
        page, _ = _current_page(worker)
        status, body = worker.request(
            "POST", "/submit", urlencode({"page": page, **{f"a{i}": 1 for i in range(10)}})
        )
        text = body.decode()
        assert status == 403 and "data-testid='banned'" in text
        assert "faster than anyone" in text and "until" in text and "come back" in text
        status, body = worker.request("GET", "/work")
        assert status == 403 and b"data-testid='banned'" in body


def test_after_stop_no_training_exam_or_page_is_taken(small: tuple[Workdir, Settings, str]) -> None:
    workdir, settings, url = small
    busy = _joined(url, workdir, settings, stage="main")
    page, _ = _current_page(busy)
    campaign.stop(workdir, settings)
    newcomer = _joined(url, workdir, settings)
    status, body = newcomer.request("GET", "/work")
    assert status == 200 and b"data-testid='stopped'" in body and b"page-form" not in body
    status, body = busy.request(
        "POST", "/submit", urlencode({"page": page, **{f"a{i}": 1 for i in range(10)}})
    )
    assert status == 409 and b"refused-stopped" in body
    assert _db(workdir).answers().height == 0


def test_a_64_mb_body_is_refused_before_it_is_read(small: tuple[Workdir, Settings, str]) -> None:
    url = small[2]
    head = (
        "POST /submit HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {64 * 1024 * 1024}\r\n\r\n"
    ).encode()
    answer = _raw(url, head + b"a" * 65536)
    assert answer.startswith(b"HTTP/1.1 413")
    # Without a Content-Length (chunked), the limit holds while reading.
    with socket.create_connection(("127.0.0.1", _port(url)), timeout=10) as sock:
        sock.sendall(b"POST /signup HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"10000\r\n" + b"a" * 65536 + b"\r\n"
        try:
            for _ in range(64):
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert sock.recv(65536).startswith(b"HTTP/1.1 413")
    assert _raw(url, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").endswith(b"ok\n")


def test_slow_clients_are_cut_off_and_hold_nobody_else_up(small: tuple[Workdir, Settings, str]) -> None:
    url = small[2]  # web_timeout_s = 1
    slow = []
    for _ in range(40):  # half-sent headers
        sock = socket.create_connection(("127.0.0.1", _port(url)), timeout=10)
        sock.sendall(b"POST /submit HTTP/1.1\r\nHost: x\r\n")
        slow.append(sock)
    body_slow = socket.create_connection(("127.0.0.1", _port(url)), timeout=10)
    body_slow.sendall(b"POST /signup HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
    # Others are served while the 41 slow ones hang.
    assert _raw(url, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").endswith(b"ok\n")
    for sock in slow:
        answer = sock.recv(1024)  # blocks until the server gives up on it (10 s socket timeout)
        assert answer.startswith(b"HTTP/1.1 408") or answer == b""
        sock.close()
    assert body_slow.recv(65536).startswith(b"HTTP/1.1 408")
    body_slow.close()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"POST /submit HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", b"400"),
        (b"GET /img/abc/99999999999999999999999999 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"401"),
        (b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Bad: " + b"a" * 20000 + b"\r\n\r\n", b"431"),
        (b"NONSENSE\r\n\r\n", b"400"),
    ],
    ids=["content-length-abc", "overflowing-id-anonymous", "non-utf8-path", "huge-header", "garbage"],
)
def test_malformed_requests_get_an_answer(
    small: tuple[Workdir, Settings, str], request_bytes: bytes, status: bytes
) -> None:
    answer = _raw(small[2], request_bytes)
    assert answer.split(b" ", 2)[1] == status, answer[:200]


def test_malformed_forms_of_a_signed_in_worker_get_an_answer(small: tuple[Workdir, Settings, str]) -> None:
    workdir, settings, url = small
    worker = _joined(url, workdir, settings, stage="main")
    page, _ = _current_page(worker)
    cookie = worker.cookie.encode()
    for body, expected in [
        (b"page=" + page.encode() + b"&a0=\xff\xfe", b"400"),  # not UTF-8
        (f"page={page}&a99999999999999999999999=1".encode(), b"400"),  # overflowing slot
        (f"page={page}&a0=99999999999999999999999".encode(), b"400"),  # overflowing label
        (f"page={page}&a12=1".encode(), b"400"),  # a slot not on the page
        (f"page={page}&a0=1".encode(), b"400"),  # incomplete
        (b"page=" + b"p" * 5000, b"400"),
    ]:
        head = (
            b"POST /submit HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: " + cookie + b"\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
        )
        answer = _raw(url, head + body)
        assert answer.split(b" ", 2)[1] == expected, (body[:60], answer[:300])
        assert b"href='/work'" in answer  # every error page leads back
    status, _ = worker.request("GET", f"/img/{page}/99999999999999999999999999")
    assert status == 404
    assert _db(workdir).answers().height == 0


def test_path_traversal_serves_nothing_outside_the_work_directory(
    small: tuple[Workdir, Settings, str],
) -> None:
    workdir, settings, url = small
    worker = _joined(url, workdir, settings, stage="main")
    page, _ = _current_page(worker)
    secret = workdir.root.parent / "secret.png"
    secret.write_bytes(b"\x89PNG not for you")
    for path in [
        "/static/..%2F..%2Fbackends%2Fweb.py",
        "/static/../../../../etc/passwd",
        "/img/..%2F..%2F..%2Fetc/passwd",
        f"/img/{page}/..%2F..%2Fsecret.png",
        "/example/..%2F1",
        "/%2e%2e/%2e%2e/etc/passwd",
    ]:
        status, body = worker.request("GET", path)
        assert status == 404 and b"root:" not in body and b"not for you" not in body, path
    # Even a tampered campaign file cannot point an image outside the work directory.
    with _db(workdir)._tx() as con:
        first = con.execute("SELECT tasks FROM pages WHERE page = ?", (page,)).fetchone()[0]
        task = int(first.strip("[]").split(",")[0])
        con.execute("UPDATE items SET path = '../secret.png' WHERE id = ?", (task,))
    status, body = worker.request("GET", f"/img/{page}/0")
    assert status == 404 and b"not for you" not in body


def test_owner_pages_and_the_api_need_the_owner_token(small: tuple[Workdir, Settings, str]) -> None:
    workdir, settings, url = small
    token = _db(workdir).owner_token
    worker = _joined(url, workdir, settings)
    for path in ["/owner", "/api/status", "/api/workers", "/api/pending"]:
        assert worker.request("GET", path)[0] == 401, path
    assert worker.request("GET", "/owner?token=wrong")[0] == 401
    assert _get_json(url, "/api/status", {"Authorization": f"Bearer {token}"})["tasks"] == 30
    owner = ScriptedWorker(url, "/")
    status, _ = owner.request("GET", f"/owner?token={token}")
    assert status == 303 and owner.cookie.startswith("iris_owner=")
    status, body = owner.request("GET", "/owner")
    assert status == 200 and b"data-testid='workers'" in body and b"data-testid='pending'" in body
    anonymous = ScriptedWorker(url, "/")
    assert anonymous.request("GET", "/work")[0] == 401
    status, body = anonymous.request("GET", "/")
    assert status == 200 and b"invite-only" in body and b"name='viewport'" in body


def test_open_signup_when_asked_for(tmp_path: Path) -> None:
    settings = _settings(web_open_signup=True)
    workdir = make_campaign(tmp_path / "work", tasks=9, settings=settings)
    with serve_in_thread(workdir, settings) as url:
        person = ScriptedWorker(url, "/")
        assert b"data-testid='signup'" in person.request("GET", "/")[1]
        status, _ = person.request("POST", "/signup", "")
        assert status == 303 and person.cookie
        status, body = person.request("GET", "/work")
        assert status == 200 and b"data-kind='training'" in body


def test_invite_and_serve_say_where_and_who(tmp_path: Path) -> None:
    settings = _settings()
    workdir = make_campaign(tmp_path / "work", tasks=9, settings=settings)
    result = CliRunner().invoke(main, ["-w", str(workdir.root), "crowd", "invite", "3"])
    assert result.exit_code == 0, result.output
    links = [line for line in result.output.splitlines() if "/join/" in line]
    assert len(links) == 3 and all(line.startswith("http://127.0.0.1:8080/join/") for line in links)
    assert _db(workdir).counts()["invites"] == 3
    lines = describe(workdir, settings, "127.0.0.1", 8080)
    assert "127.0.0.1 only" in lines[1] and "/owner?token=" in lines[2]
    assert "anyone who can reach this machine" in describe(workdir, settings, "0.0.0.0", 8080)[1]


def test_a_default_run_launches_the_web_campaign_and_says_how_to_go_on(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["init", str(tmp_path / "fresh")])
    assert result.exit_code == 0 and 'backend = "web"' in (tmp_path / "fresh" / "iris.toml").read_text()
    settings = _settings()
    workdir = make_campaign(tmp_path / "work", tasks=9, settings=settings)
    report = crowd_stage.run_campaign(workdir, settings)
    assert report.state == "running" and report.tasks_done == 0
    assert "crowd serve" in report.next_step and "crowd invite" in report.next_step


def _get_json(url: str, path: str, headers: dict[str, str]) -> dict:  # type: ignore[type-arg]
    conn = http.client.HTTPConnection("127.0.0.1", _port(url), timeout=10)
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    assert response.status == 200
    data = json.loads(response.read())
    conn.close()
    return data


def test_a_failed_exam_says_why_for_how_long_and_what_next(small: tuple[Workdir, Settings, str]) -> None:
    workdir, settings, url = small
    worker = _joined(url, workdir, settings, stage="exam")
    page, text = _current_page(worker)
    assert "data-kind='exam'" in text
    with _db(workdir)._read() as con:
        tasks = json.loads(con.execute("SELECT tasks FROM pages WHERE page = ?", (page,)).fetchone()[0])
        truth = dict(con.execute("SELECT id, label FROM items WHERE role = 'exam'").fetchall())
    wrong = urlencode({"page": page, **{f"a{i}": 1 - truth[t] for i, t in enumerate(tasks)}})
    status, body = worker.request("POST", "/submit", wrong)
    text = body.decode()
    assert status == 200 and "data-testid='failed'" in text
    assert "0%" in text and "75% were needed" in text and "cannot be taken again" in text
    status, body = worker.request("GET", "/work")
    assert b"data-testid='failed'" in body and b"page-form" not in body
