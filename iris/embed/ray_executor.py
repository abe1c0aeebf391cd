"""Embedding on Ray: the ONNX Runtime encoder as Ray Data ``map_batches`` actors.

``iris embed --executor ray`` (``pip install 'iris-labeling[ray]'``) sends the images
still missing from the store through a pool of actors, each holding one ONNX Runtime
session (CUDA when the actor has a GPU and onnxruntime-gpu, CPU otherwise). The driver
takes the vectors back as they stream out and the stage writes them to the store batch
by batch, so an interrupted run keeps what it wrote and the next run embeds only the
rest. Vectors are the local path's: same model file, same decoding, same normalisation.

Where Ray runs: ``ray.init()`` joins the cluster named by ``RAY_ADDRESS``, or starts a
local instance. The model travels to the actors through Ray's object store; the actors
read the image files themselves, so on a cluster the work directory must be on storage
every node mounts (the usual Ray setup), at the same path.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from iris.errors import ConfigError


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "embed.executor is 'ray' but Ray is not installed; pip install 'iris-labeling[ray]'"
        ) from None
    return ray


class EncodeActor:
    """One ONNX Runtime session per actor; ``__call__`` turns a batch of paths into vectors."""

    def __init__(self, model: Any, *, image_size: int, device: str) -> None:
        from iris.embed.encoder import Encoder

        data = model if isinstance(model, bytes) else _ray().get(model)
        fd, name = tempfile.mkstemp(suffix=".onnx", prefix="iris-embedder-")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        self._file = name
        self.encoder = Encoder(Path(name), image_size=image_size, device=device)

    def __call__(self, batch: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        from iris.embed.images import load_batch

        pixels = load_batch([Path(str(p)) for p in batch["path"]], self.encoder.image_size)
        return {"id": np.asarray(batch["id"], dtype=np.int64), "vector": self.encoder.encode_pixels(pixels)}

    def __del__(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            os.unlink(self._file)


def ray_vectors(
    onnx_path: Path,
    frame: pl.DataFrame,
    *,
    root: Path,
    image_size: int,
    batch_size: int,
    device: str = "auto",
    actors: int = 0,
) -> Iterator[tuple[pl.DataFrame, npt.NDArray[np.float32]]]:
    """Rows of ``frame`` with their vectors, a batch at a time, computed by Ray actors.

    Args:
        onnx_path: the exported embedder.
        frame: rows to embed, with ``id`` and ``path`` (relative to ``root``) columns.
        root: the work directory the paths are relative to.
        image_size: the encoder's input side.
        batch_size: images per actor call.
        device: ``auto``, ``cpu`` or ``cuda[:N]`` inside each actor; a ``cuda`` device
            asks Ray for one GPU per actor.
        actors: actors in the pool; 0 = one per CPU Ray offers (a GPU run: one per GPU).

    Yields:
        ``(rows, vectors)``: a slice of ``frame`` (in the order the batch came back) and
        its L2-normalised float32 vectors (len(rows), dim).
    """
    ray = _ray()
    if len(frame) == 0:
        return
    if not ray.is_initialized():
        ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
    resources = ray.cluster_resources()
    gpu = device.startswith("cuda")
    pool = actors or max(1, int(resources.get("GPU" if gpu else "CPU", 1)))
    model = ray.put(Path(onnx_path).read_bytes())
    items = pl.DataFrame(
        {"id": frame["id"].cast(pl.Int64), "path": [str(root / p) for p in frame["path"].to_list()]}
    ).to_arrow()
    dataset = ray.data.from_arrow(items).map_batches(
        EncodeActor,
        fn_constructor_args=(model,),
        fn_constructor_kwargs={"image_size": image_size, "device": device},
        batch_size=batch_size,
        batch_format="numpy",
        concurrency=pool,
        num_cpus=0 if gpu else 1,
        num_gpus=1 if gpu else 0,
    )
    row_of = {int(i): r for r, i in enumerate(frame["id"].to_list())}
    for batch in dataset.iter_batches(batch_size=batch_size, batch_format="numpy"):
        ids = np.asarray(batch["id"], dtype=np.int64)
        vectors = np.asarray(
            np.stack(list(batch["vector"])) if batch["vector"].dtype == object else batch["vector"]
        )
        rows = frame[[row_of[int(i)] for i in ids]]
        yield rows, vectors.astype(np.float32, copy=False)
