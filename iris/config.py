"""Settings: defaults < ``iris.toml`` < ``IRIS_*`` environment variables < command-line flags.

Every stage has a section (a frozen dataclass below). A key ``store.url`` can be set as
``[store] url = ...`` in ``iris.toml``, as ``IRIS_STORE_URL`` in the environment, or by a
flag the command exposes. ``IRIS_QDRANT_URL`` and ``IRIS_QDRANT_API_KEY`` are aliases for
``store.url`` and ``store.api_key``.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from iris.errors import ConfigError

CONFIG_FILE = "iris.toml"


@dataclass(frozen=True)
class TaskSettings:
    """What the binary task is and how the manifests name things."""

    source_column: str = "downloadUrl"
    """Column holding the image URL or path."""
    label_column: str = "is_conifer"
    """Column holding the ground-truth label."""
    positive: str = "TRUE"
    """Cell value of the positive class (compared case-insensitively, stripped)."""
    negative: str = "FALSE"
    """Cell value of the negative class."""
    positive_name: str = "conifer"
    """Human name of the positive class (crowd instructions, reports)."""
    negative_name: str = "deciduous"
    """Human name of the negative class."""


@dataclass(frozen=True)
class IngestSettings:
    """Downloading, validating and storing images (``iris ingest``)."""

    concurrency: int = 16
    """Simultaneous HTTP downloads."""
    timeout_s: float = 10.0
    """Timeout of one HTTP request (connect, read, write, pool), in seconds."""
    retries: int = 3
    """Retries after a timeout, connection error, 429 or 5xx (never after another 4xx)."""
    backoff_s: float = 0.5
    """Wait before the first retry; doubled before each next one."""
    max_pixels: int = 50_000_000
    """Images with more pixels are rejected as decompression bombs."""
    min_side: int = 8
    """Images with a shorter side are rejected as too small."""
    max_side: int = 10_000
    """Images with a longer side are rejected as too large."""
    max_bytes: int = 100_000_000
    """Downloads larger than this are abandoned."""
    workers: int = 0
    """Decoding and validation: 0 = threads, one per CPU core; N > 0 = N worker processes."""


@dataclass(frozen=True)
class EmbedSettings:
    backbone: str = "efficientnet_lite0"
    weights: str = "imagenet"
    """``imagenet``, ``none`` or a path to a state-dict file."""
    image_size: int = 128
    finetune_epochs: int = 8
    batch_size: int = 64
    parity_tolerance: float = 1e-3
    seed: int = 0
    device: str = "auto"
    """ONNX Runtime device: ``auto`` (CUDA when onnxruntime-gpu offers it), ``cpu``, ``cuda[:N]``."""
    executor: Literal["local", "ray"] = "local"
    """Who runs the encoder: this process, or Ray Data actors (``RAY_ADDRESS`` names a cluster)."""
    ray_actors: int = 0
    """Ray executor: encoder actors; 0 = one per CPU (per GPU with a ``cuda`` device) Ray offers."""


@dataclass(frozen=True)
class StoreSettings:
    kind: Literal["edge", "server"] = "edge"
    url: str = ""
    """Qdrant server URL; setting it selects the server store."""
    api_key: str = ""
    collection: str = "iris"
    hnsw_ef: int = 0
    """HNSW search breadth; 0 lets Qdrant choose. Raise it for higher recall."""
    timeout_s: float = 60.0
    """Server requests time out after this many seconds."""
    batch_size: int = 512
    """Points per request when upserting or copying to a server."""
    # A distributed Qdrant (docker compose --profile cluster; docs/qdrant.md). Read when a
    # server collection is created; the embedded store is always one shard, one copy.
    shards: int = 1
    """Shards of a new server collection; a cluster spreads them over its nodes (e.g. one per node)."""
    replication_factor: int = 1
    """Copies of each shard on a cluster; 2 keeps every point readable when one node is down."""
    write_consistency: int = 1
    """Copies that must confirm a write before Qdrant answers (at most ``replication_factor``)."""


@dataclass(frozen=True)
class PseudolabelSettings:
    members: tuple[str, ...] = (
        "k3-uniform",
        "k5-uniform",
        "k7-distance",
        "k9-uniform",
        "k11-distance",
        "k15-distance",
    )
    """kNN ensemble members by name: ``k<K>-<uniform|distance>[-<cosine|dot|euclid>]``."""
    confidence: float = 0.7
    """A member is confident when its winning vote share is at least this."""
    quorum: float = 0.8
    """Share of members that must agree confidently for an ensemble label."""
    use_kmeans: bool = True
    seed: int = 0
    batch_size: int = 512
    """Query vectors per batched Qdrant query."""
    exact: bool = False
    """Exact (brute-force) kNN queries instead of HNSW."""
    estimate_folds: int = 5
    """Folds for the KMeans part of the accuracy estimate (the kNN part is leave-one-out); 0 skips it."""
    kmeans_max_iter: int = 100


@dataclass(frozen=True)
class SelectSettings:
    neighbours: int = 5
    """An image joins the shortlist when a problematic image is among its k nearest."""
    budget: int = 0
    """Cap on the shortlist size; 0 means no cap."""
    batch_size: int = 512
    """Query vectors per batched Qdrant query."""
    exact: bool = False
    """Exact (brute-force) kNN queries instead of HNSW."""
    map_points: int = 2000
    """Points drawn on reports/embedding_map.png (a seeded subsample); 0 skips the map."""


@dataclass(frozen=True)
class CrowdSettings:
    backend: Literal["simulated", "toloka", "web"] = "simulated"
    """Who carries out the campaign: ``simulated`` (virtual people), ``toloka`` or ``web``."""
    training: int = 30
    """Ground-truth images used as training tasks (each shown with a hint)."""
    exam: int = 20
    """Ground-truth images in the exam that grants the skill; the rest become honeypots."""
    exam_pass: float = 0.8
    """Share of exam answers that must be right to get the skill (and the main pool)."""
    skill_name: str = "iris-binary"
    overlap: int = 3
    """Answers bought per task."""
    page_size: int = 50
    """Tasks per page (assignment), honeypots included."""
    honeypots_per_page: int = 1
    price_per_page: float = 0.05
    """Reward per accepted page, in the backend's currency (USD on Toloka)."""
    exam_price: float = 0.01
    """Reward per exam page (Toloka's minimum for a paid pool is 0.005)."""
    min_seconds_per_page: float = 20.0
    """Quality control: a page submitted faster than this bans its worker for ``fast_ban_days``."""
    fast_ban_days: int = 1
    min_honeypot_accuracy: float = 0.6
    """Quality control: accuracy on the last ``honeypot_window`` honeypots below this bans."""
    honeypot_window: int = 5
    min_majority_agreement: float = 0.6
    """Quality control: agreement with the others' majority on the last ``majority_window`` tasks."""
    majority_window: int = 20
    ban_days: int = 7
    """Ban length for the honeypot and majority rules."""
    reject_banned: bool = False
    """Reject (do not pay for, do not keep) the answers of banned workers."""
    reissue_banned: bool = True
    """Re-issue the tasks a banned worker answered, so that other workers refill the overlap."""
    instructions: str = ""
    """Path to an HTML template; empty means the built-in one."""
    toloka_token: str = ""
    toloka_url: str = ""
    """Toloka API base URL; empty means production (https://toloka.dev)."""
    # simulated crowd
    answer_key: str = ""
    """Simulated crowd only: CSV with the true labels (source,label) its virtual people see."""
    workers: int = 60
    """Simulated crowd: people who take the training and the exam."""
    spammers: float = 0.2
    """Simulated crowd: share of people who pass the exam, then answer at random."""
    fast_clickers: float = 0.1
    """Simulated crowd: share who pass the exam, then click through pages too fast, mostly one answer."""
    pages_per_worker: int = 12
    """Simulated crowd: mean number of pages a person does before leaving."""
    pace_s: float = 0.0
    """Simulated crowd: wall-clock seconds to wait after each page bought (0 = at once), to
    watch a campaign progress or to interrupt one in a test."""
    seed: int = 0


@dataclass(frozen=True)
class AggregateSettings:
    method: str = "dawid-skene"
    """``majority-vote``, ``wawa``, ``dawid-skene`` (honeypots as gold) or ``glad``."""
    n_iter: int = 100
    """EM iterations for Dawid-Skene and GLAD."""
    use_honeypots: bool = True
    """Feed honeypot answers (with their known labels) to the aggregator."""


@dataclass(frozen=True)
class PropagateSettings:
    ks: tuple[int, ...] = (3, 5, 7, 11, 15)
    """Candidate numbers of neighbours for the cross-validated search."""
    weightings: tuple[str, ...] = ("uniform", "distance")
    """Candidate vote weightings: ``uniform`` or ``distance`` (1 / distance)."""
    metrics: tuple[str, ...] = ("cosine", "euclid")
    """Candidate distances; ``euclid`` is derived from the cosine score on normalised vectors."""
    folds: int = 5
    batch_size: int = 512
    """Query vectors per Qdrant batch request."""
    seed: int = 0


@dataclass(frozen=True)
class TrainSettings:
    backbone: str = "resnet18"
    weights: str = "imagenet"
    head: Literal["linear", "mlp"] = "linear"
    image_size: int = 128
    epochs: int = 10
    batch_size: int = 64
    schedule: str = "noam"
    model_size: int = 256
    warmup_steps: int = 200
    lr_factor: float = 1.0
    backbone_lr_scale: float = 0.1
    """The backbone learns at this fraction of the head's rate (pretrained weights move gently)."""
    val_fraction: float = 0.1
    patience: int = 3
    confidence_weighting: bool = False
    """Weight each image's loss by its label confidence (final_labels.confidence)."""
    freeze_backbone: bool = False
    """Train only the head on features computed once by the frozen backbone (fast on CPU)."""
    augment: bool = True
    """Random crops/flips/colour jitter sized to the image size (fine-tuning only)."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu`` or ``cuda[:N]``; mixed precision on CUDA."""
    workers: int = 0
    """DataLoader worker processes for image decoding (0 = in the training process)."""
    seed: int = 0


@dataclass(frozen=True)
class Settings:
    task: TaskSettings = field(default_factory=TaskSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    embed: EmbedSettings = field(default_factory=EmbedSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    pseudolabel: PseudolabelSettings = field(default_factory=PseudolabelSettings)
    select: SelectSettings = field(default_factory=SelectSettings)
    crowd: CrowdSettings = field(default_factory=CrowdSettings)
    aggregate: AggregateSettings = field(default_factory=AggregateSettings)
    propagate: PropagateSettings = field(default_factory=PropagateSettings)
    train: TrainSettings = field(default_factory=TrainSettings)


SECTIONS: tuple[str, ...] = tuple(f.name for f in fields(Settings))
ENV_ALIASES = {
    "IRIS_QDRANT_URL": ("store", "url"),
    "IRIS_QDRANT_API_KEY": ("store", "api_key"),
}


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Turn a TOML or environment value into the type the field declares."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise ConfigError(f"{where}: got {value!r}, expected one of {', '.join(map(str, choices))}")
        return value
    if origin is tuple:
        (item_type, _ellipsis) = typing.get_args(annotation)
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise ConfigError(f"{where}: got {value!r}, expected a list")
        return tuple(_coerce(v.strip() if isinstance(v, str) else v, item_type, where) for v in items)
    try:
        if annotation is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ValueError(value)
        if annotation is int:
            if isinstance(value, bool):
                raise ValueError(value)
            return int(value)
        if annotation is float:
            return float(value)
        if annotation is str:
            if not isinstance(value, str | int | float):
                raise ValueError(value)
            return str(value)
    except ValueError:
        raise ConfigError(f"{where}: got {value!r}, expected {annotation.__name__}") from None
    return value


def _apply(settings: Settings, updates: Mapping[str, Mapping[str, Any]], origin: str) -> Settings:
    changed: dict[str, Any] = {}
    for section, values in updates.items():
        if section not in SECTIONS:
            raise ConfigError(f"{origin}: unknown section [{section}], expected one of {', '.join(SECTIONS)}")
        current = getattr(settings, section)
        hints = typing.get_type_hints(type(current))
        known = {f.name for f in fields(current)}
        kwargs = {}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(
                    f"{origin}: unknown key {section}.{key}, expected one of {', '.join(sorted(known))}"
                )
            kwargs[key] = _coerce(value, hints[key], f"{origin}: {section}.{key}")
        changed[section] = replace(changed.get(section, current), **kwargs)
    return replace(settings, **changed)


def _from_env(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    updates: dict[str, dict[str, str]] = {}
    for name, (section, key) in ENV_ALIASES.items():
        if environ.get(name):
            updates.setdefault(section, {})[key] = environ[name]
    for name, value in environ.items():
        if not name.startswith("IRIS_") or name in ENV_ALIASES or name in {"IRIS_WORKDIR"}:
            continue
        rest = name[len("IRIS_") :].lower()
        for section in SECTIONS:
            if rest.startswith(section + "_"):
                key = rest[len(section) + 1 :]
                if key in {f.name for f in fields(getattr(Settings(), section))}:
                    updates.setdefault(section, {})[key] = value
                break
    return updates


def load_settings(
    workdir: Path | None,
    *,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Read settings for a work directory.

    Args:
        workdir: folder holding ``iris.toml``; ``None`` uses defaults and environment only.
        overrides: ``{section: {key: value}}`` from flags; ``None`` values are ignored.
        environ: environment mapping (``os.environ`` when omitted).
    """
    settings = Settings()
    if workdir is not None:
        path = workdir / CONFIG_FILE
        if path.exists():
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{path}: invalid TOML: {exc}") from None
            settings = _apply(settings, data, str(path))
    settings = _apply(settings, _from_env(os.environ if environ is None else environ), "environment")
    if overrides:
        cleaned = {s: {k: v for k, v in kv.items() if v is not None} for s, kv in overrides.items()}
        settings = _apply(settings, {s: kv for s, kv in cleaned.items() if kv}, "command line")
    if settings.store.url and settings.store.kind == "edge":
        settings = replace(settings, store=replace(settings.store, kind="server"))
    return settings


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def render_toml(settings: Settings) -> str:
    """Write every setting out as TOML, with the field docstrings omitted."""
    lines = ["# iris settings; environment variables IRIS_<SECTION>_<KEY> and flags override these."]
    for section in SECTIONS:
        lines.append(f"\n[{section}]")
        for key, value in dataclasses.asdict(getattr(settings, section)).items():
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"
