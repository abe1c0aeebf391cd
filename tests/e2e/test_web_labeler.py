"""The self-hosted labeler in a real headless Chromium: training, exam, labeling pages,
honeypots, answers collected through the same campaign code as every backend."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from iris import tables
from iris.config import Settings, render_toml
from iris.crowd import campaign
from iris.workdir import Workdir, init_workdir

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="needs headless Chromium (Debian package chromium)"
    ),
]


def _settings() -> Settings:
    base = Settings()
    crowd = replace(
        base.crowd,
        backend="web",
        training=2,
        exam=2,
        exam_pass=1.0,
        overlap=1,
        page_size=4,
        honeypots_per_page=1,
        min_seconds_per_page=0.0,
        majority_window=1000,
        honeypot_window=1000,
    )
    return replace(base, crowd=crowd, task=replace(base.task, positive_name="shirt", negative_name="t-shirt"))


@pytest.fixture
def campaign_dir(tmp_path: Path) -> Workdir:
    """8 ground-truth images (2 training, 2 exam, 4 honeypots) and 6 shortlisted pool images."""
    settings = _settings()
    workdir = init_workdir(tmp_path / "work", settings=settings)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(14):
        img = Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
        rel = f"images/{i + 1}.png"
        img.save(workdir.root / rel)
        split = "gt" if i < 8 else "pool"
        label = i % 2 if split == "gt" else None
        rows.append(
            {
                "id": i + 1,
                "source": f"img{i}.png",
                "path": rel,
                "split": split,
                "label": label,
                "width": 32,
                "height": 32,
                "sha256": f"{i:064x}",
            }
        )
    tables.write(pl.DataFrame(rows, schema=tables.IMAGES), workdir.table("images"))
    shortlist = pl.DataFrame(
        {
            "id": list(range(9, 15)),
            "reason": ["problematic"] * 6,
            "problematic_neighbours": [0] * 6,
            "priority": list(range(6)),
        },
        schema=tables.SHORTLIST,
    )
    tables.write(shortlist, workdir.table("shortlist"))
    workdir.config.write_text(render_toml(settings))
    campaign.launch(workdir, settings)
    return workdir


@pytest.fixture
def server(campaign_dir: Workdir) -> Iterator[str]:
    from iris.crowd.web_server import make_server

    httpd = make_server(campaign_dir, _settings(), host="127.0.0.1", port=0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def browser() -> Iterator[object]:
    playwright = pytest.importorskip("playwright.sync_api", reason="needs the playwright package")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield b
        b.close()


def _answer(page: object, labels: dict[int, int], default: int = 1) -> list[int]:
    """Click one radio per image on the page (the right one where known); return task ids."""
    tasks = sorted(
        {int(el.get_attribute("name")[1:]) for el in page.query_selector_all("input[type=radio]")}  # type: ignore[attr-defined]
    )
    for t in tasks:
        page.click(f"[data-testid='t{t}-{labels.get(t, default)}']")  # type: ignore[attr-defined]
    page.click("[data-testid='submit']")  # type: ignore[attr-defined]
    return tasks


def test_a_person_labels_every_task_through_the_browser(
    campaign_dir: Workdir, server: str, browser: object, tmp_path: Path
) -> None:
    gt = tables.read(campaign_dir.table("images"), tables.IMAGES).filter(pl.col("split") == "gt")
    truth = dict(zip(gt["id"].to_list(), gt["label"].to_list(), strict=True))
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(server + "/")
    assert "shirt" in page.content()
    page.fill("[data-testid='worker']", "alice")
    page.click("[data-testid='start']")

    assert page.title() == "Training"
    training = _answer(page, {t: 1 - truth[t] for t in truth})  # all wrong: hints come back
    assert page.inner_text("[data-testid='score']") == f"0/{len(training)} right."
    assert len(page.query_selector_all("li.hint")) == len(training)
    page.click("[data-testid='next']")

    assert page.title() == "Exam"
    _answer(page, truth)
    assert "Exam passed" in page.inner_text("[data-testid='score']")
    page.click("[data-testid='next']")

    seen: list[int] = []
    pages = 0
    while page.title() == "Labeling":
        if pages == 0:
            page.screenshot(path=str(tmp_path / "labeling.png"))
        seen += _answer(page, truth, default=1)
        assert page.is_visible("[data-testid='saved']")
        page.click("[data-testid='next']")
        pages += 1
    assert page.is_visible("[data-testid='done']")
    assert (tmp_path / "labeling.png").stat().st_size > 1000

    settings = _settings()
    collected = campaign.collect(campaign_dir, settings)
    answers = collected.answers
    real = answers.filter(~pl.col("is_honeypot"))
    assert sorted(real["task"].to_list()) == list(range(9, 15))  # every task once (overlap 1)
    assert set(real["label"].to_list()) == {1}
    honeypots = answers.filter(pl.col("is_honeypot"))
    assert honeypots.height == pages  # one honeypot per page
    for page_id, part in answers.group_by("page"):
        assert part.filter(pl.col("is_honeypot")).height == 1, page_id
    assert (answers["duration"] > 0).all()
    assert campaign.status(campaign_dir, settings).state == "complete"


def test_failing_the_exam_stops_the_worker(server: str, browser: object, campaign_dir: Workdir) -> None:
    gt = tables.read(campaign_dir.table("images"), tables.IMAGES).filter(pl.col("split") == "gt")
    wrong = {int(i): 1 - int(label) for i, label in zip(gt["id"], gt["label"], strict=True)}
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(server + "/work?worker=bob")
    _answer(page, wrong)  # training
    page.click("[data-testid='next']")
    _answer(page, wrong)  # exam
    assert "Exam not passed" in page.inner_text("[data-testid='score']")
    page.goto(server + "/work?worker=bob")
    assert page.is_visible("[data-testid='failed']")
    assert campaign.collect(campaign_dir, _settings()).answers.height == 0
