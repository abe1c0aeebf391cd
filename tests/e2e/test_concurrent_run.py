"""Two ``python -m iris run`` at once in one work directory, as two terminals would start
them: the second is refused at once with one line naming the first's PID and command, and
the first buys every crowd page once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from simulated_pages import pages_bought

from iris.config import Settings, render_toml
from iris.data.fashion_mnist import build
from iris.demo import manifests
from iris.lock import LOCK_FILE, read_holder
from iris.workdir import Workdir, init_workdir

pytestmark = pytest.mark.slow

FASHION = Path("/usr/share/datasets/fashion-mnist")


def _settings(data: Path) -> Settings:
    base = Settings()
    return replace(
        base,
        task=replace(base.task, label_column="is_shirt", positive_name="shirt", negative_name="T-shirt/top"),
        embed=replace(base.embed, backbone="efficientnet_lite0", image_size=32, finetune_epochs=1),
        pseudolabel=replace(base.pseudolabel, estimate_folds=0),
        select=replace(base.select, map_points=0),
        crowd=replace(base.crowd, training=10, exam=10, answer_key=str(data / "answer_key.csv")),
        train=replace(base.train, backbone="efficientnet_lite0", image_size=32, epochs=1),
    )


def _command(workdir: Workdir, data: Path) -> list[str]:
    m = manifests(data)
    return [
        sys.executable, "-m", "iris", "--workdir", str(workdir.root), "run",
        "--ground-truth", m["ground_truth"], "--pool", m["pool"][0], "--test", m["test"],
        "--until", "crowd",
    ]  # fmt: skip


def _env() -> dict[str, str]:
    here = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "IRIS_PROGRESS": "0", "OMP_NUM_THREADS": "2", "PYTHONPATH": path}


@pytest.mark.skipif(not FASHION.exists(), reason="needs the Debian package dataset-fashion-mnist")
def test_a_second_run_in_the_same_workdir_is_refused_and_nothing_is_bought_twice(tmp_path: Path) -> None:
    data = tmp_path / "data"
    build(data, n_labeled=60, limit=300, seed=0)
    workdir = init_workdir(tmp_path / "work")
    workdir.config.write_text(render_toml(_settings(data)), encoding="utf-8")
    command = _command(workdir, data)

    log = tmp_path / "first.log"
    with log.open("w") as sink:
        first = subprocess.Popen(command, env=_env(), stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while read_holder(workdir.root / LOCK_FILE).pid != first.pid:
            assert first.poll() is None, (
                f"the first run ended before it held the lock: {log.read_text()[-2000:]}"
            )
            assert time.monotonic() < deadline, "the first run never took the lock"
            time.sleep(0.05)

        second = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=300)
        assert first.poll() is None, "the first run ended before the second started: nothing was tested"
        assert second.returncode == 2
        assert second.stdout == ""  # not a stage started
        expected = (
            rf"iris: error: {re.escape(str(workdir.root))} is in use by PID {first.pid} "
            rf"\({re.escape('iris ' + ' '.join(command[3:]))}, since \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC\); "
            r"wait for it to finish or stop it, then run this again\n"
        )
        assert re.fullmatch(expected, second.stderr), second.stderr

        assert first.wait(timeout=900) == 0, log.read_text()[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert "[crowd] finished" in log.read_text()

    bought = pages_bought(workdir)
    assert bought, "the campaign bought nothing"
    assert len(bought) == len(set(bought)), "a crowd page was bought twice"

    # the lock went with the first run: a third run gets it, finds everything done, buys nothing
    third = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stderr[-2000:]
    assert "[crowd] done already, skipped" in third.stdout
    assert pages_bought(workdir) == bought
