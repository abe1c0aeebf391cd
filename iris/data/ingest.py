"""``iris ingest``: manifests in, an images table and a rejects table out.

Steps: read the manifests (:mod:`iris.data.manifest`); give each row a stable id
(:mod:`iris.data.ids`); drop repeated sources; fetch or read every image not already in
the work directory, concurrently (:mod:`iris.data.download`), and decode, validate and
save it as ``images/<id>.png`` in worker processes (:mod:`iris.data.validate`); drop
duplicate pictures by pixel hash; write the tables.

Resume: every saved image is appended to ``tables/ingest_journal.jsonl`` as soon as it is
on disk, so an interrupted ingest re-run fetches and decodes only the images whose file
is missing. Rows rejected last time are tried again.

Duplicates: a source or picture that is in the ground truth and the pool is kept once,
as labeled, and the pool row goes to the rejects table with reason ``duplicate``; so does
a repeated pool row. Test rows are never dropped for sharing pixels with another image
(every test row needs a prediction); ``tables/manifest_rows.parquet`` maps every manifest
row, test rows included, to its image id.

Splits not given to a re-run are read again from the manifests the last run recorded in
``tables/ingest.json``, so a re-run with only ``--pool`` keeps the ground truth and test.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from iris import tables
from iris.config import IngestSettings, Settings, TaskSettings
from iris.contract import StageContext, StageReport
from iris.data.download import Location, fetch, make_client, resolve
from iris.data.ids import image_id
from iris.data.manifest import Manifest, read_manifest
from iris.data.records import load_ingest_record, record_path
from iris.data.validate import Limits, Outcome, inspect_saved, process_bytes, process_files
from iris.errors import InputError
from iris.progress import bar
from iris.workdir import Workdir

SPLITS = tables.SPLITS
SPLIT_NAMES = {"gt": "ground truth", "pool": "pool", "test": "test"}
JOURNAL_FILE = "ingest_journal.jsonl"
MANIFEST_ROWS = tables.MANIFEST_ROWS
_LOCAL_BATCH = 32


@dataclass(frozen=True)
class IngestReport(StageReport):
    """What an ingest did."""

    counts: dict[str, int]
    """Images per split in the images table."""
    labels: dict[str, int]
    """Ground-truth images per label: ``{"positive": n, "negative": n}``."""
    rejects: dict[str, int]
    """Rejected manifest rows per reason code."""
    processed: int
    """Images fetched (or read) and decoded by this run."""
    reused: int
    """Images already in the work directory from an earlier run."""
    seconds: float
    manifests: dict[str, list[str]] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """Counts per split for a printed table."""
        return [
            {
                "split": split,
                "images": self.counts.get(split, 0),
                "positive": self.labels.get("positive", 0) if split == "gt" else None,
                "negative": self.labels.get("negative", 0) if split == "gt" else None,
            }
            for split in SPLITS
        ]


@dataclass(frozen=True)
class _Item:
    """One distinct image to have on disk, from its first manifest row."""

    id: int
    source: str
    location: Location
    split: str
    label: int | None
    where: str


class _Journal:
    """Append-only record of images already saved (the resume point)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")

    def add(self, image: int, outcome: Outcome) -> None:
        entry = {"id": image, "width": outcome.width, "height": outcome.height, "sha256": outcome.sha256}
        self._file.write(json.dumps(entry) + "\n")

    def flush(self) -> None:
        """Make the entries so far survive a crash (called once per finished batch)."""
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _plan(
    workdir: Workdir,
    task: TaskSettings,
    ground_truth: Path | None,
    pool: Sequence[Path],
    test: Path | None,
) -> dict[str, list[Manifest]]:
    previous: dict[str, Any] = {}
    if record_path(workdir).exists():
        previous = load_ingest_record(workdir).get("splits", {})
    given = {"gt": [ground_truth] if ground_truth else [], "pool": list(pool), "test": [test] if test else []}
    manifests: dict[str, list[Manifest]] = {}
    for split in SPLITS:
        if given[split]:
            manifests[split] = [
                read_manifest(
                    Path(path),
                    source_column=task.source_column,
                    label_column=task.label_column if split == "gt" else None,
                    positive=task.positive,
                    negative=task.negative,
                )
                for path in given[split]
            ]
        else:
            # Keep what the last run ingested for this split, read as it was read then.
            manifests[split] = [
                read_manifest(
                    Path(entry["path"]),
                    source_column=entry["source_column"],
                    label_column=entry["label_column"],
                    positive=entry["positive"],
                    negative=entry["negative"],
                )
                for entry in previous.get(split, [])
            ]
    if not any(manifests.values()):
        raise InputError("nothing to ingest: give --ground-truth, --pool and/or --test manifests")
    return manifests


def _reject(source: str, split: str, where: str, reason: str, detail: str) -> dict[str, Any]:
    file, _, line = where.rpartition(":")
    return {
        "source": source,
        "split": split,
        "file": file,
        "line": int(line),
        "reason": reason,
        "detail": detail,
    }


def _collect(
    manifests: dict[str, list[Manifest]],
) -> tuple[dict[int, _Item], list[dict[str, Any]], list[dict[str, Any]]]:
    """Distinct images to ingest, rows rejected before any fetch, and the manifest-rows table."""
    items: dict[int, _Item] = {}
    rejects: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for split in SPLITS:
        for manifest in manifests[split]:
            base = manifest.path.resolve().parent  # resolved once per file, not per row
            for row in manifest.rows:
                where = f"{manifest.path}:{row.line}"
                image = image_id(row.source) if row.source else None
                rows.append(
                    {
                        "split": split,
                        "file": str(manifest.path),
                        "line": row.line,
                        "raw": row.raw,
                        "source": row.source,
                        "id": image,
                        "label": row.label,
                    }
                )
                if image is None:
                    detail = f"empty cell in column {manifest.source_column or 1}"
                    rejects.append(_reject("", split, where, "empty-source", detail))
                    continue
                prior = items.get(image)
                if prior is not None:
                    if split == "gt" and prior.split == "gt" and prior.label != row.label:
                        cells = {1: manifest.positive, 0: manifest.negative}
                        raise InputError(
                            f"{where}: conflicting labels for {row.source}: {cells[row.label or 0]} here, "
                            f"{cells[prior.label or 0]} at {prior.where}"
                        )
                    if split == "test" and prior.split == "test":
                        continue  # one image, every row answered through manifest_rows
                    detail = f"same source as {SPLIT_NAMES[prior.split]} row {prior.where}"
                    rejects.append(_reject(row.source, split, where, "duplicate", detail))
                    continue
                location = resolve(row.source, base)
                if location.kind == "bad":
                    rejects.append(_reject(row.source, split, where, "bad-source", location.target))
                    continue
                items[image] = _Item(image, row.source, location, split, row.label, where)
    return items, rejects, rows


def _load_known(workdir: Workdir) -> dict[int, tuple[int, int, str]]:
    """Images saved by earlier runs: id → (width, height, sha256), only if the file is there."""
    known: dict[int, tuple[int, int, str]] = {}
    images_table = workdir.table("images")
    if images_table.exists():
        frame = tables.read(images_table, tables.IMAGES)
        for image, width, height, sha in frame.select("id", "width", "height", "sha256").iter_rows():
            known[image] = (width, height, sha)
    journal = workdir.tables / JOURNAL_FILE
    if journal.exists():
        for text in journal.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(text)
                known[int(entry["id"])] = (int(entry["width"]), int(entry["height"]), str(entry["sha256"]))
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash
    on_disk = _saved_ids(workdir)
    return {image: meta for image, meta in known.items() if image in on_disk}


def _saved_ids(workdir: Workdir) -> set[int]:
    """Ids of the images in ``images/`` (one directory listing, not a stat per image)."""
    if not workdir.images.is_dir():
        return set()
    names = (name[: -len(".png")] for name in os.listdir(workdir.images) if name.endswith(".png"))
    return {int(name) for name in names if name.isdigit()}


def _limits(options: IngestSettings) -> Limits:
    return Limits(max_pixels=options.max_pixels, min_side=options.min_side, max_side=options.max_side)


def _recover(
    items: dict[int, _Item],
    known: dict[int, tuple[int, int, str]],
    workdir: Workdir,
    limits: Limits,
    journal: _Journal,
) -> None:
    """Adopt images saved by an interrupted run but not yet journaled (no fetch needed).

    A file cut short by a crash does not decode and is fetched again.
    """
    on_disk = _saved_ids(workdir)
    for item in items.values():
        if item.id in known or item.id not in on_disk:
            continue
        outcome = inspect_saved(str(workdir.images / f"{item.id}.png"), limits)
        if outcome.ok:
            known[item.id] = (outcome.width, outcome.height, outcome.sha256)
            journal.add(item.id, outcome)


def _executor(workers: int) -> Executor:
    if workers <= 0:
        # Pillow releases the GIL while it decodes, converts and encodes, and so does file
        # I/O: on 14,000 small PNGs threads matched two processes without their IPC cost.
        return ThreadPoolExecutor(max_workers=os.cpu_count() or 1)
    # forkserver: workers start clean, not as forks of a process that runs threads.
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("forkserver"))


async def _process_async(
    todo: list[_Item], workdir: Workdir, options: IngestSettings, journal: _Journal
) -> dict[int, Outcome]:
    limits = _limits(options)
    loop = asyncio.get_running_loop()
    urls = [item for item in todo if item.location.kind == "url"]
    files = [item for item in todo if item.location.kind == "file"]
    executor = _executor(options.workers)
    progress = bar(desc="ingest", total=len(todo), unit="img")
    results: dict[int, Outcome] = {}
    tasks: list[asyncio.Future[list[tuple[_Item, Outcome]]]] = []

    def out(item: _Item) -> str:
        return str(workdir.images / f"{item.id}.png")

    try:
        async with make_client(timeout_s=options.timeout_s, concurrency=options.concurrency) as client:
            slots = asyncio.Semaphore(max(1, options.concurrency))

            async def download(item: _Item) -> list[tuple[_Item, Outcome]]:
                # The slot is held through decoding too, so fetched bytes cannot pile up in memory.
                async with slots:
                    got = await fetch(
                        client,
                        item.location.target,
                        retries=options.retries,
                        backoff_s=options.backoff_s,
                        max_bytes=options.max_bytes,
                    )
                    if got.data is None:
                        return [(item, Outcome(ok=False, reason=got.reason, detail=got.detail))]
                    outcome = await loop.run_in_executor(
                        executor, process_bytes, got.data, out(item), limits, got.content_type
                    )
                    return [(item, outcome)]

            async def read_local(batch: list[_Item]) -> list[tuple[_Item, Outcome]]:
                pairs = [(item.location.target, out(item)) for item in batch]
                outcomes = await loop.run_in_executor(executor, process_files, pairs, limits)
                return list(zip(batch, outcomes, strict=True))

            tasks = [asyncio.ensure_future(download(item)) for item in urls]
            tasks += [
                asyncio.ensure_future(read_local(files[i : i + _LOCAL_BATCH]))
                for i in range(0, len(files), _LOCAL_BATCH)
            ]
            try:
                for finished in asyncio.as_completed(tasks):
                    for item, outcome in await finished:
                        results[item.id] = outcome
                        if outcome.ok:
                            journal.add(item.id, outcome)
                        progress.update(1)
                    journal.flush()
            finally:
                # On an interrupt, let downloads in flight wind down before the client closes.
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        progress.close()
    return results


def _write_record(workdir: Workdir, task: TaskSettings, manifests: dict[str, list[Manifest]]) -> None:
    splits = {}
    for split in SPLITS:
        entries = []
        for manifest in manifests[split]:
            entry = manifest.record()
            entry["path"] = str(manifest.path.resolve())
            entries.append(entry)
        splits[split] = entries
    record = {
        "version": 1,
        "ingested_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "task": {
            "source_column": task.source_column,
            "label_column": task.label_column,
            "positive": task.positive,
            "negative": task.negative,
        },
        "splits": splits,
    }
    path = record_path(workdir)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def ingest(
    workdir: Workdir,
    settings: Settings,
    *,
    ground_truth: Path | None,
    pool: Sequence[Path],
    test: Path | None,
) -> IngestReport:
    """Ingest manifests into ``workdir``: the images table, the rejects table, ``ingest.json``.

    Args:
        workdir: the work directory (images go to ``images/<id>.png``).
        settings: ``task`` names the columns and label values; ``ingest`` the limits.
        ground_truth: labeled manifest (source and label columns).
        pool: unlabeled manifests.
        test: the test manifest.

    Raises:
        InputError: a manifest is unreadable, a label cell is invalid, or one image carries
            two labels in the ground truth.
        ColumnError: a manifest lacks the source or label column.
    """
    started = time.perf_counter()
    workdir.ensure()
    task = settings.task
    manifests = _plan(workdir, task, ground_truth, pool, test)
    items, rejects, manifest_rows = _collect(manifests)
    known = _load_known(workdir)
    journal = _Journal(workdir.tables / JOURNAL_FILE)
    try:
        _recover(items, known, workdir, _limits(settings.ingest), journal)
        todo = [item for item in items.values() if item.id not in known]
        outcomes = asyncio.run(_process_async(todo, workdir, settings.ingest, journal)) if todo else {}
    finally:
        journal.close()

    images: list[dict[str, Any]] = []
    by_pixels: dict[str, _Item] = {}
    for item in items.values():
        if item.id in known:
            width, height, sha = known[item.id]
        else:
            outcome = outcomes[item.id]
            if not outcome.ok:
                rejects.append(_reject(item.source, item.split, item.where, outcome.reason, outcome.detail))
                continue
            width, height, sha = outcome.width, outcome.height, outcome.sha256
        if item.split != "test":
            twin = by_pixels.get(sha)
            if twin is not None:
                if item.split == "gt" and twin.split == "gt" and twin.label != item.label:
                    names = {1: "positive", 0: "negative"}
                    raise InputError(
                        f"{item.where}: conflicting labels for one image: {item.source} is labeled "
                        f"{names[item.label or 0]}, the same picture {twin.source} at {twin.where} "
                        f"is labeled {names[twin.label or 0]}"
                    )
                detail = f"same picture as {SPLIT_NAMES[twin.split]} {twin.source} ({twin.where})"
                rejects.append(_reject(item.source, item.split, item.where, "duplicate", detail))
                continue
            by_pixels[sha] = item
        images.append(
            {
                "id": item.id,
                "source": item.source,
                "path": f"images/{item.id}.png",
                "split": item.split,
                "label": item.label,
                "width": width,
                "height": height,
                "sha256": sha,
            }
        )

    images_frame = pl.DataFrame(images, schema=tables.IMAGES)
    rejects_frame = pl.DataFrame(rejects, schema=tables.REJECTS)
    tables.write(images_frame, workdir.table("images"))
    tables.write(rejects_frame, workdir.table("rejects"))
    tables.write(pl.DataFrame(manifest_rows, schema=MANIFEST_ROWS), workdir.table("manifest_rows"))
    _write_record(workdir, task, manifests)
    _compact_journal(workdir, images_frame)

    counts = Counter(images_frame["split"].to_list())
    gt_labels = Counter(images_frame.filter(pl.col("split") == "gt")["label"].to_list())
    return IngestReport(
        counts={split: counts.get(split, 0) for split in SPLITS},
        labels={"positive": gt_labels.get(1, 0), "negative": gt_labels.get(0, 0)},
        rejects=dict(Counter(rejects_frame["reason"].to_list()).most_common()),
        processed=len(todo),
        reused=len(items) - len(todo),
        seconds=time.perf_counter() - started,
        manifests={split: [str(m.path) for m in manifests[split]] for split in SPLITS},
    )


def _compact_journal(workdir: Workdir, images_frame: pl.DataFrame) -> None:
    """Rewrite the journal as every image known now, so it does not grow run after run."""
    known = _load_known(workdir)
    for image, width, height, sha in images_frame.select("id", "width", "height", "sha256").iter_rows():
        known[image] = (width, height, sha)
    path = workdir.tables / JOURNAL_FILE
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for image, (width, height, sha) in known.items():
            handle.write(json.dumps({"id": image, "width": width, "height": height, "sha256": sha}) + "\n")
    os.replace(tmp, path)


def run(ctx: StageContext) -> IngestReport:
    """The ingest stage: the manifests are ``ctx.options["manifests"]`` (``ground_truth``,
    ``pool`` list, ``test``; a split left out keeps the manifests of the last run)."""
    given = ctx.options.get("manifests") or {}
    return ingest(
        ctx.workdir,
        ctx.settings,
        ground_truth=Path(given["ground_truth"]) if given.get("ground_truth") else None,
        pool=[Path(p) for p in given.get("pool") or []],
        test=Path(given["test"]) if given.get("test") else None,
    )
