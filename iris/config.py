"""Settings: defaults < ``iris.toml`` < ``IRIS_*`` environment variables < command-line flags.

Every stage has a section (a frozen dataclass below). A key ``store.url`` can be set as
``[store] url = ...`` in ``iris.toml``, as ``IRIS_STORE_URL`` in the environment, or by a
flag the command exposes. ``IRIS_QDRANT_URL`` and ``IRIS_QDRANT_API_KEY`` are aliases for
``store.url`` and ``store.api_key``.

Each field declares what it allows, next to its default and once: its type (``int``,
``float``, ``bool``, ``str``, a ``Literal`` of choices, or a ``tuple`` of those) and, in
``Annotated``, constraints such as :func:`at_least`, :func:`above`, :func:`between`,
:class:`Matches`, :data:`NOT_EMPTY` or :data:`DISTINCT`::

    overlap: Annotated[int, at_least(1)] = 3

:func:`load_settings` turns each source into the declared types (``2.9`` is not an
integer, it is refused rather than truncated), merges them, then checks every merged value
against its declaration. A bad value stops the command before any stage starts, with one
line naming the key, the value, where it came from and what is allowed::

    crowd.overlap = 0 (from IRIS_CROWD_OVERLAP): expected an integer >= 1

Unknown sections and keys in ``iris.toml`` are refused (naming the nearest real key):
the file is iris's own and a misspelt key would silently fall back to its default. An
unknown ``IRIS_*`` variable only gets a warning naming the nearest real one, because the
environment is shared with other programs and shells. Rules that tie fields of a section
together are :data:`RULES`, checked after the fields; the crowd's (honeypots per page
below the page size, two class names that differ) stay in
:class:`iris.crowd.spec.CampaignSpec`, which is built from them.

A new setting is one field with a docstring; a number must declare its range (a test
checks that none is bare).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import os
import re
import tomllib
import typing
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Annotated, Any, Literal

from iris.errors import ConfigError
from iris.vocabulary import Metric, Weighting

CONFIG_FILE = "iris.toml"


# --- constraints -------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """Numbers from ``low`` to ``high`` (``None``: no bound); ``closed`` says which ends belong."""

    low: float | None = None
    high: float | None = None
    closed: Literal["both", "left", "right", "neither"] = "both"

    def allows(self, value: Any) -> bool:
        low_in = self.closed in {"both", "left"}
        high_in = self.closed in {"both", "right"}
        if self.low is not None and not (value >= self.low if low_in else value > self.low):
            return False
        return self.high is None or (value <= self.high if high_in else value < self.high)

    def describe(self) -> str:
        low_in = self.closed in {"both", "left"}
        high_in = self.closed in {"both", "right"}
        if self.low is not None and self.low == self.high:
            return _number(self.low)
        if self.high is None:
            return f"{'>=' if low_in else '>'} {_number(self.low)}" if self.low is not None else "any"
        if self.low is None:
            return f"{'<=' if high_in else '<'} {_number(self.high)}"
        return (
            f"in {'[' if low_in else '('}{_number(self.low)}, {_number(self.high)}{']' if high_in else ')'}"
        )


def at_least(low: float) -> Interval:
    """``value >= low``."""
    return Interval(low, None)


def above(low: float) -> Interval:
    """``value > low``."""
    return Interval(low, None, closed="neither")


def between(
    low: float, high: float, closed: Literal["both", "left", "right", "neither"] = "both"
) -> Interval:
    """``low <= value <= high``; ``closed`` opens either end."""
    return Interval(low, high, closed)


@dataclass(frozen=True)
class AnyOf:
    """Allowed when one of ``options`` allows it, e.g. ``AnyOf((Interval(0, 0), at_least(2)))``."""

    options: tuple[Interval, ...]

    def allows(self, value: Any) -> bool:
        return any(option.allows(value) for option in self.options)

    def describe(self) -> str:
        return " or ".join(option.describe() for option in self.options)


@dataclass(frozen=True)
class Matches:
    """Text matching the regular expression ``pattern`` as a whole; ``what`` is said instead."""

    pattern: str
    what: str

    def allows(self, value: Any) -> bool:
        return re.fullmatch(self.pattern, value) is not None

    def describe(self) -> str:
        return self.what


@dataclass(frozen=True)
class _NotEmpty:
    def allows(self, value: Any) -> bool:
        return len(value.strip() if isinstance(value, str) else value) > 0

    def describe(self) -> str:
        return "not empty"


@dataclass(frozen=True)
class _Distinct:
    def allows(self, value: Any) -> bool:
        return len(set(value)) == len(value)

    def describe(self) -> str:
        return "without repeats"


NOT_EMPTY = _NotEmpty()
"""Text with something other than spaces, or a list with at least one item."""
DISTINCT = _Distinct()
"""A list without repeated items."""

Constraint = Interval | AnyOf | Matches | _NotEmpty | _Distinct

Seed = Annotated[int, at_least(0)]
"""A random seed (numpy refuses negative ones)."""
Share = Annotated[float, between(0, 1)]
"""A fraction in [0, 1]."""
Count = Annotated[int, at_least(0)]
Positive = Annotated[int, at_least(1)]
Seconds = Annotated[float, at_least(0)]
HttpUrl = Annotated[str, Matches(r"(https?://\S+)?", "empty or an http(s):// URL")]
QdrantUrl = Annotated[
    str, Matches(r"(https?://\S+|:memory:|local:\S+)?", "empty, an http(s):// URL, :memory: or local:PATH")
]

MEMBER_NAME = (
    r"\s*k(?P<k>0*[1-9][0-9]*)-(?P<weighting>uniform|distance)(?:-(?P<metric>cosine|dot|euclid))?\s*"
)
"""A kNN ensemble member's name (see :mod:`iris.pseudolabel.members`)."""
AggregateMethod = Literal["majority-vote", "wawa", "dawid-skene", "glad"]
"""Names in :data:`iris.aggregate.AGGREGATORS`."""
BackboneName = Literal[
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
]
"""Names in :data:`iris.embed.backbones.BACKBONES` (that registry imports torch, so the names
are repeated here to be checked at load; a test keeps the two equal)."""
ScheduleName = Literal["noam", "cosine", "constant"]
RoundLabeler = Literal["knn", "knn+probe"]
"""The crowd rounds' automatic labels (:mod:`iris.rounds.labeler`)."""
"""Names in :data:`iris.train.schedule.SCHEDULES`."""


# --- sections ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskSettings:
    """What the binary task is and how the manifests name things."""

    source_column: Annotated[str, NOT_EMPTY] = "downloadUrl"
    """Column holding the image URL or path."""
    label_column: Annotated[str, NOT_EMPTY] = "is_conifer"
    """Column holding the ground-truth label; left at this default and absent from the ground
    truth, its only ``is_*`` column is used instead (ingest says so)."""
    positive: Annotated[str, NOT_EMPTY] = "TRUE"
    """Cell value of the positive class (compared case-insensitively, stripped)."""
    negative: Annotated[str, NOT_EMPTY] = "FALSE"
    """Cell value of the negative class."""
    positive_name: Annotated[str, NOT_EMPTY] = "conifer"
    """Human name of the positive class (crowd instructions, reports)."""
    negative_name: Annotated[str, NOT_EMPTY] = "deciduous"
    """Human name of the negative class."""


@dataclass(frozen=True)
class IngestSettings:
    """Downloading, validating and storing images (``iris ingest``)."""

    concurrency: Positive = 16
    """Simultaneous HTTP downloads."""
    timeout_s: Annotated[float, above(0)] = 10.0
    """Timeout of one HTTP request (connect, read, write, pool), in seconds."""
    retries: Count = 3
    """Retries after a timeout, connection error, 429 or 5xx (never after another 4xx)."""
    backoff_s: Seconds = 0.5
    """Wait before the first retry; doubled before each next one."""
    max_pixels: Positive = 50_000_000
    """Images with more pixels are rejected as decompression bombs."""
    min_side: Positive = 8
    """Images with a shorter side are rejected as too small."""
    max_side: Positive = 10_000
    """Images with a longer side are rejected as too large."""
    max_bytes: Positive = 100_000_000
    """Downloads larger than this are abandoned; local files larger than this are rejected unread."""
    workers: Count = 0
    """Decoding and validation: 0 = threads, one per CPU core; N > 0 = N worker processes."""
    min_per_class: Annotated[int, at_least(1)] = 5
    """Fewest ground-truth images of each class; fewer (a one-class ground truth) stops ingest."""


@dataclass(frozen=True)
class EmbedSettings:
    """Fine-tuning the backbone on the ground truth and embedding every image (``iris embed``)."""

    backbone: BackboneName = "efficientnet_lite0"
    weights: Annotated[str, NOT_EMPTY] = "imagenet"
    """``imagenet``, ``none`` or a path to a state-dict file."""
    image_size: Annotated[int, at_least(16)] = 128
    finetune_epochs: Count = 8
    """Fine-tuning epochs on the ground truth; 0 keeps the frozen ImageNet features."""
    batch_size: Positive = 64
    parity_tolerance: Annotated[float, above(0)] = 1e-3
    """Largest difference allowed between torch and ONNX Runtime outputs."""
    seed: Seed = 0
    device: Annotated[str, Matches(r"auto|cpu|cuda(:[0-9]+)?", "auto, cpu or cuda[:N]")] = "auto"
    """ONNX Runtime device: ``auto`` (CUDA when onnxruntime-gpu offers it), ``cpu``, ``cuda[:N]``."""
    executor: Literal["local", "ray"] = "local"
    """Who runs the encoder: this process, or Ray Data actors (``RAY_ADDRESS`` names a cluster)."""
    ray_actors: Count = 0
    """Ray executor: encoder actors; 0 = one per CPU (per GPU with a ``cuda`` device) Ray offers."""


@dataclass(frozen=True)
class StoreSettings:
    """The vector store: Qdrant Edge in the work directory, or a Qdrant server."""

    kind: Literal["edge", "server"] = "edge"
    url: QdrantUrl = ""
    """Qdrant server URL; setting it selects the server store (``:memory:`` and ``local:PATH``
    select qdrant-client's local mode)."""
    api_key: str = ""
    collection: Annotated[str, Matches(r"[A-Za-z0-9_-]+", "letters, digits, _ or -")] = "iris"
    hnsw_ef: Count = 0
    """HNSW search breadth; 0 lets Qdrant choose. Raise it for higher recall."""
    quantization: Literal["int8", "none"] = "int8"
    """``int8``: a new collection keeps an int8 copy of each vector in RAM (scalar quantization):
    HNSW builds and searches on it and rescores its candidates with the float vectors (about
    twice as fast at the same recall on 100K x 256-d). Exact searches read the float vectors.
    ``none``: floats only. Read when a collection is created."""
    oversampling: Annotated[float, at_least(1)] = 2.0
    """An HNSW search over int8 vectors rescores this many candidates per wanted neighbour."""
    exact_max_points: Count = 50_000
    """The ``exact`` searches of pseudolabel, select, propagate and the rounds run exhaustively only
    while the collection holds at most this many points; past it they use HNSW (an exhaustive
    neighbour search over a million points takes hours). 0: no limit."""
    timeout_s: Annotated[float, above(0)] = 60.0
    """Server requests time out after this many seconds."""
    batch_size: Positive = 512
    """Points per request when upserting or copying to a server."""
    # A distributed Qdrant (docker compose --profile cluster; docs/qdrant.md). Read when a
    # server collection is created; the embedded store is always one shard, one copy.
    shards: Positive = 1
    """Shards of a new server collection; a cluster spreads them over its nodes (e.g. one per node)."""
    replication_factor: Positive = 1
    """Copies of each shard on a cluster; 2 keeps every point readable when one node is down."""
    write_consistency: Positive = 1
    """Copies that must confirm a write before Qdrant answers (at most ``replication_factor``)."""


@dataclass(frozen=True)
class PseudolabelSettings:
    """The kNN ensemble and the seeded KMeans that label the pool automatically."""

    members: Annotated[
        tuple[Annotated[str, Matches(MEMBER_NAME, "k<K>-<uniform|distance>[-<cosine|dot|euclid>]")], ...],
        NOT_EMPTY,
        DISTINCT,
    ] = (
        "k3-uniform",
        "k5-uniform",
        "k7-distance",
        "k9-uniform",
        "k11-distance",
        "k15-distance",
    )
    """kNN ensemble members by name: ``k<K>-<uniform|distance>[-<cosine|dot|euclid>]``."""
    confidence: Annotated[float, between(0, 1, "right")] = 0.7
    """A member is confident when its winning vote share is at least this."""
    quorum: Annotated[float, between(0, 1, "right")] = 0.8
    """Share of members that must agree confidently for an ensemble label."""
    use_kmeans: bool = True
    seed: Seed = 0
    batch_size: Positive = 512
    """Query vectors per batched Qdrant query."""
    exact: bool = True
    """Exact (brute-force) kNN queries: the same store gives the same labels on every run. HNSW
    (false) is faster on large pools, but its index is built by parallel threads, so a re-run
    may find slightly different neighbours."""
    estimate_folds: Annotated[int, AnyOf((Interval(0, 0), at_least(2)))] = 5
    """Folds for the KMeans part of the accuracy estimate (the kNN part is leave-one-out); 0 skips it."""
    kmeans_max_iter: Positive = 100


@dataclass(frozen=True)
class SelectSettings:
    """Which images go to the crowd."""

    neighbours: Positive = 5
    """An image joins the shortlist when a problematic image is among its k nearest."""
    budget: Count = 0
    """Cap on the shortlist size; 0 means no cap."""
    batch_size: Positive = 512
    """Query vectors per batched Qdrant query."""
    exact: bool = True
    """Exact (brute-force) kNN queries: the same store gives the same labels on every run. HNSW
    (false) is faster on large pools, but its index is built by parallel threads, so a re-run
    may find slightly different neighbours."""
    map_points: Count = 2000
    """Points drawn on reports/embedding_map.png (a seeded subsample); 0 skips the map."""


@dataclass(frozen=True)
class CrowdSettings:
    """The labeling campaign (``iris crowd``); cross-field rules are in the campaign spec."""

    backend: Literal["simulated", "toloka", "web"] = "simulated"
    """Who carries out the campaign: ``simulated`` (virtual people), ``toloka`` or ``web``."""
    training: Count = 30
    """Ground-truth images used as training tasks (each shown with a hint)."""
    exam: Positive = 20
    """Ground-truth images in the exam that grants the skill; the rest become honeypots."""
    exam_pass: Annotated[float, between(0, 1, "right")] = 0.8
    """Share of exam answers that must be right to get the skill (and the main pool)."""
    skill_name: Annotated[str, NOT_EMPTY] = "iris-binary"
    overlap: Positive = 5
    """Answers bought per task. 5, not the customary 3: the rounds buy the images iris is
    least sure of, which are hard for people too, and there 2:1 splits are often wrong
    (``benchmarks/bench_labeling.py``: +1.0 to +1.5 points of final-label accuracy at the
    same 24% of the pool; 4, even, gains nothing over 3)."""
    page_size: Annotated[int, at_least(2)] = 50
    """Tasks per page (assignment), honeypots included."""
    honeypots_per_page: Count = 1
    """Control tasks per page; fewer than ``page_size``."""
    price_per_page: Annotated[float, at_least(0)] = 0.05
    """Reward per accepted page, in the backend's currency (USD on Toloka)."""
    exam_price: Annotated[float, at_least(0)] = 0.05
    """Reward per exam page; Toloka's exam guide asks for the page price (workers who passed
    cannot start the main tasks at once otherwise), and its minimum is 0.005."""
    min_seconds_per_page: Seconds = 5.0
    """Quality control: a page submitted faster than this bans its worker for ``fast_ban_days``.
    Toloka applies it to a short last page as to a full one, and at 20 s it banned honest
    people on the campaign's short last pages (their tasks re-issued, more short pages:
    ``benchmarks/bench_quality.py``); the skill rule catches the fast clickers it lets by."""
    fast_ban_days: Count = 1
    min_honeypot_accuracy: Share = 0.5
    """Quality control: accuracy on the last ``honeypot_window`` honeypots below this bans (at
    0.6 of 5 it banned one honest person in nine; honeypots also count in the skill rule)."""
    honeypot_window: Positive = 10
    min_skill: Share = 0.4
    """Quality control: ban a worker whose Dawid-Skene skill (sensitivity + specificity − 1 of
    their confusion matrix: 0 for random or one-sided answers, 1 for always right) is surely
    below this; 0 turns the rule off. Calibrated on the simulated crowd
    (``benchmarks/bench_quality.py``, 10 seeds, overlap 5): 0.4 bans 99% of spammers, every
    fast clicker and 2.7% of the honest; 0.3 let 5% of spammers go (those who came late and
    did 1–3 pages before the work ran out)."""
    skill_min_answers: Positive = 49
    """Quality control: answers (to tasks others answered too, and honeypots) a worker needs
    before the skill rule judges them."""
    skill_confidence: Annotated[float, at_least(0)] = 2.0
    """Quality control: standard errors the skill must be below ``min_skill`` by to ban."""
    min_majority_agreement: Share = 0.0
    """Quality control: agreement with the others' majority on the last ``majority_window``
    tasks below this bans; 0 (the default) turns the rule off: on a shortlist of ambiguous
    images it bans honest people, which the skill rule does not."""
    majority_window: Positive = 20
    ban_days: Count = 7
    """Ban length for the honeypot, skill and majority rules."""
    reject_banned: bool = False
    """Reject (do not pay for, do not keep) the answers of banned workers."""
    reissue_banned: bool = True
    """Re-issue the tasks a banned worker answered, so that other workers refill the overlap."""
    instructions: str = ""
    """Path to an HTML template; empty means the built-in one."""
    toloka_token: str = ""
    toloka_url: HttpUrl = ""
    """Toloka API base URL; empty means production (https://toloka.dev)."""
    # simulated crowd
    answer_key: str = ""
    """Simulated crowd only: CSV with the true labels (source,label) its virtual people see."""
    workers: Positive = 60
    """Simulated crowd: people who take the training and the exam."""
    spammers: Share = 0.2
    """Simulated crowd: share of people who pass the exam, then answer at random."""
    fast_clickers: Share = 0.1
    """Simulated crowd: share who pass the exam, then click through pages too fast, mostly one answer."""
    pages_per_worker: Positive = 12
    """Pages a person is planned to do: the simulated crowd's mean before leaving, and what
    ``iris crowd plan`` checks the honeypots against (a worker never sees one twice)."""
    pace_s: Seconds = 0.0
    """Simulated crowd: wall-clock seconds to wait after each page bought (0 = at once), to
    watch a campaign progress or to interrupt one in a test."""
    # web labeler (`iris crowd serve`); not part of the campaign fingerprint
    web_lease_minutes: Annotated[float, above(0)] = 30.0
    """Web labeler: a page not submitted within this many minutes expires; its tasks go back."""
    web_open_signup: bool = False
    """Web labeler: anyone who opens the address may join; off = only invitation links."""
    web_exam_questions: Count = 0
    """Web labeler: exam questions drawn per worker from the exam pool (0 = all), in their own order."""
    web_url: Annotated[str, Matches(r"https?://\S+", "an http(s):// URL")] = "http://127.0.0.1:8080"
    """Web labeler: the address people reach it at (invitation links start with it)."""
    web_max_body_kb: Positive = 256
    """Web labeler: larger request bodies are refused with 413 before they are read."""
    web_timeout_s: Annotated[float, above(0)] = 30.0
    """Web labeler: a client that takes longer to send its request headers, or its body, is cut off."""
    seed: Seed = 0


@dataclass(frozen=True)
class AggregateSettings:
    """Turning the crowd's answers into one label per image."""

    method: AggregateMethod = "dawid-skene"
    """``majority-vote``, ``wawa``, ``dawid-skene`` (honeypots as gold) or ``glad``."""
    n_iter: Positive = 100
    """EM iterations for Dawid-Skene and GLAD."""
    use_honeypots: bool = True
    """Feed honeypot answers (with their known labels) to the aggregator."""


@dataclass(frozen=True)
class PropagateSettings:
    """Labeling the rest of the pool by kNN over everything labeled so far."""

    ks: Annotated[tuple[Positive, ...], NOT_EMPTY] = (3, 5, 7, 11, 15)
    """Candidate numbers of neighbours for the cross-validated search."""
    weightings: Annotated[tuple[Weighting, ...], NOT_EMPTY] = ("uniform", "distance")
    """Candidate vote weightings: ``uniform`` or ``distance`` (1 / distance)."""
    metrics: Annotated[tuple[Metric, ...], NOT_EMPTY] = ("cosine", "euclid")
    """Candidate distances; ``euclid`` is derived from the cosine score on normalised vectors."""
    folds: Annotated[int, at_least(2)] = 5
    batch_size: Positive = 512
    """Query vectors per Qdrant batch request."""
    exact: bool = True
    """Exact (brute-force) kNN queries: the same store gives the same labels on every run. HNSW
    (false) is faster on large pools, but its index is built by parallel threads, so a re-run
    may find slightly different neighbours."""
    seed: Seed = 0


@dataclass(frozen=True)
class TrainSettings:
    """The final classifier (``iris train``)."""

    backbone: BackboneName = "resnet18"
    weights: Annotated[str, NOT_EMPTY] = "imagenet"
    head: Literal["linear", "mlp"] = "linear"
    image_size: Annotated[int, at_least(16)] = 128
    epochs: Positive = 10
    batch_size: Positive = 64
    schedule: ScheduleName = "noam"
    model_size: Positive = 256
    warmup_steps: Positive = 200
    lr_factor: Annotated[float, above(0)] = 1.0
    backbone_lr_scale: Annotated[float, at_least(0)] = 0.1
    """The backbone learns at this fraction of the head's rate (pretrained weights move gently)."""
    val_fraction: Annotated[float, between(0, 1, "left")] = 0.1
    patience: Positive = 3
    confidence_weighting: bool = False
    """Weight each image's loss by its label confidence (final_labels.confidence)."""
    freeze_backbone: bool = False
    """Train only the head on features computed once by the frozen backbone (fast on CPU)."""
    augment: bool = True
    """Random crops/flips/colour jitter sized to the image size (fine-tuning only)."""
    device: Annotated[str, Matches(r"auto|cpu|mps|cuda(:[0-9]+)?", "auto, cpu, mps or cuda[:N]")] = "auto"
    """``auto`` (CUDA when present), ``cpu`` or ``cuda[:N]``; mixed precision on CUDA."""
    workers: Count = 0
    """DataLoader worker processes for image decoding (0 = in the training process)."""
    seed: Seed = 0


@dataclass(frozen=True)
class RoundsSettings:
    """Crowd rounds (:mod:`iris.rounds.loop`): buy a round, re-label with what it bought, again.

    Shares are of the pool. Defaults chosen by ``benchmarks/bench_labeling.py`` (issue 10).
    ``strategy = "seed"`` is the seed's method: one campaign on the select stage's shortlist
    (problematic images and their neighbours), no loop, no audit.
    """

    strategy: Literal["iris", "seed", "random", "least-certain", "whole-pool", "none"] = "iris"
    """What a round buys (:data:`iris.rounds.strategies.STRATEGIES`); ``seed``: no rounds."""
    labeler: RoundLabeler = "knn+probe"
    """The automatic labels rounds pick by and the unbought images keep
    (:mod:`iris.rounds.labeler`): the kNN ensemble over every label known so far, alone or
    averaged with a logistic regression on the embeddings."""
    round_size: Annotated[float, between(0, 1, "right")] = 0.03
    """Images one round buys by its strategy, as a share of the pool (audit not included)."""
    audit_share: Share = 0.01
    """Images each round also buys uniformly among those that stay automatic (the audit)."""
    budget: Annotated[float, between(0, 1, "right")] = 0.25
    """Images all rounds may buy together, audits included, as a share of the pool."""
    target: Annotated[float, between(0, 1, "right")] = 0.95
    """Stop once the expected share of right final labels (automatic ones at the audit's
    lower bound) reaches this."""
    max_rounds: Positive = 6
    """Rounds at most."""
    seed: Seed = 0

    @property
    def loop(self) -> bool:
        """True when the crowd stage buys in rounds (every strategy but the seed's)."""
        return self.strategy != "seed"


@dataclass(frozen=True)
class Settings:
    task: TaskSettings = field(default_factory=TaskSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    embed: EmbedSettings = field(default_factory=EmbedSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    pseudolabel: PseudolabelSettings = field(default_factory=PseudolabelSettings)
    select: SelectSettings = field(default_factory=SelectSettings)
    crowd: CrowdSettings = field(default_factory=CrowdSettings)
    rounds: RoundsSettings = field(default_factory=RoundsSettings)
    aggregate: AggregateSettings = field(default_factory=AggregateSettings)
    propagate: PropagateSettings = field(default_factory=PropagateSettings)
    train: TrainSettings = field(default_factory=TrainSettings)


SECTIONS: tuple[str, ...] = tuple(f.name for f in fields(Settings))
ENV_ALIASES = {
    "IRIS_QDRANT_URL": ("store", "url"),
    "IRIS_QDRANT_API_KEY": ("store", "api_key"),
}
PROGRESS_EVERY = "IRIS_PROGRESS_EVERY"
OTHER_ENV: frozenset[str] = frozenset({"IRIS_WORKDIR", "IRIS_PROGRESS", PROGRESS_EVERY})
"""``IRIS_*`` variables that are read elsewhere and are not settings (no warning for them)."""


def progress_every(environ: Mapping[str, str] | None = None, *, default: float = 5.0) -> float:
    """Seconds between two progress lines in a log (``IRIS_PROGRESS_EVERY``; see :mod:`iris.progress`).

    Checked by :func:`load_settings` too, so a bad value stops a command before any stage.

    Raises:
        ConfigError: not a number of seconds >= 0.
    """
    text = (os.environ if environ is None else environ).get(PROGRESS_EVERY, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise ConfigError(f"{PROGRESS_EVERY} = {text!r}: expected a number of seconds >= 0")
    return value


@dataclass(frozen=True)
class Rule:
    """A rule across fields of one section, checked after each field's own declaration."""

    keys: tuple[str, ...]
    """The ``section.key`` names it ties together (shown with their values and sources)."""
    holds: Callable[[Settings], bool]
    says: str
    """What it asks, in words."""


RULES: tuple[Rule, ...] = (
    Rule(
        ("ingest.min_side", "ingest.max_side"),
        lambda s: s.ingest.min_side <= s.ingest.max_side,
        "ingest.min_side <= ingest.max_side (otherwise every image is rejected)",
    ),
    Rule(
        ("task.positive", "task.negative"),
        lambda s: s.task.positive.strip().casefold() != s.task.negative.strip().casefold(),
        "two different label cell values (compared case-insensitively)",
    ),
    Rule(
        ("store.write_consistency", "store.replication_factor"),
        lambda s: s.store.write_consistency <= s.store.replication_factor,
        "store.write_consistency <= store.replication_factor (no more confirmations than copies)",
    ),
)
"""Rules across fields that no single declaration can say. The crowd's (honeypots per page
below the page size, two class names) are in :class:`iris.crowd.spec.CampaignSpec`."""


class ConfigWarning(UserWarning):
    """A setting source holds something iris ignores (an unknown ``IRIS_*`` variable)."""


# --- declarations read back --------------------------------------------------------------


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _split(annotation: Any) -> tuple[Any, tuple[Constraint, ...]]:
    """``Annotated[T, c1, c2]`` → ``(T, (c1, c2))``; a plain type has no constraints."""
    if typing.get_origin(annotation) is Annotated:
        base, *extras = typing.get_args(annotation)
        return base, tuple(extras)
    return annotation, ()


def expected(annotation: Any) -> str:
    """What a declared type allows, in words: ``an integer >= 1``, ``one of edge, server``."""
    base, constraints = _split(annotation)
    origin = typing.get_origin(base)
    said = ", ".join(c.describe() for c in constraints)
    if origin is tuple:
        return "a list" + (f" ({said})" if said else "") + ", each " + expected(typing.get_args(base)[0])
    if origin is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(base)))
    if base is str:
        patterns = [c for c in constraints if isinstance(c, Matches)]
        return patterns[0].describe() if patterns else ("non-empty text" if constraints else "text")
    words = {int: "an integer", float: "a number", bool: "true or false"}[base]
    return f"{words} {said}" if said else words


@functools.cache
def _hints(section: str) -> dict[str, Any]:
    return typing.get_type_hints(type(getattr(Settings(), section)), include_extras=True)


def _env_name(section: str, key: str) -> str:
    return f"IRIS_{section}_{key}".upper()


def _show(value: Any) -> str:
    """A value as TOML would write it (strings quoted, lists bracketed)."""
    try:
        return _toml_value(value)
    except TypeError:
        return repr(value)


# --- reading a source --------------------------------------------------------------------


class _Refused(ValueError):
    """A value cannot be read as the declared type; ``item`` says which item of a list."""

    def __init__(self, value: Any, item: tuple[Any, Any] | None = None) -> None:
        super().__init__(value)
        self.item = item
        """``(item, its declared type)`` when one item of a list is the problem."""


def _coerce(value: Any, annotation: Any) -> Any:
    """Turn a TOML or environment value into the declared type (constraints are checked later).

    Raises:
        _Refused: the value is not of that type (2.9 for an integer, "maybe" for a bool).
    """
    base, _constraints = _split(annotation)
    origin = typing.get_origin(base)
    if origin is Literal:
        if value not in typing.get_args(base):
            raise _Refused(value)
        return value
    if origin is tuple:
        (item_type, _ellipsis) = typing.get_args(base)
        if isinstance(value, str):
            items: Any = [v.strip() for v in value.split(",")] if value.strip() else []
        else:
            items = value
        if not isinstance(items, list | tuple):
            raise _Refused(value)
        coerced = []
        for item in items:
            try:
                coerced.append(_coerce(item, item_type))
            except _Refused:
                raise _Refused(value, item=(item, item_type)) from None
        return tuple(coerced)
    if base is bool:
        if isinstance(value, bool):
            return value
        text = value.strip().lower() if isinstance(value, str) else None
        if text in {"1", "true", "yes", "on"}:
            return True
        if text in {"0", "false", "no", "off"}:
            return False
        raise _Refused(value)
    if base is int:
        number = _number_from(value)
        if not float(number).is_integer():
            raise _Refused(value)  # 2.9 is refused, never truncated to 2
        return int(number)
    if base is float:
        return float(_number_from(value))
    if base is str:
        if not isinstance(value, str | int | float):
            raise _Refused(value)
        return str(value)
    raise TypeError(f"no reader for the declared type {base!r}")


def _number_from(value: Any) -> int | float:
    if isinstance(value, bool):
        raise _Refused(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            value = float(text)
        except ValueError:
            raise _Refused(value) from None
    if not isinstance(value, float) or not math.isfinite(value):
        raise _Refused(value)
    return value


def _nearest(word: str, candidates: list[str], *, cutoff: float = 0.6) -> str | None:
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=cutoff)
    return close[0] if close else None


def _all_keys() -> list[str]:
    return [f"{s}.{f.name}" for s in SECTIONS for f in fields(getattr(Settings(), s))]


def _unknown_section(section: str, value: Any, where: str) -> str:
    """The message for ``[section]`` (or a top-level ``key = value``) that is not a section."""
    near = _nearest(section, list(SECTIONS))
    if near:
        return f"unknown section [{section}] (from {where}); did you mean [{near}]?"
    keys = {k.split(".")[1]: k for k in reversed(_all_keys())}
    near_key = _nearest(section, list(keys))
    if near_key and not isinstance(value, Mapping):
        full = keys[near_key]
        return (
            f"{section} = {_show(value)} (from {where}) is outside any section; "
            f"did you mean {full}, i.e. {near_key} = ... under [{full.split('.')[0]}]?"
        )
    return f"unknown section [{section}] (from {where}); expected one of {', '.join(SECTIONS)}"


def _apply(
    settings: Settings,
    updates: Mapping[str, Any],
    origin: Callable[[str, str], str],
    origins: dict[str, str],
) -> Settings:
    """Set ``{section: {key: value}}`` from one source; ``origin(section, key)`` names the source.

    Raises:
        ConfigError: an unknown section or key, a section that is not a table, or a value
            that is not of the declared type.
    """
    changed: dict[str, Any] = {}
    for section, values in updates.items():
        if section not in SECTIONS:
            raise ConfigError(_unknown_section(section, values, origin(section, "")))
        if not isinstance(values, Mapping):
            raise ConfigError(
                f"{section} = {_show(values)} (from {origin(section, '')}): expected a [{section}] table "
                f"of settings, e.g. [{section}] followed by key = value lines"
            )
        current = changed.get(section, getattr(settings, section))
        hints = _hints(section)
        kwargs = {}
        for key, value in values.items():
            if key not in hints:
                near = _nearest(key, list(hints))
                hint = f"did you mean {section}.{near}?" if near else f"expected one of {', '.join(hints)}"
                raise ConfigError(f"unknown key {section}.{key} (from {origin(section, key)}); {hint}")
            try:
                kwargs[key] = _coerce(value, hints[key])
            except _Refused as refused:
                where = origin(section, key)
                if refused.item is None:
                    why = f"expected {expected(hints[key])}"
                else:
                    why = f"item {_show(refused.item[0])}: expected {expected(refused.item[1])}"
                raise ConfigError(f"{section}.{key} = {_show(value)} (from {where}): {why}") from None
            origins[f"{section}.{key}"] = origin(section, key)
        changed[section] = replace(current, **kwargs)
    return replace(settings, **changed)


def _from_env(
    environ: Mapping[str, str], warn: Callable[[str], None]
) -> tuple[dict[str, dict[str, str]], dict[tuple[str, str], str]]:
    """Settings in the environment, and the variable each came from; warns about unknown ``IRIS_*``."""
    updates: dict[str, dict[str, str]] = {}
    names: dict[tuple[str, str], str] = {}
    for name, (section, key) in ENV_ALIASES.items():
        if environ.get(name):
            updates.setdefault(section, {})[key] = environ[name]
            names[(section, key)] = name
    known = {_env_name(*k.split(".")): k for k in _all_keys()}
    for name, value in sorted(environ.items()):
        if not name.startswith("IRIS_") or name in ENV_ALIASES or name in OTHER_ENV:
            continue
        if name in known:
            section, key = known[name].split(".")
            updates.setdefault(section, {})[key] = value
            names[(section, key)] = name
            continue
        candidates = [*known, *ENV_ALIASES, *OTHER_ENV]
        near = _nearest(name, candidates, cutoff=0.0)
        what = f" ({known[near]})" if near in known else ""
        warn(f"{name} is not an iris setting and is ignored; the nearest is {near}{what}")
    return updates, names


def _flag(key: str, flags: Mapping[str, str] | None) -> str:
    """The flag that set ``key``: the command's option named like it (``estimate_folds`` is set
    by ``folds`` → ``--folds``), else ``--key-with-dashes``."""
    if flags:
        if key in flags:
            return flags[key]
        for name, flag in flags.items():
            if key.endswith("_" + name) or name.endswith("_" + key):
                return flag
        return "a command-line flag"
    return "--" + key.replace("_", "-")


# --- checking the merged settings --------------------------------------------------------


def _problem(value: Any, annotation: Any) -> str | None:
    """What ``value`` should have been (``expected ...``), or ``None`` when it is allowed."""
    base, constraints = _split(annotation)
    if typing.get_origin(base) is Literal and value not in typing.get_args(base):
        return f"expected {expected(annotation)}"
    if typing.get_origin(base) is tuple:
        item_type = typing.get_args(base)[0]
        for item in value:
            if _problem(item, item_type) is not None:
                return f"item {_show(item)}: expected {expected(item_type)}"
    if not all(constraint.allows(value) for constraint in constraints):
        return f"expected {expected(annotation)}"
    return None


def check_settings(settings: Settings, origins: Mapping[str, str] | None = None) -> None:
    """Check every value against its declaration.

    Args:
        origins: ``{"section.key": where it was set}`` for the message; "default" otherwise.

    Raises:
        ConfigError: the first bad value (key, value, origin, what is allowed), and the keys
            of any others.
    """
    problems: list[tuple[str, str]] = []
    for section in SECTIONS:
        current = getattr(settings, section)
        for key, annotation in _hints(section).items():
            value = getattr(current, key)
            why = _problem(value, annotation)
            if why is None:
                continue
            name = f"{section}.{key}"
            where = (origins or {}).get(name, "default")
            problems.append((name, f"{name} = {_show(value)} (from {where}): {why}"))
    if not problems:
        for rule in RULES:
            if not rule.holds(settings):
                seen = " and ".join(
                    f"{key} = {_show(_value(settings, key))} (from {(origins or {}).get(key, 'default')})"
                    for key in rule.keys
                )
                problems.append((rule.keys[0], f"{seen}: expected {rule.says}"))
    if problems:
        more = f" (also invalid: {', '.join(n for n, _ in problems[1:])})" if len(problems) > 1 else ""
        raise ConfigError(problems[0][1] + more)


def _value(settings: Settings, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(settings, section), name)


def _warn(message: str) -> None:
    warnings.warn(message, ConfigWarning, stacklevel=3)


def load_settings(
    workdir: Path | None,
    *,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, str] | None = None,
    warn: Callable[[str], None] | None = None,
) -> Settings:
    """Read and check the settings of a work directory.

    Args:
        workdir: folder holding ``iris.toml``; ``None`` uses defaults and environment only.
        overrides: ``{section: {key: value}}`` from flags; ``None`` values are ignored.
        environ: environment mapping (``os.environ`` when omitted).
        flags: the command's options, ``{parameter name: "--flag"}``, to name the flag that
            set a bad value.
        warn: receives each warning line (unknown ``IRIS_*`` variables); a
            :class:`ConfigWarning` when omitted.

    Raises:
        ConfigError: unreadable TOML, an unknown section or key in it, or any value its
            declaration does not allow, naming the key, the value and its source.
    """
    settings = Settings()
    origins: dict[str, str] = {}
    # The environment is read first so that its warnings show even when the file is refused.
    environ = os.environ if environ is None else environ
    env, env_names = _from_env(environ, warn or _warn)
    progress_every(environ)
    if workdir is not None:
        path = workdir / CONFIG_FILE
        if path.exists():
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{path}: invalid TOML: {exc}") from None
            settings = _apply(settings, data, lambda _s, _k: str(path), origins)
    settings = _apply(settings, env, lambda s, k: env_names.get((s, k), "environment"), origins)
    if overrides:
        cleaned = {s: {k: v for k, v in kv.items() if v is not None} for s, kv in overrides.items()}
        settings = _apply(
            settings, {s: kv for s, kv in cleaned.items() if kv}, lambda _s, k: _flag(k, flags), origins
        )
    if settings.store.url and settings.store.kind == "edge":
        settings = replace(settings, store=replace(settings.store, kind="server"))
    check_settings(settings, origins)
    return settings


# --- writing -----------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, int | float):
        return repr(value)
    raise TypeError(f"cannot write {value!r} as TOML")


def render_toml(settings: Settings) -> str:
    """Write every setting out as TOML, each with what it allows as a comment where that says
    more than its type (the field docstrings are omitted)."""
    lines = ["# iris settings; environment variables IRIS_<SECTION>_<KEY> and flags override these."]
    for section in SECTIONS:
        lines.append(f"\n[{section}]")
        hints = _hints(section)
        for key, value in dataclasses.asdict(getattr(settings, section)).items():
            allowed = expected(hints[key])
            plain = allowed in {"text", "non-empty text", "true or false"}
            lines.append(f"{key} = {_toml_value(value)}" + ("" if plain else f"  # {allowed}"))
    return "\n".join(lines) + "\n"
