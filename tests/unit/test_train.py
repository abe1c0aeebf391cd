"""Final training on a tiny real set (digits 0 vs 1 at 32 px): resume, early stop, errors."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import pytest
import torch
from test_train_fixtures import make_digits_workdir

from iris import tables
from iris.config import Settings
from iris.errors import ConfigError, StageOrderError
from iris.report.training import TrainingPlot
from iris.tables import FINAL_LABELS
from iris.train.checkpoint import load_checkpoint
from iris.train.data import split_validation
from iris.train.fit import EpochEnd
from iris.train.loop import train_workdir
from iris.workdir import init_workdir

torch.set_num_threads(2)


class Interrupted(Exception):
    """Stands in for a kill right after a checkpoint was written."""


def tiny(settings: Settings, **train: object) -> Settings:
    base = {
        "backbone": "resnet18",
        "weights": "none",
        "image_size": 32,
        "batch_size": 12,
        "epochs": 3,
        "warmup_steps": 4,
        "lr_factor": 0.05,
        "val_fraction": 0.25,
        "patience": 5,
    }
    return replace(settings, train=replace(settings.train, **{**base, **train}))  # type: ignore[arg-type]


@pytest.fixture
def digits(workdir):
    make_digits_workdir(workdir)
    return workdir


def interrupt_after(epoch: int):
    def hook(end: EpochEnd) -> None:
        if end.row["epoch"] == epoch:
            raise Interrupted

    return hook


def test_split_is_stratified_and_seeded() -> None:
    labels = np.array([0] * 30 + [1] * 10)
    train, val = split_validation(labels, fraction=0.2, seed=1)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(40))
    assert (labels[val] == 0).sum() == 6 and (labels[val] == 1).sum() == 2
    again = split_validation(labels, fraction=0.2, seed=1)
    assert np.array_equal(val, again[1])


@pytest.mark.parametrize(
    ("freeze", "head", "epochs", "stop_at"), [(True, "mlp", 4, 2), (False, "linear", 2, 1)]
)
def test_resume_continues_at_the_right_epoch_and_matches_an_uninterrupted_run(
    tmp_path, freeze: bool, head: str, epochs: int, stop_at: int
) -> None:
    # 16 px and 24 images keep the fine-tuning variant to a few seconds on 2 cores.
    settings = tiny(
        Settings(), freeze_backbone=freeze, head=head, epochs=epochs, confidence_weighting=True, image_size=16
    )
    straight = init_workdir(tmp_path / "straight")
    make_digits_workdir(straight, n_labeled=24, n_test=0)
    reference = train_workdir(straight, settings)

    resumed_dir = init_workdir(tmp_path / "resumed")
    make_digits_workdir(resumed_dir, n_labeled=24, n_test=0)
    with pytest.raises(Interrupted):
        train_workdir(resumed_dir, settings, on_epoch=interrupt_after(stop_at))
    assert load_checkpoint(resumed_dir.models / "classifier" / "last.pt")["epoch"] == stop_at
    lines: list[str] = []
    plot = TrainingPlot(resumed_dir.reports / "training.png")
    resumed = train_workdir(resumed_dir, settings, log=lines.append, on_epoch=plot)

    assert resumed.resumed_from_epoch == stop_at
    assert resumed.epochs == epochs == reference.epochs
    assert [row["epoch"] for row in resumed.history] == list(range(1, epochs + 1))
    assert any(f"resuming after epoch {stop_at}" in line for line in lines)
    # Same seed, same data: the interrupted run ends where the uninterrupted one does.
    for a, b in zip(resumed.history, reference.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-4)
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-4)
    assert (resumed_dir.reports / "training.png").stat().st_size > 0
    best = load_checkpoint(resumed_dir.models / "classifier" / "best.pt")
    assert best["epoch"] == resumed.best_epoch and best["config"]["head"] == head

    # A finished run is not trained again.
    again = train_workdir(resumed_dir, settings)
    assert again.resumed_from_epoch == epochs and again.seconds_per_epoch is None


def test_early_stopping_after_patience_epochs_without_improvement(digits) -> None:
    # A learning rate this small leaves the head unchanged: no epoch improves on the first.
    settings = tiny(Settings(), freeze_backbone=True, lr_factor=1e-12, epochs=6, patience=2)
    result = train_workdir(digits, settings)
    assert result.stopped_early
    assert result.epochs == 3 and result.best_epoch == 1


def test_changed_labels_start_training_again(digits) -> None:
    settings = tiny(Settings(), freeze_backbone=True, epochs=2)
    train_workdir(digits, settings)
    final = tables.read(digits.table("final_labels"), FINAL_LABELS)
    first = pl.col("id") == final["id"][0]
    flipped = final.with_columns(pl.when(first).then(1 - pl.col("label")).otherwise("label").alias("label"))
    tables.write(flipped.cast(FINAL_LABELS), digits.table("final_labels"))  # type: ignore[arg-type]
    lines: list[str] = []
    longer = replace(settings, train=replace(settings.train, epochs=3))
    result = train_workdir(digits, longer, log=lines.append)
    assert result.resumed_from_epoch == 0 and result.epochs == 3
    assert "starting again" in lines[0]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("schedule", "linear", "train.schedule: got 'linear'"),
        ("head", "transformer", "train.head: got 'transformer'"),
        ("device", "tpu", "train.device: got 'tpu'"),
    ],
)
def test_bad_settings_are_config_errors(digits, key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(")", r"\)")):
        train_workdir(digits, tiny(Settings(), **{key: value}))


def test_training_before_propagation_names_the_stage(workdir) -> None:
    with pytest.raises(StageOrderError, match="iris propagate"):
        train_workdir(workdir, tiny(Settings()))


@pytest.mark.parametrize("size", [16, 32, 64, 96])
def test_augmentation_keeps_the_size_and_varies_the_image(size: int) -> None:
    from iris.train.data import augmentation

    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8)
    outputs = [augmentation(size)(image) for _ in range(4)]
    assert all(o.shape == (3, size, size) and o.dtype == torch.uint8 for o in outputs)
    assert any(not torch.equal(o, image) for o in outputs)


def test_warmup_longer_than_the_run_is_capped_and_lr_follows_noam(digits) -> None:
    from iris.train.schedule import ScheduleParams, noam

    settings = tiny(Settings(), freeze_backbone=True, epochs=2, warmup_steps=200, lr_factor=1.0)
    lines: list[str] = []
    result = train_workdir(digits, settings, log=lines.append)
    # 36 training images in batches of 12: 3 steps per epoch, 6 planned, warmup capped to 3
    assert lines[0] == "warmup_steps 200 capped to 3: half of the 6 planned steps"
    params = ScheduleParams(factor=1.0, model_size=256, warmup=3, total=6)
    assert result.history[0]["lr"] == pytest.approx(noam(4, params))  # rate for the next step
    assert result.history[1]["lr"] == pytest.approx(noam(7, params))


def test_training_modules_do_not_draw() -> None:
    """Plotting is the report's job (an epoch hook): importing the training stage pulls in
    no matplotlib."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import iris.train.loop, iris.train.fit, iris.train.inputs, iris.train.resume\n"
        "print('matplotlib' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
