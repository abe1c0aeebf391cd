"""``iris predict``: ONNX export with parity, one row per test manifest row, contest format."""

from __future__ import annotations

from dataclasses import replace

import polars as pl
import pytest
import torch
from test_train_fixtures import make_digits_workdir, write_ingest_record

from iris.config import Settings
from iris.errors import InputError, StageOrderError
from iris.train.loop import train_workdir
from iris.train.predict import predict_workdir
from iris.train.submission import read_submission

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A work directory with a trained classifier (frozen random-init ResNet-18, 32 px)."""
    from iris.workdir import init_workdir

    workdir = init_workdir(tmp_path_factory.mktemp("predict") / "work")
    truth = make_digits_workdir(workdir)
    settings = Settings()
    settings = replace(
        settings,
        train=replace(
            settings.train,
            backbone="resnet18",
            weights="none",
            image_size=32,
            batch_size=8,
            epochs=8,
            warmup_steps=5,
            lr_factor=0.5,
            freeze_backbone=True,
        ),
    )
    train_workdir(workdir, settings)
    order = write_ingest_record(workdir, list(truth), extra=["http://example.org/gone.jpg"])
    return workdir, settings, truth, order


def test_submission_parses_back_in_the_contest_format(trained, tmp_path) -> None:
    workdir, settings, truth, order = trained
    out = tmp_path / "submission.csv"

    report = predict_workdir(workdir, settings, out=out, probabilities=True)

    lines = out.read_text().splitlines()
    assert lines[0] == "downloadUrl,is_conifer,probability"
    assert {line.split(",")[1] for line in lines[1:]} <= {"TRUE", "FALSE"}
    parsed = read_submission(out, workdir)
    assert parsed["source"].to_list() == order  # manifest order, one row per test row
    assert report.rows == len(order) == len(truth) + 1
    assert report.images == len(truth) and report.fallback == 1
    assert report.parity_max_abs_diff <= 1e-3
    assert parsed["label"].dtype == pl.Int8
    assert ((parsed["probability"] > 0.5).cast(pl.Int8) == parsed["label"]).all()
    assert report.positive == int(parsed["label"].sum())
    labels = dict(zip(parsed["source"], parsed["label"], strict=True))
    accuracy = sum(labels[s] == y for s, y in truth.items()) / len(truth)
    assert accuracy >= 0.75  # digits 0 vs 1 separate even on random-init features


def test_without_probabilities_and_as_tsv(trained, tmp_path) -> None:
    workdir, settings, _, order = trained
    out = tmp_path / "submission.tsv"
    predict_workdir(workdir, settings, out=out)
    assert out.read_text().splitlines()[0] == "downloadUrl\tis_conifer"
    parsed = read_submission(out, workdir)
    assert parsed.columns == ["source", "label"] and parsed.height == len(order)
    # the export is reused, not redone, when the checkpoint has not changed
    onnx = workdir.models / "classifier.onnx"
    stamp = onnx.stat().st_mtime_ns
    predict_workdir(workdir, settings, out=out)
    assert onnx.stat().st_mtime_ns == stamp


def test_a_bad_label_cell_is_reported_with_its_line(trained, tmp_path) -> None:
    workdir, _, _, _ = trained
    bad = tmp_path / "bad.csv"
    bad.write_text("downloadUrl,is_conifer\na.png,TRUE\nb.png,maybe\n")
    with pytest.raises(InputError, match=r"bad.csv:3: label 'maybe' is neither 'TRUE' nor 'FALSE'"):
        read_submission(bad, workdir)


def test_predict_before_training_names_the_stage(workdir) -> None:
    make_digits_workdir(workdir)
    write_ingest_record(workdir, ["data/digit_50.png"])
    with pytest.raises(StageOrderError, match=r"best\.pt does not exist yet; run `iris train` first"):
        predict_workdir(workdir, Settings())
