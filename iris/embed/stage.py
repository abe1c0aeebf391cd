"""The embed stage: fine-tune → export → parity → embed every image into the vector store.

Reads ``tables/images`` (columns of :data:`iris.tables.IMAGES`), writes
``models/embedder.pt`` (fine-tuned feature extractor), ``models/embedder.onnx`` and
``models/embedder.json`` (the settings it was built with, its fingerprint, held-out
accuracy and parity), and one point per image in the store with payload
``{split, source, label?, has_label, status, embedder}`` (see :mod:`iris.store.base`;
``embedder`` is the model fingerprint, so a run after the model changed re-embeds).

Re-running is cheap: the model is rebuilt only when the ``[embed]`` settings that shape
it or the ground truth changed, and only images without a vector from the current model
are embedded (an interrupted run resumes where it stopped). Each finished batch also goes
to ``models/embed-journal.bin`` (:mod:`iris.embed.journal`) until the store has flushed
it, so a killed run loses at most the batch it was working on.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import torch

from iris import tables
from iris.config import Settings
from iris.contract import StageContext, StageReport
from iris.embed.backbones import build_pixel_net, get_backbone
from iris.embed.encoder import CHECKPOINT_FILE, META_FILE, ONNX_FILE, Encoder, read_meta
from iris.embed.export import check_parity, export_onnx
from iris.embed.finetune import finetune, save_checkpoint
from iris.embed.images import load_batch
from iris.embed.journal import JOURNAL_FILE, Journal
from iris.errors import InputError
from iris.progress import bar
from iris.store.base import Filter, Payload, VectorStore
from iris.tables import initial_status
from iris.workdir import Workdir

PARITY_IMAGES = 16
DECODE_WORKERS = 2
PREFETCH_BATCHES = 3
FLUSH_EVERY_S = 30.0
"""How often the store is made durable and the journal emptied (it bounds the journal's size)."""


@dataclass(frozen=True)
class EmbedReport(StageReport):
    """What ``embed`` did."""

    backbone: str
    dim: int
    image_size: int
    model_reused: bool
    """True when models/embedder.onnx was kept because nothing that shapes it changed."""
    finetune_epochs: int
    heldout_accuracy: float | None
    """Fine-tune accuracy on the held-out ground-truth fold; None for frozen features."""
    train_size: int
    heldout_size: int
    parity_max_abs_diff: float
    parity_images: int
    total: int
    """Images in the images table."""
    already_embedded: int
    """Images that had a vector from this model, in the store or in the journal of a killed run."""
    recovered: int
    """Of those, vectors a killed run journaled and the store lost: upserted again, not re-embedded."""
    embedded: int
    seconds: float
    """Wall time of the embedding loop (decode + inference + upsert)."""
    images_per_second: float
    provider: str
    fingerprint: str


def model_config(settings: Settings, images: pl.DataFrame) -> dict[str, Any]:
    """The inputs that determine the exported model; a change in any of them rebuilds it."""
    cfg = settings.embed
    gt = ground_truth(images)
    digest = hashlib.sha256()
    for image_id, label in zip(gt["id"].to_list(), gt["label"].to_list(), strict=True):
        digest.update(f"{image_id}:{label};".encode())
    weights = cfg.weights
    if weights not in {"imagenet", "none"}:
        path = Path(weights).expanduser()
        weights = f"{path.resolve()}@{path.stat().st_mtime_ns if path.exists() else 'missing'}"
    return {
        "backbone": cfg.backbone,
        "weights": weights,
        "image_size": cfg.image_size,
        "finetune_epochs": cfg.finetune_epochs,
        "seed": cfg.seed,
        "ground_truth": f"{len(gt)}:{digest.hexdigest()[:16]}",
    }


def ground_truth(images: pl.DataFrame) -> pl.DataFrame:
    """Rows of the images table with ``split == "gt"`` and a known label, ordered by id."""
    return images.filter((pl.col("split") == "gt") & pl.col("label").is_not_null()).sort("id")


def _fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _paths(workdir: Workdir, frame: pl.DataFrame) -> list[Path]:
    return [workdir.root / p for p in frame["path"].to_list()]


def prepare_model(workdir: Workdir, settings: Settings, images: pl.DataFrame) -> tuple[dict[str, Any], bool]:
    """Fine-tune, export and parity-check the embedder unless an up-to-date one exists.

    Returns:
        ``(meta, reused)``: the content of ``models/embedder.json`` and whether it was kept.
    """
    cfg = settings.embed
    config = model_config(settings, images)
    meta = read_meta(workdir)
    onnx_path = workdir.models / ONNX_FILE
    if meta is not None and meta.get("config") == config and onnx_path.is_file():
        return meta, True

    backbone = get_backbone(cfg.backbone)
    torch.manual_seed(cfg.seed)  # weights "none" and the new layers start from the seed
    net = build_pixel_net(backbone.name, weights=cfg.weights, image_size=cfg.image_size)
    gt = ground_truth(images)
    gt_pixels = load_batch(_paths(workdir, gt), cfg.image_size) if cfg.finetune_epochs > 0 else None
    result = finetune(
        net,
        gt_pixels if gt_pixels is not None else np.zeros((0, cfg.image_size, cfg.image_size, 3), np.uint8),
        gt["label"].to_numpy() if gt_pixels is not None else np.zeros(0, np.int64),
        epochs=cfg.finetune_epochs,
        batch_size=min(cfg.batch_size, 32),
        seed=cfg.seed,
    )
    save_checkpoint(
        net, workdir.models / CHECKPOINT_FILE, image_size=cfg.image_size, weights=cfg.weights, result=result
    )
    export_onnx(net, onnx_path, image_size=cfg.image_size)
    sample = images.sort("id").head(PARITY_IMAGES)
    parity = check_parity(
        net, onnx_path, load_batch(_paths(workdir, sample), cfg.image_size), tolerance=cfg.parity_tolerance
    )
    meta = {
        "config": config,
        "backbone": backbone.name,
        "dim": backbone.dim,
        "fingerprint": _fingerprint(onnx_path),
        "finetune": {
            "epochs": result.epochs,
            "train_size": result.train_size,
            "heldout_size": result.heldout_size,
            "heldout_accuracy": result.heldout_accuracy,
            "seconds": round(result.seconds, 2),
            "history": result.history,
            "trained_ids": [int(i) for i in gt["id"].to_numpy()[list(result.trained_on)]],
        },
        "parity": {
            "max_abs_diff": parity.max_abs_diff,
            "images": parity.n_images,
            "tolerance": parity.tolerance,
        },
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    tmp = workdir.models / (META_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2), encoding="utf-8")
    tmp.replace(workdir.models / META_FILE)
    return meta, False


def payload_for(row: dict[str, Any], fingerprint: str, trained_ids: frozenset[int] = frozenset()) -> Payload:
    """The store payload of one images-table row.

    Ground-truth points also carry ``finetune``: ``"train"`` when the embedder was fine-tuned
    on them, ``"heldout"`` otherwise, so the pseudolabel stage's accuracy estimate scores only
    labels whose embeddings did not learn them.
    """
    label = row["label"]
    has_label = label is not None
    payload: Payload = {
        "split": row["split"],
        "source": row["source"],
        "has_label": has_label,
        "status": initial_status(row["split"], has_label).value,
        "embedder": fingerprint,
    }
    if has_label:
        payload["label"] = int(label)
        payload["finetune"] = "train" if int(row["id"]) in trained_ids else "heldout"
    return payload


def _decoded_batches(
    workdir: Workdir, frame: pl.DataFrame, *, batch_size: int, image_size: int
) -> Iterator[tuple[pl.DataFrame, npt.NDArray[np.uint8]]]:
    """Batches of rows with their decoded pixels, decoded ahead in a thread pool.

    PIL decoding and ONNX Runtime both release the GIL, so decoding the next batches
    overlaps with inference on the current one.
    """
    chunks = (frame.slice(start, batch_size) for start in range(0, len(frame), batch_size))
    pending: deque[tuple[pl.DataFrame, Future[npt.NDArray[np.uint8]]]] = deque()
    with ThreadPoolExecutor(max_workers=DECODE_WORKERS, thread_name_prefix="iris-decode") as pool:
        try:
            for chunk in chunks:
                pending.append((chunk, pool.submit(load_batch, _paths(workdir, chunk), image_size)))
                if len(pending) > PREFETCH_BATCHES:
                    done, future = pending.popleft()
                    yield done, future.result()
            while pending:
                done, future = pending.popleft()
                yield done, future.result()
        finally:
            for _chunk, future in pending:
                future.cancel()


def _vector_batches(
    workdir: Workdir, settings: Settings, todo: pl.DataFrame, encoder: Encoder
) -> Iterator[tuple[pl.DataFrame, npt.NDArray[np.float32]]]:
    """Rows of ``todo`` with their vectors, a batch at a time: here, or on Ray actors."""
    cfg = settings.embed
    if cfg.executor == "ray":
        from iris.embed.ray_executor import ray_vectors

        yield from ray_vectors(
            encoder.path,
            todo,
            root=workdir.root,
            image_size=encoder.image_size,
            batch_size=cfg.batch_size,
            device=cfg.device,
            actors=cfg.ray_actors,
        )
        return
    for chunk, pixels in _decoded_batches(
        workdir, todo, batch_size=cfg.batch_size, image_size=encoder.image_size
    ):
        yield chunk, encoder.encode_pixels(pixels)


def embed(workdir: Workdir, settings: Settings, store: VectorStore) -> EmbedReport:
    """Embed every image of the images table (all splits) into ``store``.

    Fine-tunes and exports first unless ``models/embedder.onnx`` is up to date, then
    upserts only images without a vector from the current model.

    Raises:
        StageOrderError: no images table yet. InputError: no images, or an unreadable file.
        ModelError: weights, export or parity problems. DimensionError: the store's
        collection holds vectors of another size.
    """
    images = tables.read(workdir.table("images"), tables.IMAGES).sort("id")
    if len(images) == 0:
        raise InputError(f"{workdir.table('images')}: no images to embed; run `iris ingest` with a manifest")
    # Check the collection before spending minutes on a fine-tune it could not hold.
    store.ensure_collection(dim=get_backbone(settings.embed.backbone).dim, distance="cosine")
    meta, reused = prepare_model(workdir, settings, images)
    config = meta["config"]
    encoder = Encoder(
        workdir.models / ONNX_FILE, image_size=int(config["image_size"]), device=settings.embed.device
    )
    fingerprint = str(meta["fingerprint"])
    trained_ids = frozenset(int(i) for i in meta.get("finetune", {}).get("trained_ids", []))
    done = store.ids(Filter(must={"embedder": fingerprint}))
    journal = Journal(workdir.models / JOURNAL_FILE, fingerprint=fingerprint, dim=encoder.dim)
    recovered = _replay(journal, images, done, store, fingerprint=fingerprint, trained_ids=trained_ids)
    todo = images.filter(~pl.col("id").is_in(list(done | recovered)))

    started = time.perf_counter()
    journal.start()
    flushed_at = time.monotonic()
    progress = bar(desc="embed", total=len(todo), unit="img")
    try:
        for chunk, vectors in _vector_batches(workdir, settings, todo, encoder):
            rows = chunk.select("id", "split", "source", "label").to_dicts()
            ids = chunk["id"].to_numpy().astype(np.int64)
            store.upsert(ids, vectors, [payload_for(r, fingerprint, trained_ids) for r in rows])
            journal.append(ids, vectors)
            progress.update(len(chunk))
            if time.monotonic() - flushed_at >= FLUSH_EVERY_S:
                store.flush()
                journal.clear()
                flushed_at = time.monotonic()
        store.flush()
        journal.remove()
    finally:
        journal.close()
        progress.close()
    seconds = time.perf_counter() - started
    _refresh_payloads(store, images, done, fingerprint, trained_ids)
    finetune_meta = meta.get("finetune", {})
    parity = meta.get("parity", {})
    return EmbedReport(
        backbone=str(meta["backbone"]),
        dim=encoder.dim,
        image_size=encoder.image_size,
        model_reused=reused,
        finetune_epochs=int(finetune_meta.get("epochs", 0)),
        heldout_accuracy=finetune_meta.get("heldout_accuracy"),
        train_size=int(finetune_meta.get("train_size", 0)),
        heldout_size=int(finetune_meta.get("heldout_size", 0)),
        parity_max_abs_diff=float(parity.get("max_abs_diff", float("nan"))),
        parity_images=int(parity.get("images", 0)),
        total=len(images),
        already_embedded=len(images) - len(todo),
        recovered=len(recovered),
        embedded=len(todo),
        seconds=seconds,
        images_per_second=len(todo) / seconds if seconds > 0 and len(todo) else 0.0,
        provider=encoder.provider,
        fingerprint=fingerprint,
    )


def _replay(
    journal: Journal,
    images: pl.DataFrame,
    done: set[int],
    store: VectorStore,
    *,
    fingerprint: str,
    trained_ids: frozenset[int],
) -> set[int]:
    """Upsert the journaled vectors of a killed run that the store lacks; returns their ids."""
    ids, vectors = journal.recovered()
    if not len(ids):
        return set()
    rows = images.select("id", "split", "source", "label")
    by_id = {int(row["id"]): row for row in rows.to_dicts()}
    # Each id is journaled once: a run embeds only ids missing from both the store and
    # the journal, and starts its own journal after this replay reached the store.
    keep = np.array([int(i) not in done and int(i) in by_id for i in ids], dtype=bool)
    if keep.any():
        chosen = ids[keep]
        payloads = [payload_for(by_id[int(i)], fingerprint, trained_ids) for i in chosen]
        store.upsert(chosen, vectors[keep], payloads)
        store.flush()
    return {int(i) for i in ids[keep]}


PAYLOAD_BATCH = 8192
GONE = "removed"
"""The split of a stored point whose image is no longer in the images table (no stage reads it)."""


def _write_changes(store: VectorStore, updates: dict[int, Payload]) -> int:
    """Write the updates that change a point's payload (a key set to None matches a key
    absent); returns how many points changed. A payload write re-indexes its point, so a
    resumed run that changes nothing writes nothing."""
    if not updates:  # a first embed: nothing stored before it, nothing to compare
        return 0
    current: dict[int, Payload] = {}
    for part in store.scroll(with_vectors=False):
        current.update(zip((int(i) for i in part.ids), part.payloads, strict=True))
    changed = [
        (i, u) for i, u in updates.items() if any(current.get(i, {}).get(k) != v for k, v in u.items())
    ]
    for start in range(0, len(changed), PAYLOAD_BATCH):
        store.set_payload(dict(changed[start : start + PAYLOAD_BATCH]))
    return len(changed)


def _gone(store: VectorStore, images: pl.DataFrame) -> dict[int, Payload]:
    gone = store.ids() - set(images["id"].to_list())
    return {int(i): {"split": GONE, "has_label": False, "origin": None} for i in gone}


def _refresh_payloads(
    store: VectorStore, images: pl.DataFrame, done: set[int], fingerprint: str, trained_ids: frozenset[int]
) -> None:
    """Give the points already embedded the payload a fresh embed would (the images table's
    split and label; no pseudo-label, status or origin of a later stage), and mark points
    whose image left the images table as split ``removed``: a re-run of embed after the
    images table changed leaves no stale label in the store."""
    rows = images.filter(pl.col("id").is_in(list(done))).select("id", "split", "source", "label").to_dicts()
    updates: dict[int, Payload] = {
        int(r["id"]): {
            "label": None,
            **payload_for(r, fingerprint, trained_ids),
            "pseudo_label": None,
            "origin": None,
        }
        for r in rows
    }
    _write_changes(store, {**updates, **_gone(store, images)})


def run(ctx: StageContext) -> EmbedReport:
    """The embed stage (:func:`embed` into ``ctx.store``)."""
    return embed(ctx.workdir, ctx.settings, ctx.store)
