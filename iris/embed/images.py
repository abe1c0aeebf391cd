"""Image loading shared by fine-tuning, export, encoding and the embed stage.

Every model iris exports takes **uint8 RGB pixels, shape (n, size, size, 3)** and does
its own scaling and normalisation inside the graph (see :mod:`iris.embed.backbones`),
so the only preprocessing outside a model is decode → RGB → resize, done here once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from iris.errors import InputError

Pixels = npt.NDArray[np.uint8]


def to_pixels(image: Image.Image, size: int) -> Pixels:
    """One PIL image as uint8 RGB pixels of shape (size, size, 3).

    The image is resized to a square without cropping: labeling needs the whole
    picture, and the pools iris targets are mostly square already.
    """
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def load_pixels(path: Path, size: int) -> Pixels:
    """Decode an image file into uint8 RGB pixels of shape (size, size, 3).

    Raises:
        InputError: the file is missing or is not a decodable image.
    """
    try:
        with Image.open(path) as image:
            image.load()
            return to_pixels(image, size)
    except FileNotFoundError:
        raise InputError(f"{path}: image file not found; re-run `iris ingest`") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{path}: cannot decode image ({exc})") from None


def batch_pixels(images: Sequence[Image.Image], size: int) -> Pixels:
    """A batch of PIL images as uint8 pixels of shape (n, size, size, 3)."""
    if not images:
        return np.zeros((0, size, size, 3), dtype=np.uint8)
    return np.stack([to_pixels(image, size) for image in images])


def load_batch(paths: Sequence[Path], size: int) -> Pixels:
    """Decode image files into uint8 pixels of shape (n, size, size, 3)."""
    if not paths:
        return np.zeros((0, size, size, 3), dtype=np.uint8)
    return np.stack([load_pixels(path, size) for path in paths])
