"""The simulated people's difficulty: a cross-fitted pixel model of the answer key, not iris's doubt."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from iris import tables
from iris.config import Settings
from iris.crowd.backends.base import CampaignInputs
from iris.crowd.backends.simulated import DIFFICULTY, drawn_difficulty, load_difficulty
from iris.crowd.difficulty import SCALE, pixel_difficulty, read_pixels
from iris.crowd.spec import CampaignSpec
from iris.errors import InputError


def _two_blobs(n: int, seed: int = 0, side: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Class 1 bright on the first half of the pixels, class 0 on the second, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    half = side * side // 2
    pixels = rng.uniform(0, 0.3, size=(n, 2 * half))
    pixels[labels == 1, :half] += 0.7
    pixels[labels == 0, half:] += 0.7
    return pixels, labels


def test_clear_images_are_easy_and_a_look_alike_is_hard() -> None:
    pixels, labels = _two_blobs(200, side=8)
    pixels[0] = pixels[1]  # image 0 (class 0) looks exactly like a class-1 image
    d = pixel_difficulty(pixels, labels, seed=0)
    assert d.shape == (200,)
    assert ((d >= 0) & (d <= SCALE)).all()
    assert int(np.argmax(d)) == 0
    assert d[0] > SCALE / 2  # the model leans the wrong way on it
    assert np.median(d[1:]) < 0.2 * SCALE


def test_cross_fitting_does_not_memorise_labels() -> None:
    # Noise pixels and coin-flip labels: a model scored on its own training images would call
    # most of them easy; scored out of fold, they sit near the coin toss (difficulty ≈ SCALE / 2).
    rng = np.random.default_rng(3)
    pixels = rng.normal(size=(200, 300))
    labels = rng.integers(0, 2, size=200)
    d = pixel_difficulty(pixels, labels, seed=0)
    assert 0.4 * SCALE < float(d.mean()) < 0.6 * SCALE


def test_seeded_and_scaled() -> None:
    pixels, labels = _two_blobs(40)
    a = pixel_difficulty(pixels, labels, seed=1)
    assert np.array_equal(a, pixel_difficulty(pixels, labels, seed=1))
    half = pixel_difficulty(pixels, labels, seed=1, scale=0.4)
    assert np.allclose(half, a * 0.4 / SCALE)


@pytest.mark.parametrize(
    ("pixels", "labels", "says"),
    [
        (np.zeros((4, 3)), np.zeros(5, dtype=int), "disagree"),
        (np.zeros((10, 3)), np.array([0, 1, 2] + [0] * 7), "0 or 1"),
        (np.zeros((10, 3)), np.array([1] * 3 + [0] * 7), "at least folds=5"),
    ],
)
def test_bad_input_is_refused(pixels: np.ndarray, labels: np.ndarray, says: str) -> None:
    with pytest.raises(InputError, match=says):
        pixel_difficulty(pixels, labels)


def test_read_pixels_resizes_to_grey(tmp_path: Path) -> None:
    Image.new("RGB", (56, 56), (255, 255, 255)).save(tmp_path / "white.png")
    Image.new("L", (28, 28), 0).save(tmp_path / "black.png")
    out = read_pixels([tmp_path / "white.png", tmp_path / "black.png"])
    assert out.shape == (2, 28 * 28) and out.dtype == np.float32
    assert np.allclose(out[0], 1.0) and np.allclose(out[1], 0.0)
    with pytest.raises(InputError, match=r"missing\.png"):
        read_pixels([tmp_path / "missing.png"])


def _workdir(tmp_path: Path, n: int = 40) -> tuple[CampaignInputs, Settings, list[int]]:
    """A work directory with an images table, image files and an answer key for the pool."""
    pixels, labels = _two_blobs(n, seed=5)
    (tmp_path / "images").mkdir()
    ids = list(range(100, 100 + n))
    paths = []
    for i, row in zip(ids, pixels, strict=True):
        big = np.kron(np.clip(row, 0, 1).reshape(4, 4), np.ones((7, 7)))
        Image.fromarray((big * 255).astype(np.uint8)).save(tmp_path / "images" / f"{i}.png")
        paths.append(f"images/{i}.png")
    n_gt = 10
    images = pl.DataFrame(
        {
            "id": ids,
            "source": [f"src/{i}.png" for i in ids],
            "path": paths,
            "split": ["gt"] * n_gt + ["pool"] * (n - n_gt),
            "label": [int(v) for v in labels[:n_gt]] + [None] * (n - n_gt),
            "width": [28] * n,
            "height": [28] * n,
            "sha256": [str(i) for i in ids],
        },
        schema=tables.IMAGES,
    )
    tables.write(images, tmp_path / "tables" / "images.parquet")
    key = tmp_path / "key.csv"
    rows = zip(ids[n_gt:], labels[n_gt:], strict=True)
    key.write_text("source,label\n" + "".join(f"src/{i}.png,{int(v)}\n" for i, v in rows))
    settings = Settings()
    settings = replace(settings, crowd=replace(settings.crowd, answer_key=str(key)))
    spec = CampaignSpec.from_settings(settings)
    gt = images.head(n_gt).select("id", "source", "path", "label").with_columns(role=pl.lit("honeypot"))
    tasks = images.tail(n - n_gt).select("id", "source", "path").with_row_index("priority")
    inputs = CampaignInputs(spec=spec, tasks=tasks, ground_truth=gt, root=tmp_path)
    return inputs, settings, ids


def test_load_difficulty_fits_the_answer_key_and_caches(tmp_path: Path) -> None:
    inputs, settings, ids = _workdir(tmp_path)
    cache = tmp_path / "crowd" / "difficulty.parquet"
    fitted = load_difficulty(inputs, ids, seed=0, settings=settings, cache=cache)
    assert set(fitted) == set(ids)
    assert all(0.0 <= d <= SCALE for d in fitted.values())
    assert fitted != drawn_difficulty(ids, seed=0)
    table = tables.read(cache, DIFFICULTY)
    assert sorted(table["id"].to_list()) == ids
    # The cache is read back, not refitted: change it and the change shows.
    tables.write(table.with_columns(difficulty=pl.lit(0.25)), cache)
    again = load_difficulty(inputs, ids, seed=0, settings=settings, cache=cache)
    assert set(again.values()) == {0.25}


def test_load_difficulty_does_not_depend_on_pseudolabels(tmp_path: Path) -> None:
    inputs, settings, ids = _workdir(tmp_path)
    before = load_difficulty(inputs, ids, seed=0, settings=settings)
    pseudo = pl.DataFrame(
        {"id": ids, "knn_share": [0.0] * len(ids)}, schema={"id": pl.Int64, "knn_share": pl.Float64}
    )
    pseudo.write_parquet(tmp_path / "tables" / "pseudolabels.parquet")
    assert load_difficulty(inputs, ids, seed=0, settings=settings) == before


def test_without_settings_or_images_the_difficulty_is_drawn(tmp_path: Path) -> None:
    inputs, settings, ids = _workdir(tmp_path)
    assert load_difficulty(inputs, ids, seed=2) == drawn_difficulty(ids, seed=2)
    bare = replace(inputs, root=tmp_path / "elsewhere")
    assert load_difficulty(bare, ids, seed=2, settings=settings) == drawn_difficulty(ids, seed=2)
