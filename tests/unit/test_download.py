"""Downloads against a real HTTP server on 127.0.0.1: retries, timeouts, broken bodies, resume."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from iris import tables
from iris.data import ingest as ingest_module
from iris.data.download import fetch, make_client, resolve
from iris.data.ids import image_id
from iris.data.ingest import ingest
from iris.workdir import Workdir

SLOW_S = 1.0


@pytest.fixture(autouse=True)
def _small_ground_truth(monkeypatch: pytest.MonkeyPatch) -> None:
    """These fixtures label one to three images per class, under ``ingest.min_per_class``'s default."""
    monkeypatch.setenv("IRIS_INGEST_MIN_PER_CLASS", "1")


def _png(n: int) -> bytes:
    pixels = np.random.default_rng(n).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def _jpeg() -> bytes:
    pixels = np.random.default_rng(99).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG")
    return buffer.getvalue()


class Server:
    """Serves good images and broken responses; counts requests per path."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # quiet test output
                pass

            def _send(self, status: int, body: bytes, content_type: str = "image/png") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                with server.lock:
                    server.requests[self.path] += 1
                    seen = server.requests[self.path]
                try:
                    if self.path.startswith("/img/"):
                        self._send(200, _png(int(self.path[5:].split(".")[0])))
                    elif self.path == "/slow.png":
                        time.sleep(SLOW_S)
                        self._send(200, _png(0))
                    elif self.path == "/missing.png":
                        self._send(404, b"not found", "text/plain")
                    elif self.path == "/flaky.png":
                        self._send(500, b"oops", "text/plain") if seen == 1 else self._send(200, _png(500))
                    elif self.path == "/down.png":
                        self._send(503, b"unavailable", "text/plain")
                    elif self.path == "/page.png":
                        self._send(200, b"<!doctype html><html><body>Sign in</body></html>", "text/html")
                    elif self.path == "/truncated.jpg":
                        body = _jpeg()
                        self._send(200, body[: len(body) // 2], "image/jpeg")
                    else:
                        self._send(404, b"", "text/plain")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def paths(self) -> set[str]:
        with self.lock:
            return set(self.requests)


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    running.thread.start()
    yield running
    running.httpd.shutdown()
    running.httpd.server_close()


def _fetch(url: str, *, retries: int = 2, timeout_s: float = 0.3):  # type: ignore[no-untyped-def]
    async def go():  # type: ignore[no-untyped-def]
        async with make_client(timeout_s=timeout_s, concurrency=4) as client:
            return await fetch(client, url, retries=retries, backoff_s=0.01)

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("path", "reason", "requests"),
    [
        ("/img/1.png", "", 1),
        ("/missing.png", "http-404", 1),  # 4xx: never retried
        ("/down.png", "http-503", 3),  # 5xx: 1 + 2 retries
        ("/flaky.png", "", 2),  # 500 then 200
        ("/slow.png", "timeout", 3),
    ],
)
def test_fetch_retries_transient_failures_only(server: Server, path: str, reason: str, requests: int) -> None:
    got = _fetch(server.url + path)
    assert got.reason == reason
    assert (got.data is not None) == (reason == "")
    assert got.attempts == requests
    assert server.requests[path] == requests


def test_fetch_abandons_oversized_download(server: Server) -> None:
    async def go():  # type: ignore[no-untyped-def]
        async with make_client(timeout_s=1, concurrency=1) as client:
            return await fetch(client, server.url + "/img/1.png", retries=0, backoff_s=0, max_bytes=10)

    assert asyncio.run(go()).reason == "download-too-large"


def test_fetch_connection_refused() -> None:
    got = _fetch("http://127.0.0.1:9/x.png", retries=1)
    assert (got.reason, got.attempts) == ("connection", 2)


def test_resolve(tmp_path: Path) -> None:
    assert resolve("https://e.org/a.jpg", tmp_path).kind == "url"
    assert resolve("images/../images/a.png", tmp_path).target == str(tmp_path / "images" / "a.png")
    assert resolve("/abs/a.png", tmp_path).target == "/abs/a.png"
    assert resolve("file:///abs/my%20a.png", tmp_path).target == "/abs/my a.png"
    bad = resolve("ftp://e.org/a.png", tmp_path)
    assert bad.kind == "bad" and "unsupported URL scheme 'ftp'" in bad.target


def _http_settings(workdir: Workdir):  # type: ignore[no-untyped-def]
    return workdir.settings(ingest={"timeout_s": 0.3, "retries": 2, "backoff_s": 0.01, "concurrency": 4})


def test_ingest_over_http_rejects_each_broken_response(
    server: Server, workdir: Workdir, tmp_path: Path
) -> None:
    gt = tmp_path / "gt.tsv"
    gt.write_text(f"downloadUrl\tis_conifer\n{server.url}/img/1.png\tTRUE\n{server.url}/img/2.png\tFALSE\n")
    pool = tmp_path / "pool.txt"
    broken = ["/missing.png", "/down.png", "/slow.png", "/page.png", "/truncated.jpg"]
    pool.write_text("\n".join(server.url + p for p in ["/img/3.png", "/flaky.png", *broken]) + "\n")
    report = ingest(workdir, _http_settings(workdir), ground_truth=gt, pool=[pool], test=None)

    assert report.counts == {"gt": 2, "pool": 2, "test": 0}
    rejects = tables.read(workdir.table("rejects"), tables.REJECTS)
    assert dict(zip(rejects["source"].to_list(), rejects["reason"].to_list(), strict=True)) == {
        server.url + "/missing.png": "http-404",
        server.url + "/down.png": "http-503",
        server.url + "/slow.png": "timeout",
        server.url + "/page.png": "html",
        server.url + "/truncated.jpg": "truncated",
    }
    assert set(rejects["line"].to_list()) == {3, 4, 5, 6, 7}
    assert set(rejects["file"].to_list()) == {str(pool)}
    images = tables.read(workdir.table("images"), tables.IMAGES)
    assert images.filter(pl.col("source") == server.url + "/flaky.png")["id"].to_list() == [
        image_id(server.url + "/flaky.png")
    ]


def test_interrupted_ingest_resumes_with_only_what_is_missing(
    server: Server, workdir: Workdir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources = [f"{server.url}/img/{n}.png" for n in range(30)]
    pool = tmp_path / "pool.txt"
    pool.write_text("\n".join(sources) + "\n")
    settings = _http_settings(workdir)

    saved = ingest_module._Journal.add
    calls = {"n": 0}

    def crash_after_ten(self, image, outcome):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] > 10:
            raise KeyboardInterrupt("simulated Ctrl-C")
        saved(self, image, outcome)

    monkeypatch.setattr(ingest_module._Journal, "add", crash_after_ten)
    with pytest.raises(KeyboardInterrupt):
        ingest(workdir, settings, ground_truth=None, pool=[pool], test=None)
    monkeypatch.setattr(ingest_module._Journal, "add", saved)

    journal = workdir.tables / ingest_module.JOURNAL_FILE
    assert len(journal.read_text().splitlines()) == 10
    on_disk = {s for s in sources if (workdir.images / f"{image_id(s)}.png").exists()}
    assert 10 <= len(on_disk) < 30

    server.requests.clear()
    report = ingest(workdir, settings, ground_truth=None, pool=[pool], test=None)
    requested = {server.url + p for p in server.paths()}
    assert requested == set(sources) - on_disk
    assert all(n == 1 for n in server.requests.values())
    assert report.counts["pool"] == 30
    assert (report.processed, report.reused) == (30 - len(on_disk), len(on_disk))

    server.requests.clear()
    again = ingest(workdir, settings, ground_truth=None, pool=[pool], test=None)
    assert server.requests.total() == 0
    assert again.counts["pool"] == 30
    assert json.loads((workdir.tables / "ingest.json").read_text())["splits"]["pool"][0]["format"] == "list"
