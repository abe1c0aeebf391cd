"""The end-of-run summary: printed as a table and written as ``reports/report.md``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from iris.config import Settings
from iris.pipeline import STAGE_NAMES, RunState
from iris.workdir import Workdir


def _flat(summary: dict[str, Any], *, limit: int = 8) -> str:
    parts = []
    for key, value in summary.items():
        if isinstance(value, dict | list):
            continue
        if isinstance(value, float):
            value = f"{value:.4g}"
        parts.append(f"{key}={value}")
        if len(parts) >= limit:
            break
    return ", ".join(parts)


def stage_rows(state: RunState) -> list[dict[str, Any]]:
    rows = []
    for name in STAGE_NAMES:
        entry = state.data["stages"].get(name)
        if entry is None:
            rows.append({"stage": name, "seconds": None, "summary": "not run"})
        else:
            rows.append({"stage": name, "seconds": entry["seconds"], "summary": _flat(entry["summary"])})
    return rows


def draw_pictures(workdir: Workdir, settings: Settings, state: RunState) -> list[Path]:
    """Draw the pictures of a run from what its stages wrote (stages draw none themselves):
    data stats, the embedding map, the crowd rounds, worker skills."""
    drawn = []
    if state.done("ingest"):
        from iris.data.stats import data_stats

        drawn.append(data_stats(workdir, task=settings.task)[1])
    if state.done("select") and settings.select.map_points > 0:
        drawn += _embedding_map(workdir, settings)
    if state.done("crowd"):
        from iris.report.rounds import CURVE_FILE, draw_rounds, read_rounds

        rounds = read_rounds(workdir)
        if rounds is not None and rounds.height:
            drawn.append(draw_rounds(rounds, workdir.reports / CURVE_FILE, target=settings.rounds.target))
    if state.done("aggregate"):
        from iris.report.crowd import crowd_report

        drawn.append(crowd_report(workdir, settings)[1])
    return drawn


def _embedding_map(workdir: Workdir, settings: Settings) -> list[Path]:
    """The t-SNE map, redrawn only when the tables it shows are newer than it (t-SNE takes seconds)."""
    from iris.report.embedding_map import MAP_FILE, embedding_map
    from iris.store import open_store

    png = workdir.reports / MAP_FILE
    inputs = [workdir.table("pseudolabels"), workdir.table("shortlist")]
    if png.exists() and all(t.exists() and t.stat().st_mtime <= png.stat().st_mtime for t in inputs):
        return [png]
    with open_store(workdir, settings) as store:
        path = embedding_map(workdir, settings, store)
    return [] if path is None else [path]


def write_report(workdir: Workdir, state: RunState, headline: dict[str, Any]) -> Path:
    """Write ``reports/report.md``: the headline figures, stages with times, and every PNG."""
    lines = ["# iris run report", "", "## Headline", ""]
    lines += [f"- **{key}**: {value}" for key, value in headline.items()]
    lines += ["", "## Stages", "", "| stage | seconds | summary |", "|---|---:|---|"]
    for row in stage_rows(state):
        lines.append(
            f"| {row['stage']} | {row['seconds'] if row['seconds'] is not None else ''} | {row['summary']} |"
        )
    from iris.report.rounds import read_rounds, rounds_markdown

    rounds = read_rounds(workdir)
    if rounds is not None and rounds.height:
        lines += ["", "## Crowd rounds", "", *rounds_markdown(rounds)]
    pngs = sorted(workdir.reports.glob("*.png"))
    if pngs:
        lines += ["", "## Pictures", ""]
        lines += [f"![{png.stem}]({png.name})" for png in pngs]
    path = workdir.reports / "report.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
