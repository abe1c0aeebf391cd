"""Synthetic clustered embeddings for tests and benchmarks (no images needed).

Each class is a mixture of Gaussian blobs; some blobs of the two classes overlap, so a
share of the pool is genuinely ambiguous, like T-shirts and shirts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from iris import tables
from iris.store.base import Payload, VectorStore
from iris.tables import IMAGES, Split, initial_status
from iris.workdir import Workdir


@dataclass(frozen=True)
class SyntheticPool:
    """Points with a true class, a split and the payload iris's embed stage writes."""

    ids: npt.NDArray[np.int64]
    vectors: npt.NDArray[np.float32]
    truth: npt.NDArray[np.int64]
    split: npt.NDArray[np.str_]

    def payloads(self) -> list[Payload]:
        out: list[Payload] = []
        for truth, split in zip(self.truth.tolist(), self.split.tolist(), strict=True):
            labeled = split == Split.GT
            payload: Payload = {
                "split": split,
                "source": f"synthetic/{split}",
                "has_label": labeled,
                "status": initial_status(split, labeled).value,
            }
            if labeled:
                payload["label"] = int(truth)
            out.append(payload)
        return out

    def sources(self) -> list[str]:
        """One made-up URL per point (what ingest would have read from a manifest)."""
        return [f"https://synthetic.example/{i}.png" for i in self.ids.tolist()]

    def images(self) -> pl.DataFrame:
        """The ``images`` table ingest would write: ground truth labeled, the rest not."""
        labels = [
            int(t) if s == Split.GT else None
            for t, s in zip(self.truth.tolist(), self.split.tolist(), strict=True)
        ]
        frame = pl.DataFrame(
            {
                "id": self.ids,
                "source": self.sources(),
                "path": [f"images/{i}.png" for i in self.ids.tolist()],
                "split": self.split.tolist(),
                "label": labels,
                "width": [32] * len(self.ids),
                "height": [32] * len(self.ids),
                "sha256": [f"{i:064x}" for i in self.ids.tolist()],
            },
            schema=IMAGES,
        )
        return frame.sort("id")

    def write_workdir(self, workdir: Workdir, store: VectorStore) -> Path:
        """A work directory as ingest and embed leave it: the images (and empty rejects) table, the vectors in
        ``store``, and an answer key (``source,label`` for every point) for the simulated crowd.

        Returns:
            The answer key's path (``crowd.answer_key``).
        """
        tables.write(self.images(), workdir.table("images"))
        tables.write(pl.DataFrame(schema=tables.REJECTS), workdir.table("rejects"))
        self.load_into(store)
        key = workdir.root / "answer_key.csv"
        pl.DataFrame({"source": self.sources(), "label": self.truth.tolist()}).write_csv(key)
        return key

    def load_into(self, store: VectorStore, *, batch: int = 4096) -> None:
        store.ensure_collection(dim=self.vectors.shape[1], distance="cosine")
        payloads = self.payloads()
        for start in range(0, len(self.ids), batch):
            stop = start + batch
            store.upsert(self.ids[start:stop], self.vectors[start:stop], payloads[start:stop])


def clustered_pool(
    n: int,
    *,
    dim: int = 64,
    n_labeled: int = 200,
    n_test: int = 0,
    blobs_per_class: int = 8,
    spread: float = 1.5,
    seed: int = 0,
) -> SyntheticPool:
    """``n`` unit vectors in ``2 * blobs_per_class`` blobs; ``n_labeled`` are gt, ``n_test`` test.

    Args:
        spread: blob standard deviation relative to the distance between blob centres;
            larger means more overlap and more problematic images.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(2 * blobs_per_class, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    blob = rng.integers(0, 2 * blobs_per_class, size=n)
    truth = (blob % 2).astype(np.int64)
    # Centres are ~sqrt(2) apart on the sphere; the noise scale is relative to that.
    noise = rng.normal(scale=spread * np.sqrt(2.0 / dim), size=(n, dim)).astype(np.float32)
    vectors = centres[blob] + noise
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    split = np.full(n, "pool", dtype=object)
    chosen = rng.permutation(n)
    split[chosen[:n_labeled]] = "gt"
    split[chosen[n_labeled : n_labeled + n_test]] = "test"
    ids = rng.choice(2**40, size=n, replace=False).astype(np.int64)
    return SyntheticPool(ids=ids, vectors=vectors.astype(np.float32), truth=truth, split=split.astype(str))
