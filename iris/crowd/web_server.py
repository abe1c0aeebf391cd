"""The self-hosted labeler: a Starlette app under uvicorn over the ``web`` backend's SQLite campaign.

``iris crowd serve`` runs it (``services/labeler`` holds the container). Pages:

==========================  =================================================================
``GET /join/<token>``        an invitation link: signs the worker in (a signed cookie)
``POST /signup``             open signup (only when ``crowd.web_open_signup`` is on)
``GET /``                    the instructions, with examples
``GET /work``                the worker's current page (training, exam, main) or why there is none
``POST /submit``             a page's answers; every rule is checked again here
``GET /img/<page>/<slot>``   the images of the worker's own pages (ids never reach the browser)
``GET /owner``               the owner's dashboard (owner token: ``?token=``, cookie or Bearer)
``GET /api/status|workers|pending``   the same figures as JSON, owner token required
``GET /healthz``             liveness for docker
==========================  =================================================================

The HTTP layer is uvicorn's h11 protocol with a listen backlog of 2048, a header limit of
16 KiB, a time limit on receiving a request's headers (``crowd.web_timeout_s``; uvicorn
itself has none) and, in the app, on its body, and a body-size limit (``crowd.web_max_body_kb``)
checked on ``Content-Length`` before anything is read and again while reading.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import mimetypes
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

import h11
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from iris.config import Settings
from iris.crowd.backends.web import (
    MAX_ID,
    Ban,
    IssuedPage,
    LabelerDB,
    Refused,
    Submitted,
    WebOptions,
)
from iris.crowd.instructions import render_instructions
from iris.crowd.spec import CampaignSpec
from iris.errors import CrowdError
from iris.workdir import Workdir

WORKER_COOKIE = "iris_worker"
OWNER_COOKIE = "iris_owner"
SESSION_DAYS = 90
BACKLOG = 2048
MAX_CONNECTIONS = 2000
"""Connections beyond this get 503 at once rather than a slow death of all of them."""
MAX_HEADER_BYTES = 16 * 1024

RULES = {
    "fast": "pages were submitted faster than anyone can look at the images",
    "honeypot": "too many wrong answers on the control images whose answer is known",
    "majority": "your answers kept disagreeing with what most other people answered",
}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        # Inline styles stay allowed for owners' instruction templates; scripts only from here.
        "default-src 'self'; img-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self'; "
        "frame-ancestors 'none'"
    ),
}


class HttpProblem(Exception):
    """A request the labeler answers with an error page (status, title, message)."""

    def __init__(self, status: int, title: str, message: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.status, self.title, self.message, self.close = status, title, message, close


def _static(name: str) -> bytes:
    return resources.files("iris.crowd").joinpath("static", name).read_bytes()


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _when(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _span(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} hours"
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


@dataclass
class Limits:
    max_body: int = 256 * 1024
    timeout_s: float = 30.0


class LabelerApp:
    """The labeler's pages over one :class:`LabelerDB`."""

    def __init__(self, workdir: Workdir, settings: Settings, db: LabelerDB) -> None:
        self.workdir = workdir
        self.root = workdir.root.resolve()
        self.spec = CampaignSpec.from_settings(settings)
        self.options = WebOptions.from_settings(settings)
        self.limits = Limits(settings.crowd.web_max_body_kb * 1024, settings.crowd.web_timeout_s)
        self.db = db
        secret = db.secret_key
        self.owner_token = db.owner_token
        self.worker_cookie = URLSafeTimedSerializer(secret, salt="iris-worker")
        self.owner_cookie = URLSafeTimedSerializer(secret, salt="iris-owner")
        self.css = _static("labeler.css")
        self.js = _static("labeler.js")

    # --- plumbing -----------------------------------------------------------------------
    def html(
        self,
        title: str,
        body: str,
        *,
        status: int = 200,
        where: str = "",
        lease: datetime | None = None,
        refresh: int = 0,
        script: bool = False,
    ) -> HTMLResponse:
        lease_html = (
            f"<span class='lease' data-expires='{lease.isoformat()}'>page kept for you until "
            f"{_when(lease)}</span>"
            if lease
            else ""
        )
        doc = (
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            + (f"<meta http-equiv='refresh' content='{refresh}'>" if refresh else "")
            + f"<title>{_e(title)}</title><link rel='stylesheet' href='/static/labeler.css'></head><body>"
            f"<header class='top'><span class='brand'>iris labeler</span>"
            f"<span class='where'>{_e(where)}</span>{lease_html}</header>"
            f"<main>{body}</main>"
            + ("<script src='/static/labeler.js'></script>" if script or lease else "")
            + "</body></html>"
        )
        return HTMLResponse(
            doc, status_code=status, headers={"Cache-Control": "no-store", **SECURITY_HEADERS}
        )

    def problem(self, exc: HttpProblem) -> HTMLResponse:
        body = (
            f"<h1>{_e(exc.title)}</h1><div class='card-box notice bad'><p data-testid='problem'>"
            f"{_e(exc.message)}</p><p><a class='button' href='/work'>Back to my page</a> "
            "<a class='button secondary' href='/'>Instructions</a></p></div>"
        )
        response = self.html(exc.title, body, status=exc.status)
        if exc.close:
            response.headers["Connection"] = "close"
        return response

    def session_worker(self, request: Request) -> str | None:
        cookie = request.cookies.get(WORKER_COOKIE)
        if not cookie:
            return None
        try:
            worker = self.worker_cookie.loads(cookie, max_age=SESSION_DAYS * 86400)
        except BadSignature:
            return None
        return worker if isinstance(worker, str) else None

    async def require_worker(self, request: Request) -> str:
        worker = self.session_worker(request)
        if worker is None or await run_in_threadpool(self.db.worker, worker) is None:
            raise HttpProblem(
                401,
                "Not signed in",
                "Open the invitation link you were sent to sign in"
                + (", or start from the home page." if self.options.open_signup else "."),
            )
        return worker

    def is_owner(self, request: Request) -> bool:
        token = self.owner_token
        given = request.query_params.get("token") or ""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if given and secrets.compare_digest(given.encode(), token.encode()):
            return True
        cookie = request.cookies.get(OWNER_COOKIE)
        if cookie:
            try:
                return self.owner_cookie.loads(cookie, max_age=SESSION_DAYS * 86400) == token[:8]
            except BadSignature:
                return False
        return False

    def require_owner(self, request: Request) -> None:
        if not self.is_owner(request):
            raise HttpProblem(
                401,
                "Owner token needed",
                "This page is for the campaign's owner: open the dashboard link that "
                "`iris crowd serve` printed, or send the token as `Authorization: Bearer …`.",
            )

    def set_worker_cookie(self, response: Response, request: Request, worker: str) -> None:
        response.set_cookie(
            WORKER_COOKIE,
            self.worker_cookie.dumps(worker),
            max_age=SESSION_DAYS * 86400,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )

    async def read_form(self, request: Request) -> dict[str, list[str]]:
        """The url-encoded body, within the size and time limits.

        Raises:
            HttpProblem: 413 too large, 408 too slow, 400 not UTF-8 or not a form.
        """
        length = request.headers.get("content-length")
        limit = self.limits.max_body
        if length is not None and (not length.isdigit() or int(length) > limit):
            if not length.isdigit():
                raise HttpProblem(400, "Bad request", "Content-Length is not a number.", close=True)
            raise HttpProblem(
                413, "Too large", f"A request body may be at most {limit // 1024} KiB.", close=True
            )
        chunks: list[bytes] = []
        size = 0

        async def receive() -> None:
            nonlocal size
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise HttpProblem(
                        413, "Too large", f"A request body may be at most {limit // 1024} KiB.", close=True
                    )
                chunks.append(chunk)

        try:
            await asyncio.wait_for(receive(), timeout=self.limits.timeout_s)
        except TimeoutError:
            raise HttpProblem(
                408, "Too slow", "The request body did not arrive in time; please try again.", close=True
            ) from None
        try:
            text = b"".join(chunks).decode("utf-8")
            return parse_qs(text, keep_blank_values=True, strict_parsing=False, max_num_fields=2000)
        except (UnicodeDecodeError, ValueError):
            raise HttpProblem(
                400, "Bad request", "The form could not be read (not UTF-8 or too many fields)."
            ) from None

    # --- worker pages -------------------------------------------------------------------
    async def home(self, request: Request) -> Response:
        worker = self.session_worker(request)
        if worker and await run_in_threadpool(self.db.worker, worker) is None:
            worker = None
        pos, neg = await run_in_threadpool(self.db.examples)
        examples = worker is not None
        instructions = render_instructions(
            self.spec,
            positive_examples=[f"/example/{i}" for i in range(len(pos))] if examples else [],
            negative_examples=[f"/example/{len(pos) + i}" for i in range(len(neg))] if examples else [],
        )
        if worker:
            action = "<p><a class='button' href='/work' data-testid='start'>Start</a></p>"
        elif self.options.open_signup:
            action = (
                "<form method='post' action='/signup'><button class='primary' type='submit' "
                "data-testid='signup'>Join and start</button></form>"
            )
        else:
            action = (
                "<p class='card-box notice' data-testid='invite-only'>Taking part is by invitation: open the "
                "link you were sent. The example images show once you are signed in.</p>"
            )
        body = f"<h1>Instructions</h1><div class='card-box'>{instructions}</div>{action}"
        return self.html("Instructions", body, where="instructions")

    async def example(self, request: Request) -> Response:
        await self.require_worker(request)
        n = _small_int(request.path_params["n"])
        pos, neg = await run_in_threadpool(self.db.examples)
        ids = pos + neg
        if n is None or n >= len(ids):
            raise HttpProblem(404, "Not found", "No such example.")
        return await self.image_file(ids[n])

    async def join(self, request: Request) -> Response:
        token = request.path_params["token"]
        worker = await run_in_threadpool(self.db.redeem, token, self.options) if len(token) < 100 else None
        if worker is None:
            raise HttpProblem(
                404, "Unknown invitation", "This invitation link is not valid; ask the owner for a new one."
            )
        response = RedirectResponse("/", status_code=303)
        self.set_worker_cookie(response, request, worker)
        return response

    async def signup(self, request: Request) -> Response:
        await self.read_form(request)
        try:
            worker = await run_in_threadpool(self.db.signup, self.options)
        except CrowdError as exc:
            raise HttpProblem(403, "By invitation only", str(exc)) from None
        response = RedirectResponse("/", status_code=303)
        self.set_worker_cookie(response, request, worker)
        return response

    async def work(self, request: Request) -> Response:
        worker = await self.require_worker(request)
        issue = await run_in_threadpool(self.db.next_page, worker, self.spec, self.options)
        if issue.why == "banned" and issue.worker and issue.worker.ban:
            return self.ban_page(issue.worker.ban)
        if issue.why == "failed":
            score = issue.worker.exam_score if issue.worker else None
            return self.failed_page(score)
        if issue.why == "stopped":
            return self.html(
                "Campaign stopped",
                "<h1>Campaign stopped</h1><div class='card-box notice' data-testid='stopped'><p>The "
                "owner has "
                "stopped this campaign: there is nothing more to label. Thank you for your help.</p></div>",
                where="stopped",
            )
        if issue.why == "done":
            return self.html(
                "Done",
                "<h1>All done</h1><div class='card-box notice good' data-testid='done'><p>There is nothing "
                "more for you to label in this campaign. Thank you!</p></div>",
                where="done",
            )
        if issue.why == "wait":
            minutes = self.options.lease.total_seconds() / 60
            return self.html(
                "Nothing right now",
                "<h1>Nothing for you right now</h1><div class='card-box notice wait' data-testid='wait'><p>"
                "The images still open are on other people's pages. A page that is not finished within "
                f"{minutes:g} minutes goes back to the queue.</p><p><a class='button' href='/work'>Try again"
                "</a></p></div>",
                where="waiting",
                refresh=60,
            )
        assert issue.page is not None
        return self.page_form(issue.page)

    def page_form(self, page: IssuedPage) -> HTMLResponse:
        title = {"training": "Training", "exam": "Exam"}.get(page.kind, "Labeling")
        where = {"training": "training", "exam": "exam"}.get(page.kind, f"page {page.number}")
        pos, neg = self.spec.positive_name, self.spec.negative_name
        cards = []
        for slot, _task in enumerate(page.tasks):
            src = f"/img/{page.page}/{slot}"
            choices = "".join(
                f"<label class='choice'><input type='radio' name='a{slot}' value='{value}' required "
                f"data-testid='a{slot}-{value}'><span><kbd>{key}</kbd> {_e(name)}</span></label>"
                for key, value, name in ((1, 1, pos), (2, 0, neg))
            )
            cards.append(
                f"<figure class='task' data-slot='{slot}'><span class='num'>{slot + 1} of "
                f"{len(page.tasks)}</span>"
                f"<button type='button' class='zoom' data-caption='image {slot + 1} of {len(page.tasks)}'>"
                f"<img src='{src}' alt='image {slot + 1}'></button>"
                f"<div class='choices'>{choices}</div></figure>"
            )
        intro = {
            "training": "Training: answers are checked, and for each mistake you see the right answer.",
            "exam": f"Exam: {len(page.tasks)} images; {self.spec.exam_pass:.0%} right answers let "
            "you continue.",
            "main": "Label every image; some have a known answer and check attention.",
        }[page.kind]
        body = (
            f"<h1>{_e(title)}</h1><p>{_e(intro)}</p>"
            f"<p class='keys'>Keys: <kbd>1</kbd> {_e(pos)} · <kbd>2</kbd> {_e(neg)} · "
            "<kbd>←</kbd><kbd>→</kbd> move · "
            "<kbd>Z</kbd> zoom · <kbd>Enter</kbd> submit. Click an image to zoom.</p>"
            f"<div class='progress'><progress max='{len(page.tasks)}' value='0'></progress>"
            f"<span class='count'><span id='answered'>0/{len(page.tasks)}</span> answered</span></div>"
            f"<form id='page-form' method='post' action='/submit' data-kind='{page.kind}'>"
            f"<input type='hidden' name='page' value='{_e(page.page)}'>"
            f"<div class='grid'>{''.join(cards)}</div>"
            "<div class='actions'><button class='primary' type='submit' data-testid='submit'>Submit "
            "page</button>"
            "<span id='missing' class='missing'></span></div></form>"
            "<div id='zoom' hidden><img alt='zoomed image'><p></p></div>"
        )
        return self.html(title, body, where=where, lease=page.expires_at, script=True)

    def ban_page(self, ban: Ban) -> HTMLResponse:
        now = datetime.now(UTC)
        body = (
            "<h1>You are banned from this campaign</h1><div class='card-box notice bad' data-testid='banned'>"
            "<dl class='facts'>"
            f"<dt>Why</dt><dd data-testid='ban-reason'>{_e(RULES.get(ban.rule, ban.rule))} "
            f"<span class='muted'>({_e(ban.detail)})</span></dd>"
            f"<dt>How long</dt><dd data-testid='ban-until'>until {_when(ban.until)} "
            f"(another {_span((ban.until - now).total_seconds())})</dd>"
            "<dt>What now</dt><dd>No more pages are handed to you until then, and pages you submit are "
            "not saved. You can come back after that with the same link. If you think this is a "
            "mistake, write to the person who invited you.</dd></dl></div>"
        )
        return self.html("Banned", body, status=403, where="banned")

    def failed_page(self, score: float | None) -> HTMLResponse:
        got = "" if score is None else f"You answered {score:.0%} of the exam right; "
        body = (
            "<h1>Exam not passed</h1><div class='card-box notice bad' data-testid='failed'><dl class='facts'>"
            f"<dt>Why</dt><dd>{got}{self.spec.exam_pass:.0%} were needed.</dd>"
            "<dt>How long</dt><dd>For the whole campaign: the exam cannot be taken again.</dd>"
            "<dt>What now</dt><dd>Thank you for your time. If you think this is a mistake, write to the "
            "person who invited you.</dd></dl></div>"
        )
        return self.html("Exam not passed", body, where="exam")

    async def image(self, request: Request) -> Response:
        worker = await self.require_worker(request)
        page_id = request.path_params["page"]
        slot = _small_int(request.path_params["slot"])
        if slot is None or len(page_id) > 64:
            raise HttpProblem(404, "Not found", "No such image.")
        task = await run_in_threadpool(self._page_item, worker, page_id, slot)
        if task is None:
            raise HttpProblem(404, "Not found", "No such image on your pages.")
        return await self.image_file(task)

    def _page_item(self, worker: str, page_id: str, slot: int) -> int | None:
        with self.db._read() as db:
            row = db.execute("SELECT worker, tasks FROM pages WHERE page = ?", (page_id,)).fetchone()
        if row is None or row[0] != worker:
            return None
        tasks = json.loads(row[1])
        return int(tasks[slot]) if slot < len(tasks) else None

    async def image_file(self, item: int) -> Response:
        rel = await run_in_threadpool(self.db.item_path, item)
        file = (self.root / rel).resolve() if rel else None
        # The path comes from the campaign's tables; still, nothing outside the work directory is served.
        if file is None or not file.is_relative_to(self.root) or not file.is_file():
            raise HttpProblem(404, "Not found", "The image file is missing.")
        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if not kind.startswith("image/"):
            raise HttpProblem(404, "Not found", "Not an image.")
        data = await run_in_threadpool(file.read_bytes)
        return Response(
            data, media_type=kind, headers={"Cache-Control": "private, max-age=3600", **SECURITY_HEADERS}
        )

    async def submit(self, request: Request) -> Response:
        worker = await self.require_worker(request)
        form = await self.read_form(request)
        page = (form.get("page") or [""])[0]
        if not page or len(page) > 64:
            raise HttpProblem(400, "Bad request", "The form names no page.")
        slots: dict[int, int] = {}
        for key, values in form.items():
            if key.startswith("a"):
                slot, value = _small_int(key[1:]), _small_int(values[0] if values else "")
                if slot is None or value is None:
                    raise HttpProblem(400, "Bad request", f"Field {key[:20]!r} is not an answer.")
                slots[slot] = value
        result = await run_in_threadpool(self._submit, worker, page, slots)
        if isinstance(result, Refused):
            return self.refused_page(result)
        return await run_in_threadpool(self.result_page, page, result)

    def _submit(self, worker: str, page: str, slots: dict[int, int]) -> Submitted | Refused:
        with self.db._read() as db:
            row = db.execute("SELECT tasks FROM pages WHERE page = ?", (page,)).fetchone()
        tasks = json.loads(row[0]) if row else []
        if any(s >= len(tasks) for s in slots) and tasks:
            raise HttpProblem(400, "Bad request", "An answer names an image that is not on the page.")
        answers = {int(tasks[s]): v for s, v in slots.items()} if tasks else {}
        try:
            return self.db.submit(worker, page, answers, self.spec)
        except CrowdError as exc:
            raise HttpProblem(400, "Not saved", f"{exc}. Go back and answer every image.") from None

    def refused_page(self, refused: Refused) -> HTMLResponse:
        titles = {
            "unknown": "No such page",
            "not-yours": "Not your page",
            "submitted": "Already saved",
            "expired": "Page expired",
            "banned": "Banned",
            "stopped": "Campaign stopped",
            "stage": "Not saved",
        }
        body = (
            f"<h1>{_e(titles[refused.reason])}</h1><div class='card-box notice bad' "
            f"data-testid='refused-{refused.reason}'><p>{_e(refused.message)}</p>"
            "<p><a class='button' href='/work' data-testid='next'>Get my current page</a></p></div>"
        )
        return self.html(titles[refused.reason], body, status=refused.status, where="not saved")

    def result_page(self, page: str, result: Submitted) -> HTMLResponse:
        pos, neg = self.spec.positive_name, self.spec.negative_name
        name = {1: pos, 0: neg}
        if result.kind == "training":
            with self.db._read() as db:
                tasks = json.loads(
                    db.execute("SELECT tasks FROM pages WHERE page = ?", (page,)).fetchone()[0]
                )
            slot = {t: i for i, t in enumerate(tasks)}
            hints = "".join(
                f"<li data-testid='hint'><img src='/img/{_e(page)}/{slot[t]}' alt='training image "
                f"{slot[t] + 1}'>"
                f"<div>Image {slot[t] + 1}<br><span class='yours'>your answer: "
                f"{_e(name[result.answers[t]])}</span>"
                f"<br><span class='right'>right answer: {_e(name[label])}</span></div></li>"
                for t, label in sorted(result.hints.items(), key=lambda kv: slot[kv[0]])
            )
            verdict = (
                "All right — well done." if not result.hints else "Look at the mistakes before the exam:"
            )
            tone = "good" if not result.hints else "wait"
            body = (
                f"<h1>Training checked</h1><div class='card-box notice {tone}'><p data-testid='score'>"
                f"{result.correct}/{result.checked} right.</p><p>{verdict}</p></div>"
                f"<ul class='hints'>{hints}</ul>"
                "<p><a class='button' href='/work' data-testid='next'>Continue to the exam</a></p>"
            )
            return self.html("Training checked", body, where="training", script=True)
        if result.kind == "exam":
            if result.stage != "main":
                return self.failed_page(result.correct / max(result.checked, 1))
            body = (
                f"<h1>Exam passed</h1><div class='card-box notice good'><p data-testid='score'>Exam passed: "
                f"{result.correct}/{result.checked} right.</p></div>"
                "<p><a class='button' href='/work' data-testid='next'>Start labeling</a></p>"
            )
            return self.html("Exam passed", body, where="exam")
        if result.ban:
            return self.ban_page(result.ban)
        body = (
            f"<h1>Saved</h1><div class='card-box notice good'><p data-testid='saved'>Saved "
            f"{len(result.answers)} answers.</p></div>"
            "<p><a class='button' href='/work' data-testid='next'>Next page</a></p>"
        )
        return self.html("Saved", body, where="saved")

    # --- owner --------------------------------------------------------------------------
    async def owner(self, request: Request) -> Response:
        self.require_owner(request)
        if request.query_params.get("token"):
            # Swap the token in the address for a cookie, so it does not stay in the history.
            response = RedirectResponse("/owner", status_code=303)
            response.set_cookie(
                OWNER_COOKIE,
                self.owner_cookie.dumps(self.owner_token[:8]),
                max_age=SESSION_DAYS * 86400,
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
            return response
        data = await run_in_threadpool(self.dashboard_data)
        return self.html("Owner dashboard", self.dashboard(data), where="owner dashboard", refresh=30)

    def dashboard_data(self) -> dict[str, Any]:
        answers = self.db.answers()
        counts = self.db.counts()
        workers = self.db.worker_table(self.spec)
        banned = {w["worker"] for w in workers if w["ban_rule"]} if self.spec.rules.reissue_banned else set()
        from iris.crowd.backends.base import tasks_done

        done = tasks_done(answers, overlap=self.spec.overlap, ignore_workers=banned)
        state = "stopped" if self.db.stopped else "complete" if done >= counts["tasks"] else "running"
        return {
            "state": state,
            "tasks": counts["tasks"],
            "tasks_done": done,
            "answers": answers.height,
            "pages": counts["pages"],
            "planned_pages": self.spec.pages_for(counts["tasks"]),
            "cost": round(counts["pages"] * self.spec.price_per_page, 4),
            "planned_cost": self.spec.cost_for(counts["tasks"]),
            "workers": counts["workers"],
            "banned": counts["banned"],
            "invites": counts["invites"],
            "invites_used": counts["invites_used"],
            "expired_pages": counts["expired"],
            "pending": self.db.pending_pages(),
            "worker_table": workers,
        }

    def dashboard(self, d: dict[str, Any]) -> str:
        share = d["tasks_done"] / max(d["tasks"], 1)

        def pct(x: float | None) -> str:
            return "–" if x is None else f"{x:.0%}"

        stats = [
            ("state", d["state"]),
            ("tasks done", f"{d['tasks_done']} / {d['tasks']}"),
            ("answers", d["answers"]),
            ("pages bought", f"{d['pages']} / {d['planned_pages']} planned"),
            ("cost so far", f"{d['cost']:.2f} of {d['planned_cost']:.2f}"),
            ("workers (banned)", f"{d['workers']} ({d['banned']})"),
            ("invites used", f"{d['invites_used']} / {d['invites']}"),
            ("pending / expired pages", f"{len(d['pending'])} / {d['expired_pages']}"),
        ]
        rows = "".join(
            f"<tr class='{'banned' if w['banned'] else ''}'><td>{_e(w['worker'])}</td><td>{_e(w['via'])}</td>"
            f"<td>{_e(w['stage'])}</td><td class='num'>{pct(w['exam_score'])}</td>"
            f"<td class='num'>{w['pages']}</td><td class='num'>{w['answers']}</td>"
            f"<td class='num'>{pct(w['honeypot_accuracy'])} <span "
            f"class='muted'>({w['honeypots']})</span></td>"
            f"<td class='num'>{pct(w['agreement'])}</td>"
            f"<td class='why'>{_ban_cell(w)}</td></tr>"
            for w in d["worker_table"]
        )
        pending = (
            "".join(
                f"<tr><td>{_e(p['page'])}</td><td>{_e(p['worker'])}</td><td>{_e(p['kind'])}</td>"
                f"<td class='num'>{p['tasks']}</td><td class='num'>{_span(p['age_s'])}</td>"
                f"<td class='num'>{_span(p['expires_in_s'])}</td></tr>"
                for p in d["pending"]
            )
            or "<tr><td colspan='6' class='muted'>none: no page is out right now</td></tr>"
        )
        return (
            "<h1>Owner dashboard</h1>"
            f"<div class='progress'><progress max='{max(d['tasks'], 1)}' "
            f"value='{d['tasks_done']}'></progress>"
            f"<span class='count' data-testid='progress'>{share:.0%} of tasks done</span></div>"
            "<div class='stats'>"
            + "".join(f"<div class='stat'><b>{_e(v)}</b><span>{_e(k)}</span></div>" for k, v in stats)
            + "</div><h2>Workers</h2><div class='scroll'><table class='data' "
            "data-testid='workers'><thead><tr>"
            "<th>worker</th><th>via</th><th>stage</th><th class='num'>exam</th><th class='num'>pages</th>"
            "<th class='num'>answers</th><th class='num'>honeypots right</th><th class='num'>agreement</th>"
            f"<th>ban and why</th></tr></thead><tbody>{rows}</tbody></table></div>"
            "<h2>Pending pages (leases)</h2><div class='scroll'><table class='data' "
            "data-testid='pending'><thead>"
            "<tr><th>page</th><th>worker</th><th>kind</th><th class='num'>images</th><th class='num'>age</th>"
            f"<th class='num'>expires in</th></tr></thead><tbody>{pending}</tbody></table></div>"
            "<p class='muted'>Refreshes every 30 s. Invite people with <code>iris crowd invite N</code>; "
            "stop with <code>iris crowd stop</code>.</p>"
        )

    async def api(self, request: Request) -> Response:
        self.require_owner(request)
        what = request.path_params["what"]
        if what == "status":
            data = await run_in_threadpool(self.dashboard_data)
            data = {k: v for k, v in data.items() if k not in {"pending", "worker_table"}}
            data["pending"] = len(await run_in_threadpool(self.db.pending_pages))
        elif what == "workers":
            data = {"workers": await run_in_threadpool(self.db.worker_table, self.spec)}
        elif what == "pending":
            data = {"pending": await run_in_threadpool(self.db.pending_pages)}
        else:
            raise HttpProblem(404, "Not found", "No such API.")
        return JSONResponse(data, headers={"Cache-Control": "no-store"})

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        files = {"labeler.css": (self.css, "text/css"), "labeler.js": (self.js, "text/javascript")}
        if name not in files:
            raise HttpProblem(404, "Not found", "No such file.")
        data, kind = files[name]
        return Response(data, media_type=kind, headers={"Cache-Control": "max-age=300", **SECURITY_HEADERS})

    async def healthz(self, request: Request) -> Response:
        return Response("ok\n", media_type="text/plain")

    async def server_error(self, request: Request, exc: Exception) -> Response:
        logging.getLogger("iris.labeler").exception("error on %s %s", request.method, request.url.path)
        return self.problem(
            HttpProblem(
                500,
                "Something went wrong",
                "The labeler hit an error; nothing on this page was lost "
                "that was saved before. Please try again.",
            )
        )

    async def not_found(self, request: Request, exc: Exception) -> Response:
        return self.problem(HttpProblem(404, "Not found", "There is no such page here."))


def _ban_cell(w: dict[str, Any]) -> str:
    if not w["ban_rule"]:
        return ""
    until = f" (until {_e(str(w['banned_until'])[:16].replace('T', ' '))})" if w["banned_until"] else ""
    return f"{_e(w['ban_rule'])} — {_e(w['ban_detail'] or '')}{until}"


def _small_int(text: str) -> int | None:
    """A non-negative integer of at most 18 digits, or None (ids from a client are never trusted)."""
    if not text or len(text) > 18 or not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value <= MAX_ID else None


def build_app(workdir: Workdir, settings: Settings) -> Any:
    """The labeler's ASGI app for the campaign launched in ``workdir``.

    Raises:
        CrowdError: no web campaign was launched there.
    """
    path = workdir.crowd / "web" / "labeler.db"
    if not path.exists():
        raise CrowdError(f"no web campaign at {path}; run `iris crowd launch --backend web` first")
    app = LabelerApp(workdir, settings, LabelerDB(path))

    def guarded(
        handler: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except HttpProblem as exc:
                return app.problem(exc)

        return run

    routes = [
        Route("/", guarded(app.home)),
        Route("/join/{token}", guarded(app.join)),
        Route("/signup", guarded(app.signup), methods=["POST"]),
        Route("/work", guarded(app.work)),
        Route("/submit", guarded(app.submit), methods=["POST"]),
        Route("/img/{page}/{slot}", guarded(app.image)),
        Route("/example/{n}", guarded(app.example)),
        Route("/owner", guarded(app.owner)),
        Route("/api/{what}", guarded(app.api)),
        Route("/static/{name}", guarded(app.static)),
        Route("/healthz", app.healthz),
    ]
    starlette = Starlette(
        routes=routes,
        exception_handlers={404: app.not_found, 405: app.not_found, Exception: app.server_error},
    )
    starlette.state.labeler = app
    return LimitsMiddleware(starlette, max_body=app.limits.max_body)


class LimitsMiddleware:
    """Refuse a request whose declared body or whose headers are too large before any route
    runs (h11 only bounds headers that arrive in pieces)."""

    def __init__(self, app: Any, *, max_body: int, max_headers: int = MAX_HEADER_BYTES) -> None:
        self.app, self.max_body, self.max_headers = app, max_body, max_headers

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = scope["headers"]
            size = sum(len(k) + len(v) + 4 for k, v in headers)
            length = next((v for k, v in headers if k == b"content-length"), None)
            status, text = 0, ""
            if size > self.max_headers:
                status, text = 431, f"request headers over {self.max_headers // 1024} KiB\n"
            elif length is not None and (not length.isdigit() or int(length) > self.max_body):
                status, text = (
                    (413, f"request body over {self.max_body // 1024} KiB\n")
                    if length.isdigit()
                    else (400, "Content-Length is not a number\n")
                )
            if status:
                response = Response(
                    text, status_code=status, media_type="text/plain", headers={"Connection": "close"}
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def guarded_protocol(header_timeout_s: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a limit on the time a client takes to send its request
    headers (uvicorn has none: a silent or trickling connection is otherwise kept forever)."""

    class GuardedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(header_timeout_s, self._too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _too_slow(self) -> None:
            self._header_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.write(
                    b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                self.transport.close()

    return GuardedH11Protocol


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0 picks a free one); uvicorn listens on it with BACKLOG."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def make_server(workdir: Workdir, settings: Settings) -> Any:
    """A uvicorn server for the labeler (not yet serving): ``server.run(sockets=[bind(host, port)])``."""
    import uvicorn

    config = uvicorn.Config(
        build_app(workdir, settings),
        http=guarded_protocol(settings.crowd.web_timeout_s),
        backlog=BACKLOG,
        limit_concurrency=MAX_CONNECTIONS,
        timeout_keep_alive=5,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        lifespan="off",
        access_log=False,
        log_level="warning",
        server_header=False,
    )
    return uvicorn.Server(config)


def describe(workdir: Workdir, settings: Settings, host: str, port: int) -> list[str]:
    """What ``iris crowd serve`` says on start: where it listens, who can reach it, the links."""
    db = LabelerDB(workdir.crowd / "web" / "labeler.db")
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else shown}:{port}"
    lines = [f"iris labeler at {url}/"]
    if host in ("127.0.0.1", "localhost", "::1"):
        lines.append(
            f"  listening on {host} only: no other machine can reach it "
            "(--host 0.0.0.0 listens on every interface; or put a reverse proxy in front)"
        )
    else:
        lines.append(
            f"  listening on {host}: anyone who can reach this machine can open it; workers still "
            "need an invitation and the dashboard the owner token"
        )
    signup = "on: anyone with the address may join" if settings.crowd.web_open_signup else "off"
    lines += [
        f"  owner dashboard: {url}/owner?token={db.owner_token}",
        f"  invite people:   iris -w {workdir.root} crowd invite 5   (open signup {signup})",
        f"  pages expire after {settings.crowd.web_lease_minutes:g} min; every saved answer is in {db.path}",
        "  Ctrl-C stops it",
    ]
    return lines


def invite_links(workdir: Workdir, settings: Settings, n: int, *, base_url: str | None = None) -> list[str]:
    """``n`` new invitation links (``iris crowd invite``)."""
    path = workdir.crowd / "web" / "labeler.db"
    if not path.exists():
        raise CrowdError(f"no web campaign at {path}; run `iris crowd launch --backend web` first")
    if n < 1:
        raise CrowdError(f"crowd invite: N = {n}, expected >= 1")
    base = (base_url or settings.crowd.web_url).rstrip("/")
    return [f"{base}/join/{token}" for token in LabelerDB(path).create_invites(n)]
