"""The labeler in a real headless Chromium, at desktop (1280 px) and phone (375 px) widths:
an invitation, training answered with the hotkeys (hints show the worker's own answer beside
the right one), the exam, a page with zoom, the ban page, and the owner's dashboard.

Screenshots go to ``$IRIS_LABELER_SHOTS`` (default: the test's tmp folder).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from iris.crowd.backends.web import LabelerDB
from iris.crowd.web_load import load_settings_for, make_campaign, serve_in_thread
from iris.crowd.web_server import invite_links

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="needs headless Chromium (Debian package chromium)"
    ),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright = pytest.importorskip("playwright.sync_api", reason="needs the playwright package")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield b
        b.close()


def _truth(db: LabelerDB, page_id: str) -> list[int]:
    """The right label of each slot of a page (pool images: by their colour, as people see them)."""
    with db._read() as con:
        tasks = json.loads(con.execute("SELECT tasks FROM pages WHERE page = ?", (page_id,)).fetchone()[0])
        labels = dict(con.execute("SELECT id, label FROM items").fetchall())
    from iris.crowd.web_load import look

    out = []
    for t in tasks:
        if labels[t] is not None:
            out.append(int(labels[t]))
        else:
            with db._read() as con:
                path = con.execute("SELECT path FROM items WHERE id = ?", (t,)).fetchone()[0]
            out.append(look((db.path.parents[2] / path).read_bytes()))
    return out


def _press_answers(page: Any, labels: list[int]) -> None:
    """Answer with the number keys: 1 = positive, 2 = negative; the cursor moves on by itself."""
    for label in labels:
        page.keyboard.press("1" if label == 1 else "2")


@pytest.mark.parametrize("width", [1280, 375], ids=["desktop", "phone"])
def test_a_worker_walks_the_labeler_and_the_owner_watches(browser: Any, tmp_path: Path, width: int) -> None:
    shots = Path(os.environ.get("IRIS_LABELER_SHOTS", tmp_path / "shots"))
    shots.mkdir(parents=True, exist_ok=True)
    base = load_settings_for(page_size=10, overlap=1, training=4, exam=4)
    # A full page needs 5 s: the careful worker takes that long, the careless one does not.
    settings = replace(base, crowd=replace(base.crowd, min_seconds_per_page=5.0))
    workdir = make_campaign(tmp_path / "work", tasks=18, settings=settings)
    db = LabelerDB(workdir.crowd / "web" / "labeler.db")
    height = 900 if width > 600 else 740

    def shot(page: Any, name: str) -> None:
        page.screenshot(path=str(shots / f"{width}-{name}.png"), full_page=True)

    def fits(page: Any) -> None:
        assert page.evaluate("document.documentElement.scrollWidth") <= width, "horizontal scrolling"

    with serve_in_thread(workdir, settings) as url:
        alice_link, bob_link = invite_links(workdir, settings, 2, base_url=url)
        ctx = browser.new_context(viewport={"width": width, "height": height})
        page = ctx.new_page()
        page.goto(alice_link)
        assert page.title() == "Instructions" and page.locator("meta[name=viewport]").count() == 1
        assert page.locator(".examples img").count() >= 2
        fits(page)
        shot(page, "1-instructions")
        page.click("[data-testid='start']")

        # Training with the hotkeys; the first answer is wrong on purpose.
        assert page.title() == "Training"
        page_id = page.get_attribute("input[name=page]", "value")
        right = _truth(db, page_id)
        answers = [1 - right[0], *right[1:]]
        page.keyboard.press("ArrowRight")
        assert page.get_attribute("figure.task.current", "data-slot") == "1"
        page.keyboard.press("ArrowLeft")
        _press_answers(page, answers[:2])
        assert page.inner_text("#answered") == "2/4"
        assert page.get_attribute("figure.task.current", "data-slot") == "2"
        _press_answers(page, answers[2:])
        assert page.inner_text("#answered") == "4/4"
        assert page.evaluate("document.querySelector('.progress progress').value") == 4
        fits(page)
        shot(page, "2-training")
        page.keyboard.press("Enter")
        page.wait_for_selector("[data-testid='score']")
        assert page.inner_text("[data-testid='score']") == "3/4 right."
        hint = page.locator("[data-testid='hint']")
        assert hint.count() == 1
        pos, neg = settings.task.positive_name, settings.task.negative_name
        names = {1: pos, 0: neg}
        assert f"your answer: {names[answers[0]]}" in hint.inner_text()
        assert f"right answer: {names[right[0]]}" in hint.inner_text()
        fits(page)
        shot(page, "3-hints")
        page.click("[data-testid='next']")

        # The exam, drawn for this worker.
        assert page.title() == "Exam"
        page_id = page.get_attribute("input[name=page]", "value")
        _press_answers(page, _truth(db, page_id))
        shot(page, "4-exam")
        page.keyboard.press("Enter")
        page.wait_for_selector("[data-testid='score']")
        assert "Exam passed: 4/4" in page.inner_text("[data-testid='score']")
        page.click("[data-testid='next']")

        # A page of real tasks: zoom, true aspect ratio, progress, answer by tapping.
        assert page.title() == "Labeling"
        page_id = page.get_attribute("input[name=page]", "value")
        labels = _truth(db, page_id)
        # The image's pixels arrive after the page: its natural size is 0 until it has loaded.
        # decode() resolves once they have (and rejects if they never come). wait_for_function
        # would poll through eval, which the labeler's Content-Security-Policy rightly refuses.
        page.locator("button.zoom img").first.evaluate("i => i.decode()")
        ratio = page.evaluate(
            "(() => { const i = document.querySelector('button.zoom img');"
            " return [i.naturalWidth / i.naturalHeight, getComputedStyle(i).objectFit]; })()"
        )
        assert ratio == [16 / 24, "contain"]
        assert page.get_attribute("button[data-testid='submit']", "disabled") is not None
        for slot, label in enumerate(labels[:5]):
            page.click(f"label:has([data-testid='a{slot}-{label}'])")
        assert page.inner_text("#answered") == "5/10"
        fits(page)
        shot(page, "5-page-half")
        page.click("figure.task[data-slot='5'] button.zoom")
        assert page.is_visible("#zoom img")
        shot(page, "6-zoom")
        page.keyboard.press("Escape")
        assert not page.is_visible("#zoom")
        page.keyboard.press("ArrowRight")  # the cursor was on the zoomed image (slot 5)
        page.keyboard.press("ArrowLeft")
        _press_answers(page, labels[5:])
        page.wait_for_timeout(5200)  # a careful worker
        page.click("[data-testid='submit']")
        page.wait_for_selector("[data-testid='saved']")
        assert "Saved 10 answers" in page.inner_text("[data-testid='saved']")
        ctx.close()

        # A careless worker: the same walk at speed gets the ban page.
        ctx = browser.new_context(viewport={"width": width, "height": height})
        page = ctx.new_page()
        page.goto(bob_link)
        page.goto(url + "/work")
        for _ in range(2):  # training, exam
            _press_answers(page, _truth(db, page.get_attribute("input[name=page]", "value")))
            page.keyboard.press("Enter")
            page.wait_for_selector("[data-testid='next']")
            page.click("[data-testid='next']")
        _press_answers(page, [1] * 10)
        page.keyboard.press("Enter")
        page.wait_for_selector("[data-testid='banned']")
        text = page.inner_text("[data-testid='banned']")
        assert "faster than anyone" in text and "until" in text and "come back" in text
        fits(page)
        shot(page, "7-banned")
        ctx.close()

        # The owner.
        ctx = browser.new_context(viewport={"width": width, "height": height})
        page = ctx.new_page()
        page.goto(f"{url}/owner?token={db.owner_token}")
        assert page.title() == "Owner dashboard" and "token" not in page.url
        rows = page.locator("[data-testid='workers'] tbody tr")
        assert rows.count() == 2
        table = page.inner_text("[data-testid='workers']")
        assert "fast" in table and "100%" in table
        assert "50% of tasks done" in page.inner_text("[data-testid='progress']")
        shot(page, "8-owner")
        ctx.close()
