"""Images → L2-normalised embeddings with ONNX Runtime (CUDA when available, CPU otherwise)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from PIL import Image

from iris.devices import Provider, onnx_providers
from iris.embed.export import INPUT_NAME, OUTPUT_NAME
from iris.embed.images import batch_pixels
from iris.errors import ModelError, StageOrderError
from iris.workdir import Workdir

ONNX_FILE = "embedder.onnx"
META_FILE = "embedder.json"
CHECKPOINT_FILE = "embedder.pt"


def default_providers(device: str = "auto") -> list[Provider]:
    """ONNX Runtime providers for ``device``: CUDA first when onnxruntime-gpu offers it, then CPU."""
    return onnx_providers(device)


def l2_normalise(vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Rows scaled to unit length (an all-zero row stays zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


class Encoder:
    """An exported embedder: ``encode`` images into unit vectors of size ``dim``.

    ``providers`` wins over ``device`` (``auto``, ``cpu``, ``cuda[:N]``; see
    :func:`iris.devices.onnx_providers`); ``provider`` says which one runs.
    """

    def __init__(
        self,
        onnx_path: Path,
        *,
        image_size: int,
        providers: Sequence[Provider] | None = None,
        device: str = "auto",
    ) -> None:
        if not onnx_path.is_file():
            raise StageOrderError(f"{onnx_path} does not exist yet; run `iris embed` first")
        chosen = list(providers or default_providers(device))  # a bad device is a ConfigError
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=chosen)
        except Exception as exc:
            raise ModelError(
                f"{onnx_path}: ONNX Runtime cannot load it ({type(exc).__name__}: {exc})"
            ) from None
        self.path = onnx_path
        self.image_size = image_size
        out = self.session.get_outputs()[0]
        dim = out.shape[-1]
        if not isinstance(dim, int):
            raise ModelError(f"{onnx_path}: output {out.name} has no fixed feature size ({out.shape})")
        self.dim: int = dim
        self.provider: str = self.session.get_providers()[0]

    def features(self, pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Raw (not normalised) features of uint8 pixels (n, size, size, 3) → (n, dim)."""
        if len(pixels) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        expected = (self.image_size, self.image_size, 3)
        if pixels.dtype != np.uint8 or pixels.shape[1:] != expected:
            raise ModelError(
                f"encoder: expected uint8 pixels (n, {expected}), got {pixels.dtype} {pixels.shape}"
            )
        out = self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(pixels)})[0]
        return np.asarray(out, dtype=np.float32)

    def encode_pixels(self, pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """uint8 pixels (n, size, size, 3) → L2-normalised float32 (n, dim)."""
        return l2_normalise(self.features(pixels))

    def encode(self, images: Sequence[Image.Image]) -> npt.NDArray[np.float32]:
        """PIL images (any size or mode) → L2-normalised float32 (n, dim)."""
        return self.encode_pixels(batch_pixels(images, self.image_size))


def read_meta(workdir: Workdir) -> dict[str, object] | None:
    """The record ``iris embed`` keeps of the exported model (``models/embedder.json``), if any."""
    path = workdir.models / META_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def load_encoder(
    workdir: Workdir, *, providers: Sequence[Provider] | None = None, device: str = "auto"
) -> Encoder:
    """The encoder ``iris embed`` exported into ``workdir/models``.

    Raises:
        StageOrderError: ``iris embed`` has not exported a model yet.
    """
    meta = read_meta(workdir)
    onnx_path = workdir.models / ONNX_FILE
    if meta is None or not onnx_path.is_file():
        raise StageOrderError(f"no exported embedder in {workdir.models}; run `iris embed` first")
    config = meta.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("image_size"), int):
        raise ModelError(f"{workdir.models / META_FILE}: no image_size recorded; re-run `iris embed`")
    return Encoder(onnx_path, image_size=config["image_size"], providers=providers, device=device)
