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

Refusals: a ground truth with fewer than ``ingest.min_per_class`` images of either class
(one class only, say) stops the ingest before any fetch, and again after the rejects;
a failed write (a full disk) stops it with one line naming the file, keeping every image
already stored for the re-run.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import multiprocessing
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
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
from iris.errors import InputError, WorkdirError
from iris.progress import bar
from iris.workdir import Workdir

SPLITS = tables.SPLITS
SPLIT_NAMES = {"gt": "ground truth", "pool": "pool", "test": "test"}
JOURNAL_FILE = "ingest_journal.jsonl"
MANIFEST_ROWS = tables.MANIFEST_ROWS
_LOCAL_BATCH = 32
_DISK_FULL = frozenset({errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)})


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
    notes: list[str] = field(default_factory=list)
    """Lines worth telling the user (a label column found by its ``is_`` prefix)."""

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
        self.path = path
        with _writing(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8")

    def add(self, image: int, outcome: Outcome) -> None:
        entry = {"id": image, "width": outcome.width, "height": outcome.height, "sha256": outcome.sha256}
        with _writing(self.path):
            self._file.write(json.dumps(entry) + "\n")

    def flush(self) -> None:
        """Make the entries so far survive a crash (called once per finished batch)."""
        with _writing(self.path):
            self._file.flush()

    def close(self) -> None:
        with _writing(self.path):
            self._file.close()


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Name ``path`` in an ``OSError`` raised while writing it (a write on an open file names none)."""
    try:
        yield
    except OSError as exc:
        if exc.filename:
            raise
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
    except pl.exceptions.PolarsError as exc:
        # Polars reports a failed write as "... underlying IO error: ... (os error 28)".
        found = re.search(r"os error (\d+)", str(exc))
        if found is None:
            raise
        code = int(found[1])
        raise OSError(code, os.strerror(code), str(path)) from exc


def _write_failed(exc: OSError) -> WorkdirError:
    """One line for a failed write; the images stored so far stay for the re-run."""
    where = exc.filename or "the work directory"
    problem = "disk full" if exc.errno in _DISK_FULL else "I/O error"
    return WorkdirError(
        f"{where}: {problem} ({exc.strerror or exc}); ingest stopped, the images already stored "
        "are kept: make room and run it again to resume"
    )


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
    # Left at its default, the label column may be found by its is_ prefix (is_shirt, ...).
    detect = task.label_column == TaskSettings().label_column
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
                    detect_label=detect and split == "gt",
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
    return Limits(
        max_pixels=options.max_pixels,
        min_side=options.min_side,
        max_side=options.max_side,
        max_bytes=options.max_bytes,
    )


def _check_classes(
    manifests: list[Manifest],
    labels: Sequence[int | None],
    *,
    least: int,
    rejected: Counter[str] | None = None,
) -> None:
    """Refuse a ground truth with fewer than ``least`` images of either class.

    Args:
        manifests: the ground-truth manifests (named in the message).
        labels: one label per distinct ground-truth image.
        least: ``ingest.min_per_class``.
        rejected: ground-truth rows rejected per reason, once the images are fetched.
    """
    if not manifests:
        return
    counts = Counter(labels)
    positive, negative = counts.get(1, 0), counts.get(0, 0)
    if min(positive, negative) >= least:
        return
    first = manifests[0]
    files = ", ".join(str(m.path) for m in manifests)
    after = ""
    if rejected:
        reasons = ", ".join(f"{n} {reason}" for reason, n in rejected.most_common())
        after = f" after rejecting {sum(rejected.values())} row(s) ({reasons})"
    raise InputError(
        f"{files}: ground truth has {positive} positive ({first.positive}) and {negative} negative "
        f"({first.negative}) image(s) in column {first.label_column}{after}; expected at least {least} "
        "of each class (ingest.min_per_class)"
    )


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
                    # A decoder problem is a rejected row; an OSError here is a failed write.
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
    # The ground truth's own label column (one found by its is_ prefix) shapes the submission.
    label_column = next((m.label_column for m in manifests["gt"] if m.label_column), task.label_column)
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
            "label_column": label_column,
            "positive": task.positive,
            "negative": task.negative,
        },
        "splits": splits,
    }
    path = record_path(workdir)
    tmp = path.with_suffix(".json.tmp")
    with _writing(tmp):
        tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def ingest(
    workdir: Workdir,
    settings: Settings,
    *,
    ground_truth: Path | None,
    pool: Sequence[Path],
    test: Path | None,
    echo: Callable[[str], None] | None = None,
) -> IngestReport:
    """Ingest manifests into ``workdir``: the images table, the rejects table, ``ingest.json``.

    Args:
        workdir: the work directory (images go to ``images/<id>.png``).
        settings: ``task`` names the columns and label values; ``ingest`` the limits.
        ground_truth: labeled manifest (source and label columns).
        pool: unlabeled manifests.
        test: the test manifest.
        echo: receives the report's notes as they arise (one line each).

    Raises:
        InputError: a manifest is unreadable, a label cell is invalid, one image carries
            two labels in the ground truth, or the ground truth has fewer than
            ``ingest.min_per_class`` images of a class.
        ColumnError: a manifest lacks the source or label column.
        WorkdirError: writing an image or a table failed (a full disk); what was stored is kept.
    """
    try:
        return _ingest(workdir, settings, ground_truth=ground_truth, pool=pool, test=test, echo=echo)
    except OSError as exc:
        raise _write_failed(exc) from None


def _ingest(
    workdir: Workdir,
    settings: Settings,
    *,
    ground_truth: Path | None,
    pool: Sequence[Path],
    test: Path | None,
    echo: Callable[[str], None] | None,
) -> IngestReport:
    started = time.perf_counter()
    workdir.ensure()
    task = settings.task
    manifests = _plan(workdir, task, ground_truth, pool, test)
    notes = [note for split in SPLITS for manifest in manifests[split] for note in manifest.notes]
    for note in notes:
        (echo or _no_echo)(note)
    items, rejects, manifest_rows = _collect(manifests)
    least = settings.ingest.min_per_class
    _check_classes(manifests["gt"], [i.label for i in items.values() if i.split == "gt"], least=least)
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

    _check_classes(
        manifests["gt"],
        [image["label"] for image in images if image["split"] == "gt"],
        least=least,
        rejected=Counter(r["reason"] for r in rejects if r["split"] == "gt"),
    )
    images_frame = pl.DataFrame(images, schema=tables.IMAGES)
    rejects_frame = pl.DataFrame(rejects, schema=tables.REJECTS)
    for name, frame in (
        ("images", images_frame),
        ("rejects", rejects_frame),
        ("manifest_rows", pl.DataFrame(manifest_rows, schema=MANIFEST_ROWS)),
    ):
        with _writing(workdir.table(name)):
            tables.write(frame, workdir.table(name))
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
        notes=notes,
    )


def _no_echo(_line: str) -> None:
    """Notes go to the report only."""


def _compact_journal(workdir: Workdir, images_frame: pl.DataFrame) -> None:
    """Rewrite the journal as every image known now, so it does not grow run after run."""
    known = _load_known(workdir)
    for image, width, height, sha in images_frame.select("id", "width", "height", "sha256").iter_rows():
        known[image] = (width, height, sha)
    path = workdir.tables / JOURNAL_FILE
    tmp = path.with_suffix(".jsonl.tmp")
    with _writing(tmp), tmp.open("w", encoding="utf-8") as handle:
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
        echo=ctx.echo,
    )
