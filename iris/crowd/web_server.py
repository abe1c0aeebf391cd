"""The self-hosted labeler: an HTTP server over the ``web`` backend's SQLite campaign.

``iris crowd serve`` runs it. Plain HTML forms, no JavaScript needed: a person enters a
name, answers the training page (wrong answers come back with the right one as a hint),
takes the exam, then labels pages of images with honeypots mixed in. Every submitted
page is stored at once.
"""

from __future__ import annotations

import html
import json
import mimetypes
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlparse

from iris.config import Settings
from iris.crowd.backends.web import IssuedPage, LabelerDB, Submitted
from iris.crowd.instructions import render_instructions
from iris.crowd.spec import CampaignSpec
from iris.errors import CrowdError
from iris.workdir import Workdir

STYLE = """
body{font-family:sans-serif;margin:2em;max-width:70em}
.grid{display:flex;flex-wrap:wrap;gap:1em}
figure{margin:0;border:1px solid #ccc;padding:.5em;text-align:center}
figure img{width:128px;height:128px;image-rendering:pixelated;display:block}
.hint{color:#a00}
button{font-size:1.1em;padding:.4em 1.2em;margin-top:1em}
"""


@dataclass
class LabelerApp:
    workdir: Workdir
    spec: CampaignSpec
    db: LabelerDB

    def page(self, title: str, body: str) -> str:
        return (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
        )

    def home(self) -> str:
        with self.db._connect() as db:
            examples = db.execute(
                "SELECT id, label FROM items WHERE role = 'training' ORDER BY id"
            ).fetchall()
        pos = [f"/img/{i}" for i, label in examples if label == 1][:4]
        neg = [f"/img/{i}" for i, label in examples if label == 0][:4]
        instructions = render_instructions(self.spec, positive_examples=pos, negative_examples=neg)
        form = (
            "<form action='/work' method='get'><label>Your name "
            "<input name='worker' data-testid='worker' required></label>"
            "<button type='submit' data-testid='start'>Start</button></form>"
        )
        return self.page("iris labeler", instructions + form)

    def work(self, worker: str) -> str:
        rule = self.db.banned(worker)
        if rule:
            return self.page(
                "Banned", f"<p data-testid='banned'>You are banned by the {html.escape(rule)} rule.</p>"
            )
        if self.db.worker(worker)["stage"] == "failed":
            return self.page("Exam not passed", "<p data-testid='failed'>You did not pass the exam.</p>")
        issued = self.db.next_page(worker, self.spec, seed=self.spec.seed)
        if issued is None:
            return self.page("Done", "<p data-testid='done'>No tasks left. Thank you!</p>")
        return self.page(self._title(issued), self._form(worker, issued))

    @staticmethod
    def _title(issued: IssuedPage) -> str:
        return {"training": "Training", "exam": "Exam"}.get(issued.kind, "Labeling")

    def _form(self, worker: str, issued: IssuedPage) -> str:
        figures = []
        for task in issued.tasks:
            choices = "".join(
                f"<label><input type='radio' name='t{task}' value='{value}' required "
                f"data-testid='t{task}-{value}'> {html.escape(name)}</label> "
                for value, name in ((1, self.spec.positive_name), (0, self.spec.negative_name))
            )
            figures.append(f"<figure><img src='/img/{task}' alt='image {task}'>{choices}</figure>")
        return (
            f"<form action='/submit' method='post' data-kind='{issued.kind}'>"
            f"<input type='hidden' name='worker' value='{html.escape(worker, quote=True)}'>"
            f"<input type='hidden' name='page' value='{issued.page}'>"
            f"<div class='grid'>{''.join(figures)}</div>"
            "<button type='submit' data-testid='submit'>Submit</button></form>"
        )

    def submit(self, form: dict[str, list[str]]) -> str:
        worker = form.get("worker", [""])[0]
        page = form.get("page", [""])[0]
        answers = {int(k[1:]): int(v[0]) for k, v in form.items() if k.startswith("t") and k[1:].isdigit()}
        result: Submitted = self.db.submit(worker, page, answers, self.spec)
        next_link = f"<p><a href='/work?worker={quote(worker)}' data-testid='next'>Continue</a></p>"
        if result.kind == "training":
            hints = "".join(
                f"<li class='hint'><img src='/img/{t}' width='48'> is "
                f"{html.escape(self.spec.positive_name if label else self.spec.negative_name)}</li>"
                for t, label in result.hints.items()
            )
            body = f"<p data-testid='score'>{result.correct}/{result.checked} right.</p><ul>{hints}</ul>"
            return self.page("Training checked", body + next_link)
        if result.kind == "exam":
            passed = result.stage == "main"
            verdict = "passed" if passed else "not passed"
            body = f"<p data-testid='score'>Exam {verdict}: {result.correct}/{result.checked} right.</p>"
            return self.page("Exam", body + (next_link if passed else ""))
        if result.banned:
            return self.page(
                "Banned", f"<p data-testid='banned'>You are banned by the {result.banned} rule.</p>"
            )
        return self.page("Saved", f"<p data-testid='saved'>Saved {len(answers)} answers.</p>{next_link}")

    def status(self) -> dict[str, Any]:
        return self.db.counts()


def make_server(
    workdir: Workdir, settings: Settings, *, host: str = "127.0.0.1", port: int = 8080
) -> ThreadingHTTPServer:
    """A labeler server for the campaign launched in ``workdir`` (not yet serving)."""
    path = workdir.crowd / "web" / "labeler.db"
    if not path.exists():
        raise CrowdError(f"no web campaign at {path}; run `iris crowd launch --backend web` first")
    app = LabelerApp(workdir=workdir, spec=CampaignSpec.from_settings(settings), db=LabelerDB(path))

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _html(self, text: str, status: int = HTTPStatus.OK) -> None:
            self._send(status, text.encode("utf-8"), "text/html; charset=utf-8")

        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = parse_qs(url.query)
            try:
                if url.path == "/":
                    self._html(app.home())
                elif url.path == "/work" and query.get("worker"):
                    self._html(app.work(query["worker"][0].strip()))
                elif url.path.startswith("/img/") and url.path[5:].isdigit():
                    rel = app.db.item_path(int(url.path[5:]))
                    file = (workdir.root / rel) if rel else None
                    if file is None or not file.is_file():
                        self._html(app.page("Not found", "no such image"), HTTPStatus.NOT_FOUND)
                        return
                    kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
                    self._send(HTTPStatus.OK, file.read_bytes(), kind)
                elif url.path == "/api/status":
                    self._send(HTTPStatus.OK, json.dumps(app.status()).encode(), "application/json")
                else:
                    self._html(app.page("Not found", "no such page"), HTTPStatus.NOT_FOUND)
            except CrowdError as exc:
                self._html(app.page("Error", html.escape(str(exc))), HTTPStatus.BAD_REQUEST)

        def do_POST(self) -> None:
            if urlparse(self.path).path != "/submit":
                self._html(app.page("Not found", "no such page"), HTTPStatus.NOT_FOUND)
                return
            length = int(self.headers.get("Content-Length", "0"))
            form = parse_qs(self.rfile.read(length).decode("utf-8"))
            try:
                self._html(app.submit(form))
            except (CrowdError, ValueError) as exc:
                self._html(app.page("Error", html.escape(str(exc))), HTTPStatus.BAD_REQUEST)

    return ThreadingHTTPServer((host, port), Handler)
