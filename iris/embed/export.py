"""Export a :class:`~iris.embed.backbones.PixelNet` to ONNX and prove it computes the same thing.

The graph takes ``pixels``: uint8 (batch, size, size, 3) with a dynamic batch axis, and
returns ``features``: float32 (batch, dim), not yet L2-normalised (the encoder does that,
so parity is measured on the raw features where differences are not scaled away).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import torch

from iris.embed.backbones import PixelNet
from iris.errors import ModelError

INPUT_NAME = "pixels"
OUTPUT_NAME = "features"


@dataclass(frozen=True)
class ParityReport:
    """Torch vs ONNX Runtime on the same images."""

    max_abs_diff: float
    n_images: int
    tolerance: float


def export_onnx(net: PixelNet, path: Path, *, image_size: int) -> Path:
    """Write ``net`` as a single-file ONNX model with a dynamic batch axis (atomically).

    Raises:
        ModelError: the exporter failed.
    """
    tmp = path.with_name(path.name + ".tmp")
    export_pixel_model(
        net.eval().cpu(), tmp, image_size=image_size, output_name=OUTPUT_NAME, what=net.backbone_name
    )
    tmp.replace(path)
    return path


def export_pixel_model(
    module: torch.nn.Module, path: Path, *, image_size: int, output_name: str, what: str
) -> Path:
    """Write ``module`` (uint8 RGB ``(n, size, size, 3)`` in, input ``pixels``) to ``path`` as a
    single-file ONNX model with a dynamic batch axis. The embedder and the final classifier
    are both exported through here.

    Raises:
        ModelError: the exporter failed (``path`` is removed).
    """
    example = torch.zeros((2, image_size, image_size, 3), dtype=torch.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The dynamo exporter prints its steps and warns loudly; keep the CLI output readable.
    quiet = io.StringIO()
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(quiet),
            _quiet_logger("torch.onnx"),
            _quiet_logger("onnxscript"),
        ):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (example,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=[output_name],
                dynamic_shapes={INPUT_NAME: {0: torch.export.Dim("batch", min=1, max=65536)}},
                dynamo=True,
                external_data=False,
                verbose=False,
            )
    except Exception as exc:
        path.unlink(missing_ok=True)
        raise ModelError(f"ONNX export of {what} failed: {type(exc).__name__}: {exc}") from None
    return path


@contextlib.contextmanager
def _quiet_logger(name: str):  # type: ignore[no-untyped-def]
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def cpu_session(path: Path) -> ort.InferenceSession:
    """An ONNX Runtime CPU session for ``path`` (parity is a CPU-to-CPU comparison)."""
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@torch.no_grad()
def check_parity(
    net: PixelNet, onnx_path: Path, pixels: npt.NDArray[np.uint8], *, tolerance: float
) -> ParityReport:
    """Run the same pixels (n, size, size, 3) through torch and ONNX Runtime; compare features.

    Raises:
        ModelError: the largest absolute difference is above ``tolerance``.
    """
    if len(pixels) == 0:
        raise ModelError("parity check needs at least one image; the images table is empty")
    expected = net.eval()(torch.from_numpy(np.ascontiguousarray(pixels))).numpy()
    session = cpu_session(onnx_path)
    actual = session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(pixels)})[0]
    if actual.shape != expected.shape:
        raise ModelError(f"{onnx_path}: ONNX output shape {actual.shape}, torch gives {expected.shape}")
    diff = float(np.max(np.abs(actual - expected)))
    if not np.isfinite(diff) or diff > tolerance:
        raise ModelError(
            f"{onnx_path}: torch and ONNX Runtime disagree by {diff:.3g} (max abs) on "
            f"{len(pixels)} images, above embed.parity_tolerance={tolerance:g}"
        )
    return ParityReport(max_abs_diff=diff, n_images=len(pixels), tolerance=tolerance)
