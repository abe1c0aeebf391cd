"""What ``iris run`` re-runs, and why: every stage's inputs, fingerprinted.

Each stage declares once, in :data:`READS`, what it reads: tables, settings sections,
model files, files named by a setting, and (ingest) the manifests. Its fingerprint is the
content hash of each of those (:func:`fingerprint`), recorded in ``state.json`` when the
stage finishes, taken just before it ran (so a table an earlier stage of the same run
wrote is hashed as written). A stage never reads its own outputs, so re-running it with
nothing changed gives the same fingerprint.

:func:`plan_run` compares the recorded fingerprints with today's: the first stage that is
not finished, whose inputs changed or that ``--redo`` names runs, and so does every stage
after it (a later stage's inputs are written by the earlier ones, and the vector store's
payload is not fingerprinted: it is rebuilt from the stages in order).

Pure and light: no numpy, polars or store engine (``iris.cli`` imports the pipeline).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from iris.config import Settings
from iris.workdir import Workdir

INGEST_RECORD = "ingest.json"
"""``tables/ingest.json``: the manifests the last ingest read, and how (iris.data.records)."""
SPLIT_NAMES = {"gt": "ground-truth", "pool": "pool", "test": "test"}
MANIFEST_KEYS = {"gt": "ground_truth", "pool": "pool", "test": "test"}
"""Split of the ingest record → key of ``run_pipeline``'s manifests."""


@dataclass(frozen=True)
class Reads:
    """What a stage reads: a change in any of it re-runs the stage."""

    tables: tuple[str, ...] = ()
    settings: tuple[str, ...] = ()
    """Settings sections (less :data:`HOW_NOT_WHAT`)."""
    models: tuple[str, ...] = ()
    """Files under the work directory, e.g. ``models/embedder.onnx``."""
    files: tuple[tuple[str, str], ...] = ()
    """Settings ``(section, key)`` naming a file whose content the stage reads."""
    manifests: bool = False


READS: dict[str, Reads] = {
    "ingest": Reads(settings=("task", "ingest"), manifests=True),
    "embed": Reads(tables=("images",), settings=("embed",), files=(("embed", "weights"),)),
    "pseudolabel": Reads(settings=("pseudolabel",), models=("models/embedder.onnx",)),
    "select": Reads(tables=("pseudolabels",), settings=("select",), models=("models/embedder.onnx",)),
    "crowd": Reads(
        tables=("images", "shortlist"),
        settings=("crowd", "rounds", "pseudolabel"),
        models=("models/embedder.onnx",),
        files=(("crowd", "answer_key"),),
    ),
    "aggregate": Reads(tables=("answers",), settings=("aggregate",)),
    "propagate": Reads(
        tables=("images", "pseudolabels", "aggregated", "round_labels"),
        settings=("propagate", "rounds"),
        models=("models/embedder.onnx",),
    ),
    "train": Reads(tables=("images", "final_labels"), settings=("train",), files=(("train", "weights"),)),
    "predict": Reads(
        tables=("images", "final_labels", "manifest_rows"),
        settings=("train",),
        models=("models/classifier/best.pt",),
    ),
}
"""Per stage of :data:`iris.pipeline.STAGES`, what it reads. The pseudolabel, select and
propagate stages read the vectors in the store, which the embedder made: its ONNX file
stands for them. The crowd stage's rounds label with the ``[pseudolabel]`` ensemble over
those vectors; propagate takes the rounds' final automatic labels (``round_labels``)."""

HOW_NOT_WHAT: dict[str, frozenset[str]] = {
    "ingest": frozenset({"concurrency", "timeout_s", "retries", "backoff_s", "workers"}),
    "embed": frozenset({"device", "executor", "ray_actors"}),
    "pseudolabel": frozenset({"batch_size"}),
    "select": frozenset({"batch_size", "map_points"}),
    "crowd": frozenset({"toloka_token", "toloka_url"}),
    "propagate": frozenset({"batch_size"}),
    "train": frozenset({"device", "workers"}),
}
"""Settings that say how a stage runs, not what comes out: changing them re-runs nothing.
(The web labeler's ``web_*`` serving options are left out of ``[crowd]`` too.)"""


def file_hash(path: Path) -> str:
    """sha256 of a file's content (16 hex digits), or ``missing``."""
    if not path.is_file():
        return "missing"
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def settings_hash(settings: Settings, section: str) -> str:
    """sha256 of a settings section, less the keys of :data:`HOW_NOT_WHAT`."""
    values: dict[str, Any] = asdict(getattr(settings, section))
    skip = HOW_NOT_WHAT.get(section, frozenset())
    kept = {
        k: v for k, v in values.items() if k not in skip and not (section == "crowd" and k.startswith("web_"))
    }
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def ingest_manifests(workdir: Workdir, given: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """The manifests an ingest would read now, by split: those given to this run, else the
    ones the last ingest recorded in ``tables/ingest.json`` (as ingest itself does)."""
    record: dict[str, Any] = {}
    path = workdir.tables / INGEST_RECORD
    if path.exists():
        record = json.loads(path.read_text(encoding="utf-8")).get("splits", {})
    given = given or {}
    found: dict[str, list[str]] = {}
    for split, key in MANIFEST_KEYS.items():
        value = given.get(key)
        paths = [value] if isinstance(value, str | Path) else list(value or [])
        if not paths:
            paths = [entry["path"] for entry in record.get(split, [])]
        found[split] = [str(p) for p in paths]
    return found


def fingerprint(
    stage: str, workdir: Workdir, settings: Settings, manifests: Mapping[str, Sequence[str]]
) -> dict[str, str]:
    """Content hash of every input of ``stage`` (:data:`READS`), keyed by what it is.

    Args:
        manifests: by split, the manifests ingest reads (:func:`ingest_manifests`).
    """
    reads = READS[stage]
    parts: dict[str, str] = {}
    if reads.manifests:
        for split, paths in manifests.items():
            for path in paths:
                parts[f"{SPLIT_NAMES[split]} manifest {path}"] = file_hash(Path(path))
    for table in reads.tables:
        parts[f"table {table}"] = file_hash(workdir.table(table))
    for section in reads.settings:
        parts[f"settings [{section}]"] = settings_hash(settings, section)
    for model in reads.models:
        parts[f"model {model}"] = file_hash(workdir.root / model)
    for section, key in reads.files:
        # "imagenet", "none" or an empty answer key name no file: nothing to hash then.
        setting = Path(str(getattr(getattr(settings, section), key))).expanduser()
        if setting.is_file():
            parts[f"file {section}.{key}"] = file_hash(setting)
    return parts


def changes(recorded: Mapping[str, str], current: Mapping[str, str]) -> list[str]:
    """What differs between two fingerprints, as ``"<input> changed"`` phrases."""
    found = [f"{key} changed" for key, value in current.items() if recorded.get(key) != value]
    found += [f"{key} is no longer read" for key in recorded if key not in current]
    return found


@dataclass(frozen=True)
class Step:
    """One row of the plan: will the stage run, and why."""

    stage: str
    run: bool
    reason: str

    @property
    def row(self) -> dict[str, str]:
        return {"stage": self.stage, "plan": "will run" if self.run else "skip", "reason": self.reason}


def plan_run(
    stages: Sequence[str],
    recorded: Mapping[str, Mapping[str, Any]],
    current: Callable[[str], dict[str, str]],
    *,
    redo: Sequence[str] = (),
    until: str | None = None,
) -> list[Step]:
    """The plan of ``iris run``: the first stage that needs to run, and every one after it.

    Args:
        stages: stage names in order.
        recorded: ``state.json``'s stages: ``{"done": bool, "inputs": fingerprint, ...}``.
        current: a stage's fingerprint now (called only for stages before the first to run).
        redo: stages ``--redo`` names.
        until: the last stage to run; the later ones are left as they are.
    """
    steps: list[Step] = []
    first: str | None = None
    for name in stages:
        if first is not None:
            steps.append(Step(name, True, f"after {first}"))
        else:
            reason = _why_run(name, recorded.get(name, {}), current, redo)
            if reason:
                first = name
            steps.append(Step(name, bool(reason), reason or "inputs unchanged"))
        if name == until:
            break
    if until is not None:
        for name in stages[stages.index(until) + 1 :]:
            steps.append(Step(name, False, f"after --until {until}"))
    return steps


def _why_run(
    name: str, recorded: Mapping[str, Any], current: Callable[[str], dict[str, str]], redo: Sequence[str]
) -> str:
    """Why ``name`` must run ("" when it need not)."""
    if name in redo:
        return f"--redo {name}"
    if not recorded.get("done"):
        return "not finished"
    inputs = recorded.get("inputs")
    if inputs is None:
        return "no input fingerprint recorded"
    return ", ".join(changes(inputs, current(name)))


def rerun_line(steps: Sequence[Step], recorded: Mapping[str, Mapping[str, Any]]) -> str | None:
    """One line saying what is re-run and why, when a finished stage is run again."""
    running = [s for s in steps if s.run]
    if not running or not recorded.get(running[0].stage, {}).get("done"):
        return None
    first, rest = running[0], len(running) - 1
    after = {0: "", 1: " and the stage after it"}.get(rest, f" and the {rest} stages after it")
    return f"re-running {first.stage}{after}: {first.reason}"
