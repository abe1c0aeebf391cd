"""What the million-vector choices cost in label accuracy on the Fashion-MNIST demo task.

    nice python benchmarks/bench_compression.py --dir /tmp/compression

Runs the demo's pipeline (T-shirt/top vs Shirt, 200 labels, 11,800 pool, simulated
crowd, seed 0) once up to ``embed`` (1,280-d EfficientNet-Lite0 vectors), then for each
variant copies the work directory, puts the variant's vectors in a fresh embedded store
(same ids and payloads) and runs pseudolabel → select → crowd → aggregate → propagate:

* ``1280-d float, exact``: the demo as it is (the reference; exact searches at 14K points);
* ``1280-d float, HNSW``: every stage's search on HNSW over float vectors, as past
  ``[store] exact_max_points``;
* ``1280-d int8 + rescoring, HNSW``: the same over the int8 copies Qdrant keeps with
  ``[store] quantization = "int8"`` (the default), candidates rescored with the floats:
  the million-point path;
* with ``--all``, also ``256-d PCA`` (the vectors projected on their first 256 principal
  components, L2-normalised: 5x less memory) and ``1280-d, mini-batch KMeans`` (forced at
  this size; the stage uses it past 50,000 rows).

Prints, per variant, the share sent to the crowd and the final-label accuracy on the
pool against the answer key, with the difference to the reference in points.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("IRIS_PROGRESS", "0")

import numpy as np


def _project(vectors: np.ndarray, dim: int) -> np.ndarray:
    centred = vectors - vectors.mean(axis=0)
    _, _, vt = np.linalg.svd(centred[:: max(1, len(centred) // 20000)], full_matrices=False)
    out = centred @ vt[:dim].T
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", type=Path, default=Path("iris-compression"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--all", action="store_true", help="also the 256-d PCA and mini-batch KMeans rows")
    args = parser.parse_args()

    import iris.pseudolabel.kmeans as kmeans
    from iris.cli._common import echo_table
    from iris.config import load_settings
    from iris.demo import manifests, prepare, score
    from iris.pipeline import run_pipeline
    from iris.store.edge import EdgeStore

    tic = time.perf_counter()
    workdir, data_dir = prepare(args.dir, limit=None, n_labeled=200, seed=args.seed, fast=False)
    settings = load_settings(workdir.root)
    run_pipeline(workdir, settings, manifests=manifests(data_dir), until="embed", echo=lambda _: None)
    with EdgeStore(workdir.qdrant, collection=settings.store.collection) as store:
        exported = store.export()
    print(
        f"embedded {len(exported.ids)} images ({exported.vectors.shape[1]}-d) "
        f"in {time.perf_counter() - tic:.0f} s"
    )

    # name: (vectors, mini-batch KMeans, [store] quantization, exact_max_points). The million-point
    # path is int8 + rescoring under HNSW; the demo (14K points) searches exactly, which reads
    # the float vectors, so HNSW is forced (exact_max_points 1) to measure what int8 costs.
    variants: dict[str, tuple[np.ndarray, bool, str, int]] = {
        "1280-d float, exact": (exported.vectors, False, "none", 0),
        "1280-d float, HNSW": (exported.vectors, False, "none", 1),
        "1280-d int8 + rescoring, HNSW": (exported.vectors, False, "int8", 1),
    }
    if args.all:
        variants["256-d PCA"] = (_project(exported.vectors, 256), False, "none", 0)
        variants["1280-d, mini-batch KMeans"] = (exported.vectors, True, "none", 0)
    defaults = kmeans.SeededKMeans.__init__.__defaults__
    rows = []
    for name, (vectors, minibatch, quantization, exact_max_points) in variants.items():
        tic = time.perf_counter()
        copy = args.dir / ("work-" + name.replace(" ", "_").replace(",", "").replace("+", ""))
        if copy.exists():
            shutil.rmtree(copy)
        shutil.copytree(workdir.root, copy, ignore=shutil.ignore_patterns("qdrant"))
        variant_workdir = type(workdir)(copy)
        environ = {
            **os.environ,
            "IRIS_STORE_QUANTIZATION": quantization,
            "IRIS_STORE_EXACT_MAX_POINTS": str(exact_max_points),
        }
        variant_settings = load_settings(copy, environ=environ)
        with EdgeStore(
            variant_workdir.qdrant, collection=settings.store.collection, quantization=quantization
        ) as store:
            store.ensure_collection(dim=vectors.shape[1])
            store.upsert(exported.ids, vectors, exported.payloads)
        if minibatch:  # max_iter, random_state, minibatch_above=1, batch_size
            kmeans.SeededKMeans.__init__.__defaults__ = (defaults[0], defaults[1], 1, defaults[3])
        try:
            state = run_pipeline(variant_workdir, variant_settings, until="propagate", echo=lambda _: None)
        finally:
            kmeans.SeededKMeans.__init__.__defaults__ = defaults
        figures = score(variant_workdir, data_dir, state)
        rows.append(
            {
                "variant": name,
                "dim": vectors.shape[1],
                "sent to the crowd": figures.get("sent to the crowd", "-"),
                "automatic correct": figures.get("automatic labels correct (answer key)", "-"),
                "final labels correct": figures.get("final labels correct, all", "-"),
                "seconds": round(time.perf_counter() - tic),
            }
        )
        print(rows[-1], flush=True)
    reference = float(rows[0]["final labels correct"])
    for row in rows:
        row["vs 1280-d float, exact (points)"] = (
            f"{(float(row['final labels correct']) - reference) * 100:+.2f}"
        )
    echo_table(
        rows, title=f"label accuracy of the compression choices (Fashion-MNIST demo, seed {args.seed})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
