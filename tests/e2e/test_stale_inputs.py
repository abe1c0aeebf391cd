"""Runs that are right or refuse: ``iris run`` after an input changed re-runs what it feeds.

One small real pipeline (Fashion-MNIST, through propagate) is run once; each test works on
a copy of its work directory. Editing ground-truth labels and running ``iris ingest`` then
``iris run`` re-runs ingest and every later stage, refreshes the labels in Qdrant, buys only
the images new on the shortlist, and ends where a fresh run on the edited data ends.

The small run buys from the crowd by the seed's method (``[rounds] strategy = "seed"``: one
campaign on the shortlist, a new campaign round for a changed shortlist); the last test
edits the ground truth under the default crowd rounds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from iris.cli import main
from iris.config import render_toml
from iris.data.fashion_mnist import build
from iris.demo import manifests
from iris.store import open_store
from iris.workdir import Workdir, init_workdir

sys.path.insert(0, str(Path(__file__).parent))
from test_pipeline_resume import FASHION, _env, _settings, _state

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not FASHION.exists(), reason="needs the Debian package dataset-fashion-mnist"),
]

THROUGH = ["--until", "propagate"]
LATER = ("embed", "pseudolabel", "select", "crowd", "aggregate", "propagate")


def _write_settings(
    workdir: Workdir, data: Path, *, strategy: str = "seed", **changes: dict[str, object]
) -> None:
    """The small run's settings, with ``section={key: value}`` changes."""
    settings = _settings(data)
    settings = replace(
        settings,
        crowd=replace(settings.crowd, pace_s=0.0),
        rounds=replace(settings.rounds, strategy=strategy),  # type: ignore[arg-type]
    )
    for section, values in changes.items():
        settings = replace(settings, **{section: replace(getattr(settings, section), **values)})
    workdir.config.write_text(render_toml(settings), encoding="utf-8")


def _iris(workdir: Workdir, *args: str) -> str:
    command = [sys.executable, "-m", "iris", "--workdir", str(workdir.root), *args]
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def _manifest_args(data: Path) -> list[str]:
    m = manifests(data)
    return ["--ground-truth", m["ground_truth"], "--pool", m["pool"][0], "--test", m["test"]]


def _first_run(root: Path, data: Path, *, strategy: str = "seed") -> Workdir:
    workdir = init_workdir(root)
    _write_settings(workdir, data, strategy=strategy)
    _iris(workdir, "run", *_manifest_args(data), *THROUGH)
    return workdir


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workdir, Path]:
    root = tmp_path_factory.mktemp("stale")
    data = root / "data"
    build(data, n_labeled=60, limit=480, seed=0)
    return _first_run(root / "work", data), data


def _copy(base: tuple[Workdir, Path], tmp_path: Path) -> Workdir:
    return Workdir(Path(shutil.copytree(base[0].root, tmp_path / "work")))


def _purchases(workdir: Workdir) -> dict[Path, list[dict]]:
    """Every round's purchase log, round 0 first: the page records (those with tasks)."""

    def round_number(log: Path) -> int:
        parts = log.relative_to(workdir.crowd).parts
        return int(parts[1]) if parts[0] == "rounds" else 0

    logs = {}
    for log in sorted(workdir.crowd.rglob("pages.jsonl"), key=round_number):
        records = [json.loads(line) for line in log.read_text().splitlines()]
        logs[log.relative_to(workdir.crowd)] = [r for r in records if "tasks" in r]
    return logs


def _plan_rows(workdir: Workdir, *args: str) -> list[list[str]]:
    result = CliRunner().invoke(main, ["--workdir", str(workdir.root), "run", "--dry-run", *args])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "plan (dry run: nothing is run)"
    rows = [line.split(None, 2) if "will run" not in line else _split_run(line) for line in lines[3:]]
    return [[cell.strip() for cell in row] for row in rows]


def _split_run(line: str) -> list[str]:
    stage, rest = line.split(None, 1)
    return [stage, "will run", rest.removeprefix("will run").strip()]


def test_an_unchanged_rerun_skips_every_stage(base: tuple[Workdir, Path], tmp_path: Path) -> None:
    workdir = _copy(base, tmp_path)
    before = _state(workdir)
    out = _iris(workdir, "run", *THROUGH)
    for stage in ("ingest", *LATER):
        assert f"[{stage}] done already, skipped" in out
    assert "re-running" not in out
    assert _state(workdir)["stages"] == before["stages"]
    assert [row[:2] for row in _plan_rows(workdir)] == [
        ["ingest", "skip"], ["embed", "skip"], ["pseudolabel", "skip"], ["select", "skip"],
        ["crowd", "skip"], ["aggregate", "skip"], ["propagate", "skip"],
        ["train", "will run"], ["predict", "will run"],
    ]  # fmt: skip


def test_dry_run_shows_a_changed_setting_and_runs_nothing(base: tuple[Workdir, Path], tmp_path: Path) -> None:
    workdir = _copy(base, tmp_path)
    _write_settings(workdir, base[1], propagate={"ks": (3, 5)})
    before = (workdir.root / "state.json").read_text()
    assert _plan_rows(workdir, *THROUGH) == [
        ["ingest", "skip", "inputs unchanged"],
        ["embed", "skip", "inputs unchanged"],
        ["pseudolabel", "skip", "inputs unchanged"],
        ["select", "skip", "inputs unchanged"],
        ["crowd", "skip", "inputs unchanged"],
        ["aggregate", "skip", "inputs unchanged"],
        ["propagate", "will run", "settings [propagate] changed"],
        ["train", "skip", "after --until propagate"],
        ["predict", "skip", "after --until propagate"],
    ]
    assert (workdir.root / "state.json").read_text() == before


def test_a_changed_propagate_setting_reruns_propagate_only(
    base: tuple[Workdir, Path], tmp_path: Path
) -> None:
    workdir = _copy(base, tmp_path)
    before = _state(workdir)["stages"]
    _write_settings(workdir, base[1], propagate={"ks": (3,)})
    out = _iris(workdir, "run", *THROUGH)
    assert "re-running propagate: settings [propagate] changed" in out
    for stage in ("ingest", "embed", "pseudolabel", "select", "crowd", "aggregate"):
        assert f"[{stage}] done already, skipped" in out
    assert "[propagate] finished" in out
    after = _state(workdir)["stages"]
    assert after["propagate"]["summary"]["k"] == 3
    assert {k: v for k, v in after.items() if k != "propagate"} == {
        k: v for k, v in before.items() if k != "propagate"
    }


def test_a_changed_select_setting_reruns_select_on_the_ground_truth_labels(
    base: tuple[Workdir, Path], tmp_path: Path
) -> None:
    """Propagate labeled the whole pool in the store; select re-run alone must see it unlabeled."""
    workdir = _copy(base, tmp_path)
    before = _state(workdir)["stages"]
    _write_settings(workdir, base[1], select={"neighbours": 3})
    out = _iris(workdir, "run", *THROUGH)
    assert "re-running select and the 3 stages after it: settings [select] changed" in out
    assert "[pseudolabel] done already, skipped" in out
    after = _state(workdir)["stages"]
    for key in ("pool", "problematic"):
        assert after["select"]["summary"][key] == before["select"]["summary"][key], key
    assert after["select"]["summary"]["k"] == 3
    assert after["pseudolabel"] == before["pseudolabel"]


def _flip_three_labels(base_data: Path, tmp_path: Path) -> tuple[Path, dict[str, int]]:
    """A copy of the data whose ground truth has rows 1-3 flipped, and their new labels."""
    data = Path(shutil.copytree(base_data, tmp_path / "edited"))
    gt_file = data / "ground_truth.tsv"
    lines = gt_file.read_text().splitlines()
    flipped = {}
    for row in (1, 2, 3):
        source, label = lines[row].split("\t")
        flipped[source] = 0 if label == "TRUE" else 1
        lines[row] = f"{source}\t{'FALSE' if label == 'TRUE' else 'TRUE'}"
    gt_file.write_text("\n".join(lines) + "\n")
    return data, flipped


def test_edited_ground_truth_under_crowd_rounds_relabels_and_buys_nothing_again(
    base: tuple[Workdir, Path], tmp_path: Path
) -> None:
    workdir = _first_run(tmp_path / "rounds", base[1], strategy="iris")
    bought_before = _purchases(workdir)
    drawn_before = pl.read_parquet(workdir.table("round_tasks"))
    assert drawn_before.height and bought_before
    data, flipped = _flip_three_labels(base[1], tmp_path)
    _iris(workdir, "ingest", *_manifest_args(data))
    out = _iris(workdir, "run", *THROUGH)
    assert "[crowd] finished" in out and "[propagate] finished" in out
    # Every recorded round stands (its answers are good labels): nothing drawn or bought again.
    assert _purchases(workdir) == bought_before
    assert pl.read_parquet(workdir.table("round_tasks")).equals(drawn_before)
    # The final labels carry the edited ground truth; the rounds' labels were made again with it.
    images = pl.read_parquet(workdir.table("images")).filter(pl.col("source").is_in(list(flipped)))
    final = pl.read_parquet(workdir.table("final_labels")).join(images.select("id", "source"), on="id")
    assert dict(final.select("source", "label").iter_rows()) == flipped
    assert set(final["origin"].to_list()) == {"gt"}
    assert workdir.table("round_labels").stat().st_mtime > workdir.table("rounds").stat().st_mtime


def test_edited_ground_truth_reruns_everything_and_buys_only_new_images(
    base: tuple[Workdir, Path], tmp_path: Path
) -> None:
    workdir = _copy(base, tmp_path)
    data, flipped = _flip_three_labels(base[1], tmp_path)
    bought_before = _purchases(workdir)
    old_stages = _state(workdir)["stages"]

    _iris(workdir, "ingest", *_manifest_args(data))
    out = _iris(workdir, "run", *THROUGH)

    assert "re-running ingest and the 6 stages after it: ground-truth manifest" in out
    stages = _state(workdir)["stages"]
    for stage in ("ingest", *LATER):
        assert f"[{stage}] finished" in out
        assert stages[stage]["inputs"] != old_stages[stage]["inputs"], stage
    assert stages["embed"]["summary"]["model_reused"] is False

    # The images table and the Qdrant payload carry the edited labels.
    images = pl.read_parquet(workdir.table("images"))
    gt = images.filter(pl.col("split") == "gt")
    edited = gt.filter(pl.col("source").is_in(list(flipped)))
    assert dict(edited.select("source", "label").iter_rows()) == flipped
    with open_store(workdir, workdir.settings()) as store:
        exported = store.export()
    payload = dict(zip(exported.ids.tolist(), exported.payloads, strict=True))
    for image_id, label in gt.select("id", "label").iter_rows():
        assert payload[image_id]["label"] == label
        assert payload[image_id]["has_label"] is True

    # The crowd: round 0's log is as it was, no page twice, no image bought twice.
    bought = _purchases(workdir)
    first_round = Path("simulated") / "pages.jsonl"
    assert bought[first_round] == bought_before[first_round]
    keys = [(log, r["key"]) for log, records in bought.items() for r in records]
    assert len(keys) == len(set(keys))
    per_round = [
        {t for r in records for t, hp in zip(r["tasks"], r["honeypot"], strict=True) if not hp}
        for records in bought.values()
    ]
    assert list(bought) == [first_round, Path("rounds/1/simulated/pages.jsonl")]
    assert not per_round[0] & per_round[1]
    shortlist = set(pl.read_parquet(workdir.table("shortlist"))["id"])
    assert per_round[1] == shortlist - per_round[0]
    answers = pl.read_parquet(workdir.table("answers"))
    assert answers.filter(pl.struct("task", "worker", "page").is_duplicated()).height == 0

    # A fresh run on the edited data: the same embedder, automatic labels and shortlist, and
    # the same final labels for every image neither run's crowd labeled.
    fresh = _first_run(tmp_path / "fresh", data)
    for table in ("images", "pseudolabels", "shortlist"):
        assert pl.read_parquet(workdir.table(table)).equals(pl.read_parquet(fresh.table(table))), table
    assert (
        json.loads((workdir.models / "embedder.json").read_text())["fingerprint"]
        == json.loads((fresh.models / "embedder.json").read_text())["fingerprint"]
    )
    mine = pl.read_parquet(workdir.table("final_labels")).select("id", "label", "origin").sort("id")
    theirs = pl.read_parquet(fresh.table("final_labels")).select("id", "label", "origin").sort("id")
    assert mine["id"].equals(theirs["id"])
    not_crowd = mine.join(theirs, on="id", suffix="_fresh").filter(
        (pl.col("origin") != "crowd") & (pl.col("origin_fresh") != "crowd")
    )
    assert not_crowd["label"].equals(not_crowd["label_fresh"])
    assert not_crowd["origin"].equals(not_crowd["origin_fresh"])
    assert mine.filter(pl.col("origin") == "gt").equals(theirs.filter(pl.col("origin") == "gt"))
