"""Export the final classifier to ONNX and check it against torch.

The graph takes ``pixels``: uint8 (batch, size, size, 3), dynamic batch axis (the
convention of :mod:`iris.embed.backbones`) and returns ``probability``: float32 (batch,),
the probability of the positive class.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import torch

from iris.embed.export import INPUT_NAME, export_pixel_model
from iris.errors import ModelError
from iris.train.checkpoint import classifier_dir, load_checkpoint
from iris.train.heads import Probability, build_classifier
from iris.workdir import Workdir

OUTPUT_NAME = "probability"


@dataclass(frozen=True)
class ExportedModel:
    path: Path
    image_size: int
    epoch: int
    """Epoch of the checkpoint exported."""
    max_abs_diff: float
    """Largest |torch - ONNX Runtime| probability on the parity images."""


def onnx_path(workdir: Workdir) -> Path:
    return workdir.models / "classifier.onnx"


def session(path: Path) -> ort.InferenceSession:
    """An ONNX Runtime session, on CUDA when onnxruntime-gpu and a GPU are there."""
    available = ort.get_available_providers()
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    return ort.InferenceSession(str(path), providers=providers)


def run_onnx(sess: ort.InferenceSession, pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """Probabilities (n,) for uint8 pixels (n, s, s, 3)."""
    (out,) = sess.run([OUTPUT_NAME], {INPUT_NAME: pixels})
    return np.asarray(out, dtype=np.float32).reshape(-1)


def export_classifier(
    workdir: Workdir, *, parity_pixels: npt.NDArray[np.uint8] | None = None, tolerance: float = 1e-3
) -> ExportedModel:
    """Export ``models/classifier/best.pt`` to ``models/classifier.onnx`` (atomically).

    Skipped when the ONNX file was exported from the same checkpoint (recorded in
    ``models/classifier.onnx.json``).

    Args:
        parity_pixels: uint8 (n, s, s, 3) images to compare torch and ONNX Runtime on;
            random pixels when omitted.
        tolerance: largest allowed probability difference.

    Raises:
        ModelError: no checkpoint, export failure, or parity above ``tolerance``.
    """
    best = classifier_dir(workdir) / "best.pt"
    checkpoint = load_checkpoint(best)
    config = checkpoint["config"]
    size = int(config["image_size"])
    path = onnx_path(workdir)
    sidecar = path.with_name(path.name + ".json")
    stamp = {"checkpoint_mtime_ns": best.stat().st_mtime_ns, "epoch": checkpoint["epoch"]}
    if path.exists() and sidecar.exists():
        recorded = json.loads(sidecar.read_text(encoding="utf-8"))
        if recorded.get("stamp") == stamp:
            return ExportedModel(path, size, checkpoint["epoch"], float(recorded["max_abs_diff"]))

    classifier = build_classifier(config, pretrained=False)
    classifier.load_state_dict(checkpoint["model"])
    model = Probability(classifier).eval()
    tmp = path.with_name(path.name + ".tmp")
    export_pixel_model(
        model, tmp, image_size=size, output_name=OUTPUT_NAME, what=f"the classifier ({config['backbone']})"
    )

    if parity_pixels is None or len(parity_pixels) == 0:
        parity_pixels = np.random.default_rng(0).integers(0, 256, (4, size, size, 3), dtype=np.uint8)
    with torch.no_grad():
        expected = model(torch.from_numpy(np.ascontiguousarray(parity_pixels))).numpy()
    got = run_onnx(session(tmp), parity_pixels)
    diff = float(np.max(np.abs(expected - got)))
    if not diff <= tolerance:
        tmp.unlink(missing_ok=True)
        raise ModelError(
            f"{path}: ONNX Runtime differs from torch by {diff:.2e} on {len(parity_pixels)} images "
            f"(tolerance {tolerance:.0e})"
        )
    os.replace(tmp, path)
    sidecar.write_text(json.dumps({"stamp": stamp, "max_abs_diff": diff}), encoding="utf-8")
    return ExportedModel(path, size, checkpoint["epoch"], diff)
