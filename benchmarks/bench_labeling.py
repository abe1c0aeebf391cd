"""Label efficiency: what each way of spending crowd money buys, at the same spend (issue 10).

On Fashion-MNIST pairs (200 ground-truth labels, 100 a class; the rest of the 12,000 train
images is the pool; the 2,000 test images score a linear probe), every strategy buys from
the **same simulated crowd**: iris's own engine (:func:`iris.crowd.backends.simulated.simulate`,
Toloka's rules, default ``[crowd]`` population: 60 people a cohort, 20% spammers, 10% fast
clickers, overlap 5 (the whole pool also at 3), pages of 49 + 1 honeypot; a fresh cohort
seed per campaign), with the per-image difficulty of :mod:`iris.crowd.difficulty` (a
cross-fitted logistic regression on raw pixels against the answer key: nothing iris sees),
aggregated by Dawid-Skene with the honeypots as gold (:func:`iris.crowd.aggregation.aggregate`).

Vectors: PCA (50 components) of the raw pixels, unit rows — cheap, so the benchmark runs in
minutes on 2 cores. ``--workdirs`` runs the same strategies on the fine-tuned vectors of
``iris demo`` work folders instead (one per seed: their store, ground truth, answer key and
the difficulty their crowd had), with the probe on those vectors. Automatic labels:
the repo's kNN ensemble core (:func:`iris.neighbours.vote` for each member of the default
``[pseudolabel]`` ensemble) over every label known so far, averaged (``--labeler knn+probe``,
the default) with a logistic regression on the features fitted on those labels weighted by
their confidence — the classifier as a labeler, as issue 10 suggests; ``--labeler knn`` is the
ensemble alone. The label is ``p > 0.5``, its certainty ``|2·p − 1|``. The seed's strategy
also needs the consensus status (:func:`iris.pseudolabel.knn.ensemble_vote`, seeded KMeans,
:func:`consensus`). Images not bought take their automatic label: that is the final label set.
A bound row runs the same rounds with every bought label replaced by the truth.

Strategies (:mod:`iris.rounds.strategies`): ``iris`` rounds (``[rounds]`` defaults: a round
buys ``round_size`` of the pool by ``iris``'s pick plus an ``audit_share`` uniform audit,
stops by :func:`iris.rounds.audit.decide`), then at the same spend as iris: ``random``,
``least-certain``, ``seed`` (the shortlist cut by its priority); plus ``seed (whole
shortlist)``, ``whole-pool`` and ``none``. Reported: crowd share of the pool (audit
included), cost, final-label accuracy against the answer key, test accuracy of a logistic
regression on the final labels, and the ceiling (the same probe on the answer key).

    python benchmarks/bench_labeling.py                      # 2 pairs × 3 seeds, table + PNG
    python benchmarks/bench_labeling.py --pairs tshirt-shirt --seeds 0 --no-sweep   # quick
    python benchmarks/bench_labeling.py --workdirs /tmp/demo0/work /tmp/demo1/work   # fine-tuned
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression

from iris.config import PseudolabelSettings, RoundsSettings, Settings, check_settings
from iris.crowd import aggregation
from iris.crowd.backends.base import CampaignInputs
from iris.crowd.backends.simulated import simulate
from iris.crowd.difficulty import pixel_difficulty
from iris.crowd.spec import CampaignSpec, split_ground_truth
from iris.data.fashion_mnist import DATASET_DIR, read_idx
from iris.neighbours import Neighbours
from iris.pseudolabel.consensus import consensus
from iris.pseudolabel.kmeans import SeededKMeans
from iris.pseudolabel.knn import ensemble_vote
from iris.pseudolabel.members import parse_members
from iris.report.label_efficiency import draw_label_efficiency
from iris.rounds import Candidates, audit_estimate, audit_sample, decide, pick
from iris.rounds.labeler import PROBE_C, blend, knn_share, probe_share

PAIRS = {"tshirt-shirt": (6, 0), "pullover-coat": (4, 2)}
"""Task name → (positive class, negative class) of Fashion-MNIST."""
N_GT = 200
PCA_DIMS = 50
SWEEP = (0.10, 0.40)
"""Shares at which random, least-certain and seed are also run for the curve."""
PERFECT = "bound: iris rounds, every bought label right"
SEED_OVERLAP = 3
"""The whole pool is also bought at the seed's overlap, the customary campaign (``[crowd] overlap``
is 5 now; both rows are printed)."""
LABELER = "knn+probe"
"""``knn``: the kNN ensemble alone; ``knn+probe``: averaged with a logistic regression (``--labeler``)."""


# --- the task ------------------------------------------------------------------------------


@dataclass
class Task:
    name: str
    vectors: npt.NDArray[np.float32]
    """(n, 50) unit PCA vectors of every train image (gt first, then pool)."""
    truth: npt.NDArray[np.int64]
    """(n,) the answer key."""
    is_gt: npt.NDArray[np.bool_]
    difficulty: npt.NDArray[np.float64]
    probe_train: npt.NDArray[np.float32]
    test_x: npt.NDArray[np.float32]
    test_y: npt.NDArray[np.int64]
    ids: npt.NDArray[np.int64] = field(init=False)

    def __post_init__(self) -> None:
        self.ids = np.arange(len(self.truth), dtype=np.int64)

    @property
    def pool(self) -> int:
        return int((~self.is_gt).sum())


def load_task(name: str, seed: int) -> Task:
    positive, negative = PAIRS[name]
    x = read_idx(DATASET_DIR / "train-images-idx3-ubyte.gz")
    y = read_idx(DATASET_DIR / "train-labels-idx1-ubyte.gz")
    tx = read_idx(DATASET_DIR / "t10k-images-idx3-ubyte.gz")
    ty = read_idx(DATASET_DIR / "t10k-labels-idx1-ubyte.gz")
    keep = np.flatnonzero(np.isin(y, (positive, negative)))
    pixels = x[keep].reshape(len(keep), -1).astype(np.float32) / 255.0
    truth = (y[keep] == positive).astype(np.int64)
    rng = np.random.default_rng(seed)
    gt = np.concatenate([rng.choice(np.flatnonzero(truth == c), N_GT // 2, replace=False) for c in (1, 0)])
    is_gt = np.zeros(len(keep), dtype=bool)
    is_gt[gt] = True
    tkeep = np.flatnonzero(np.isin(ty, (positive, negative)))
    tpixels = tx[tkeep].reshape(len(tkeep), -1).astype(np.float32) / 255.0
    pca = PCA(PCA_DIMS, random_state=seed).fit(pixels)
    z, tz = pca.transform(pixels), pca.transform(tpixels)
    unit = (z / np.linalg.norm(z, axis=1, keepdims=True)).astype(np.float32)
    scale = z.std(axis=0)
    return Task(
        name=name,
        vectors=unit,
        truth=truth,
        is_gt=is_gt,
        difficulty=pixel_difficulty(pixels, truth, seed=seed),
        probe_train=(z / scale).astype(np.float32),
        test_x=(tz / scale).astype(np.float32),
        test_y=(ty[tkeep] == positive).astype(np.int64),
    )


def load_workdir_task(root: Path) -> Task:
    """The task of one ``iris demo`` (or ``iris run`` on the simulated crowd) work folder: its
    fine-tuned vectors from the store, its ground truth, the answer key its virtual people
    knew, and the difficulty they were given (``crowd/simulated/difficulty.parquet``). The
    probe and its test score run on the same unit vectors.

    Raises:
        InputError: the folder has no store, answer key or difficulty table.
    """
    from iris import tables
    from iris.config import load_settings
    from iris.crowd.backends.simulated.truth import read_answer_key
    from iris.errors import InputError
    from iris.store import open_store
    from iris.workdir import Workdir

    settings = load_settings(root, environ={})
    difficulty_path = root / "crowd" / "simulated" / "difficulty.parquet"
    if not settings.crowd.answer_key or not difficulty_path.is_file():
        raise InputError(f"--workdirs: {root} has no simulated crowd (answer key and {difficulty_path})")
    with open_store(Workdir(root), settings) as store:
        exported = store.export()
    images = tables.read(Workdir(root).table("images"), tables.IMAGES)
    images = images.select("id", "source", "split", "label")
    key = read_answer_key(Path(settings.crowd.answer_key), task=settings.task)
    frame = (
        pl.DataFrame({"id": exported.ids})
        .with_row_index("row")
        .join(images, on="id")
        .join(key.select("source", truth="label"), on="source", how="left")
        .with_columns(truth=pl.coalesce("truth", "label").cast(pl.Int64))
        .join(pl.read_parquet(difficulty_path), on="id", how="left")
    )
    if frame["truth"].null_count():
        missing = frame["truth"].null_count()
        raise InputError(f"--workdirs: {missing} images of {root} are not in the answer key")
    unit = exported.vectors / np.linalg.norm(exported.vectors, axis=1, keepdims=True)
    train = frame.filter(pl.col("split") != "test").sort(pl.col("split") != "gt", "id")  # gt first
    test = frame.filter(pl.col("split") == "test")
    x = unit[train["row"].to_numpy()].astype(np.float32)
    return Task(
        name=f"{root.name} (fine-tuned)",
        vectors=x,
        truth=train["truth"].to_numpy(),
        is_gt=(train["split"] == "gt").to_numpy(),
        difficulty=train["difficulty"].fill_null(0.3).to_numpy(),
        probe_train=x,
        test_x=unit[test["row"].to_numpy()].astype(np.float32),
        test_y=test["truth"].to_numpy(),
    )


# --- automatic labels: the repo's kNN ensemble core ---------------------------------------


@dataclass
class Auto:
    label: npt.NDArray[np.int64]
    certainty: npt.NDArray[np.float64]
    knn_share: npt.NDArray[np.float64]
    knn_label: npt.NDArray[np.int64]


def auto_labels(
    task: Task,
    labeled: npt.NDArray[np.bool_],
    labels: npt.NDArray[np.int64],
    confidence: npt.NDArray[np.float64] | None = None,
) -> Auto:
    """Every image's kNN ensemble label from the labeled images (a labeled image: itself left out)."""
    members = parse_members(PseudolabelSettings().members)
    k = max(m.k for m in members) + 1
    lab_rows = np.flatnonzero(labeled)
    confidence = np.ones(len(labels)) if confidence is None else confidence
    base = task.vectors[lab_rows]
    n = len(task.ids)
    nb_ids = np.empty((n, k - 1), dtype=np.int64)
    nb_sim = np.empty((n, k - 1), dtype=np.float64)
    for start in range(0, n, 4096):
        sims = task.vectors[start : start + 4096] @ base.T
        own = np.flatnonzero(labeled[start : start + 4096])
        # a labeled image is not its own neighbour
        sims[own, np.searchsorted(lab_rows, start + own)] = -np.inf
        top = np.argpartition(-sims, k - 1, axis=1)[:, : k - 1]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        nb_ids[start : start + 4096] = lab_rows[top]
        nb_sim[start : start + 4096] = np.take_along_axis(sims, top, axis=1)
    neighbours = Neighbours(ids=nb_ids, labels=labels[nb_ids], similarity=nb_sim)
    # The rounds labeler of `iris run` (iris.rounds.labeler): the ensemble's share, averaged
    # with the probe on every label known so far, each weighted by its confidence (labeled
    # images keep their own labels, so being scored in-sample changes no final label).
    probe_p1 = (
        probe_share(task.probe_train, lab_rows, labels[lab_rows], confidence[lab_rows])
        if LABELER == "knn+probe"
        else None
    )
    blended = blend(knn_share(neighbours, members), probe_p1)
    s = PseudolabelSettings()
    ens = ensemble_vote(neighbours, members, confidence=s.confidence, quorum=s.quorum)
    return Auto(
        label=blended.label,
        certainty=blended.certainty,
        knn_share=ens.knn_share,
        knn_label=ens.knn_label,
    )


def seed_status(
    task: Task, auto: Auto, labeled: npt.NDArray[np.bool_], labels: npt.NDArray[np.int64]
) -> npt.NDArray[np.str_]:
    """auto / problematic as the pseudolabel stage decides (kNN ensemble + seeded KMeans)."""
    rows = np.flatnonzero(labeled)
    km = SeededKMeans(random_state=0).fit(task.vectors, task.vectors[rows], labels[rows])
    _, status = consensus(auto.knn_label, km.cluster_labels_[km.labels_])
    return np.where(labeled, "auto", status)


# --- the crowd --------------------------------------------------------------------------------


@dataclass
class Purchase:
    labels: dict[int, int]
    confidence: dict[int, float]
    cost: float
    bans: int
    workers: int


def buy(
    task: Task, rows: npt.NDArray[np.int64], *, seed: int, root: Path, overlap: int | None = None
) -> Purchase:
    """One simulated campaign on ``rows`` (``overlap`` answers each; default ``[crowd] overlap``),
    aggregated by Dawid-Skene."""
    settings = Settings()
    spec = dataclasses.replace(CampaignSpec.from_settings(settings), seed=seed)
    if overlap is not None:
        spec = dataclasses.replace(spec, overlap=overlap)
    gt_rows = np.flatnonzero(task.is_gt)
    images = pl.DataFrame(
        {
            "id": task.ids[gt_rows],
            "source": [f"img/{i}.png" for i in gt_rows],
            "path": [f"img/{i}.png" for i in gt_rows],
            "split": ["gt"] * len(gt_rows),
            "label": task.truth[gt_rows],
        },
        schema={"id": pl.Int64, "source": pl.String, "path": pl.String, "split": pl.String, "label": pl.Int8},
    )
    tasks = pl.DataFrame(
        {
            "id": task.ids[rows],
            "source": [f"img/{i}.png" for i in rows],
            "path": [f"img/{i}.png" for i in rows],
            "priority": np.arange(len(rows), dtype=np.int32),
        }
    )
    inputs = CampaignInputs(spec=spec, tasks=tasks, ground_truth=split_ground_truth(images, spec), root=root)
    c = settings.crowd
    population: dict[str, float | int] = {
        "workers": c.workers,
        "spammers": c.spammers,
        "fast_clickers": c.fast_clickers,
        "pages_per_worker": c.pages_per_worker,
        "seed": seed,
    }
    truth = {int(i): int(v) for i, v in zip(task.ids, task.truth, strict=True)}
    difficulty = {int(i): float(d) for i, d in zip(task.ids, task.difficulty, strict=True)}
    result = simulate(inputs, truth=truth, difficulty=difficulty, population=population)
    agg = aggregation.aggregate(
        result.answers, method="dawid-skene", gold=inputs.gold, banned=result.bans["worker"].to_list()
    )
    t = agg.tasks
    return Purchase(
        labels=dict(zip(t["task"].to_list(), t["label"].to_list(), strict=True)),
        confidence=dict(zip(t["task"].to_list(), t["confidence"].to_list(), strict=True)),
        cost=result.cost,
        bans=result.bans.height,
        workers=len(result.workers),
    )


# --- one run of one strategy -------------------------------------------------------------------


@dataclass
class State:
    labeled: npt.NDArray[np.bool_]
    labels: npt.NDArray[np.int64]
    confidence: npt.NDArray[np.float64]
    bought: int = 0
    cost: float = 0.0
    campaigns: int = 0

    @classmethod
    def start(cls, task: Task) -> State:
        labels = np.where(task.is_gt, task.truth, -1)
        return cls(labeled=task.is_gt.copy(), labels=labels, confidence=task.is_gt.astype(np.float64))

    def add(self, rows: npt.NDArray[np.int64], got: Purchase) -> None:
        for r in rows.tolist():
            if r in got.labels:  # a task no one finished stays unlabeled
                self.labeled[r] = True
                self.labels[r] = got.labels[r]
                self.confidence[r] = got.confidence[r]
        self.bought += len(rows)
        self.cost += got.cost
        self.campaigns += 1


@dataclass
class Outcome:
    strategy: str
    share: float
    cost: float
    label_accuracy: float
    test_accuracy: float
    rounds: int = 1
    curve: list[tuple[float, float]] = field(default_factory=list)
    audits: list[tuple[float, float, float]] = field(default_factory=list)
    """(low, high, true accuracy) of each round's audit."""
    stop: str = ""
    asked: float | None = None
    """The share a one-shot strategy was asked to buy (the seed's shortlist may be shorter)."""


def finish(task: Task, state: State, name: str, **extra: object) -> Outcome:
    auto = auto_labels(task, state.labeled, state.labels, state.confidence)
    final = np.where(state.labeled, state.labels, auto.label)
    pool = ~task.is_gt
    probe = LogisticRegression(C=PROBE_C, max_iter=500).fit(task.probe_train, final)
    return Outcome(
        strategy=name,
        share=state.bought / task.pool,
        cost=round(state.cost, 2),
        label_accuracy=float((final[pool] == task.truth[pool]).mean()),
        test_accuracy=float((probe.predict(task.test_x) == task.test_y).mean()),
        **extra,  # type: ignore[arg-type]
    )


def one_shot(
    task: Task,
    name: str,
    share: float | None,
    *,
    seed: int,
    root: Path,
    label: str,
    overlap: int | None = None,
) -> Outcome:
    state = State.start(task)
    auto = auto_labels(task, state.labeled, state.labels, state.confidence)
    status = seed_status(task, auto, state.labeled, state.labels) if name == "seed" else None
    cand = Candidates(
        ids=task.ids,
        vectors=task.vectors,
        labeled=state.labeled,
        certainty=auto.certainty,
        status=status,
        knn_share=auto.knn_share,
    )
    n = None if share is None else round(share * task.pool)
    rows = pick(name, cand, n=n, rng=np.random.default_rng([seed, 1]))
    if len(rows):
        state.add(rows, buy(task, rows, seed=seed * 1000, root=root, overlap=overlap))
    return finish(task, state, label, asked=share)


def iris_rounds(
    task: Task, r: RoundsSettings, *, seed: int, root: Path, perfect: bool = False, name: str = "iris rounds"
) -> Outcome:
    """The rounds; ``perfect``: every bought label is replaced by the truth (confidence 1), a
    bound on what any crowd could give these rounds with this labeler."""
    state = State.start(task)
    rng = np.random.default_rng([seed, 2])
    round_n, audit_n = round(r.round_size * task.pool), round(r.audit_share * task.pool)
    budget = round(r.budget * task.pool)
    curve: list[tuple[float, float]] = []
    audits: list[tuple[float, float, float]] = []
    reason = ""
    for index in range(r.max_rounds):
        auto = auto_labels(task, state.labeled, state.labels, state.confidence)
        final = np.where(state.labeled, state.labels, auto.label)
        pool = ~task.is_gt
        curve.append((state.bought / task.pool, float((final[pool] == task.truth[pool]).mean())))
        cand = Candidates(ids=task.ids, vectors=task.vectors, labeled=state.labeled, certainty=auto.certainty)
        picks = pick(r.strategy, cand, n=max(0, min(round_n, budget - state.bought - audit_n)), rng=rng)
        still_auto = np.flatnonzero(~state.labeled & ~np.isin(np.arange(len(task.ids)), picks))
        audit = audit_sample(still_auto, n=audit_n, rng=rng)
        rows = np.concatenate([picks, audit])
        got = buy(task, rows, seed=seed * 1000 + index + 1, root=root)
        if perfect:
            got.labels = {i: int(task.truth[i]) for i in got.labels}
            got.confidence = dict.fromkeys(got.labels, 1.0)
        state.add(rows, got)
        done = np.array([a for a in audit.tolist() if a in got.labels], dtype=np.int64)
        est = audit_estimate(
            auto.label[done],
            np.array([got.labels[a] for a in done.tolist()]),
            np.array([got.confidence[a] for a in done.tolist()]),
        )
        true_auto = float((auto.label[still_auto] == task.truth[still_auto]).mean())
        if est.low is not None and est.high is not None:
            audits.append((est.low, est.high, true_auto))
        crowd = state.labeled & ~task.is_gt
        decision = decide(
            est,
            n_gt=int(task.is_gt.sum()),
            n_crowd=int(crowd.sum()),
            crowd_accuracy=float(state.confidence[crowd].mean()),
            n_auto=int((~state.labeled).sum()),
            target=r.target,
            spent=state.bought,
            next_round=round_n + audit_n,
            budget=budget,
            round_index=index,
            max_rounds=r.max_rounds,
        )
        if decision.stop:
            reason = decision.reason or ""
            break
    out = finish(task, state, name, rounds=state.campaigns, audits=audits, stop=reason)
    out.curve = [*curve, (out.share, out.label_accuracy)]
    return out


def run_task(task: Task, seed: int, r: RoundsSettings, *, sweep: bool) -> list[Outcome]:
    with tempfile.TemporaryDirectory(prefix="bench-labeling-") as tmp:
        root = Path(tmp)
        ours = iris_rounds(task, r, seed=seed, root=root)
        s = ours.share
        outs = [ours]
        outs.append(iris_rounds(task, r, seed=seed, root=root, perfect=True, name=PERFECT))
        for name in ("random", "least-certain", "seed"):
            outs.append(one_shot(task, name, s, seed=seed, root=root, label=f"{name} @ iris spend"))
        outs.append(one_shot(task, "seed", None, seed=seed, root=root, label="seed (whole shortlist)"))
        for overlap in sorted({SEED_OVERLAP, Settings().crowd.overlap}):
            outs.append(
                one_shot(
                    task,
                    "whole-pool",
                    None,
                    seed=seed,
                    root=root,
                    label=f"whole pool, overlap {overlap}",
                    overlap=overlap,
                )
            )
        outs.append(one_shot(task, "none", None, seed=seed, root=root, label="no crowd"))
        if sweep:
            for name in ("random", "least-certain", "seed"):
                for share in SWEEP:
                    outs.append(one_shot(task, name, share, seed=seed, root=root, label=f"{name} sweep"))
    return outs


def ceiling(task: Task) -> float:
    probe = LogisticRegression(C=PROBE_C, max_iter=500).fit(task.probe_train, task.truth)
    return float((probe.predict(task.test_x) == task.test_y).mean())


# --- the table and the picture ---------------------------------------------------------------------


def mean_sd(values: list[float], digits: int = 3) -> str:
    a = np.asarray(values, dtype=float)
    return f"{a.mean():.{digits}f} ± {a.std():.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    global LABELER
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--no-sweep", action="store_true", help="skip the curve's extra budgets")
    parser.add_argument("--png", type=Path, default=Path("benchmarks/label_efficiency.png"))
    parser.add_argument(
        "--workdirs",
        nargs="+",
        type=Path,
        default=None,
        help="instead of --pairs: `iris demo` work folders (one per seed), whose fine-tuned vectors "
        "and ground truth the strategies run on (no sweep)",
    )
    for f in dataclasses.fields(RoundsSettings):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=None)
    args = parser.parse_args(argv)
    r = RoundsSettings()
    r = dataclasses.replace(
        r,
        **{
            f.name: getattr(args, f.name)
            for f in dataclasses.fields(r)
            if getattr(args, f.name, None) is not None
        },
    )
    check_settings(dataclasses.replace(Settings(), rounds=r))  # every [rounds] key, --labeler too
    LABELER = r.labeler
    print(f"rounds: {r}; labeler {LABELER}", flush=True)
    panels: dict[str, dict[str, list[tuple[float, float, float]]]] = {}
    coverage: list[bool] = []
    runs: dict[str, list[tuple[int, Callable[[], Task]]]] = (
        {
            "tshirt-shirt, fine-tuned": [
                (i, partial(load_workdir_task, w)) for i, w in enumerate(args.workdirs)
            ]
        }
        if args.workdirs
        else {pair: [(seed, partial(load_task, pair, seed)) for seed in args.seeds] for pair in args.pairs}
    )
    sweep = not args.no_sweep and not args.workdirs
    for pair, tasks in runs.items():
        rows: dict[str, list[Outcome]] = defaultdict(list)
        ceilings = []
        started = time.perf_counter()
        for seed, load in tasks:
            task = load()
            ceilings.append(ceiling(task))
            for out in run_task(task, seed, r, sweep=sweep):
                rows[out.strategy].append(out)
            print(f"  {pair} seed {seed}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        n_gt = int(task.is_gt.sum())
        print(f"\n### {pair} ({len(tasks)} seeds, {task.pool} pool images, {n_gt} ground truth)\n")
        print("| strategy | crowd share | cost | rounds | final labels correct | test accuracy (probe) |")
        print("|---|---|---|---|---|---|")
        for name, outs in rows.items():
            if name.endswith("sweep"):
                continue
            cells = [
                mean_sd([100 * o.share for o in outs], 1) + "%",
                mean_sd([o.cost for o in outs], 1),
                mean_sd([float(o.rounds) for o in outs], 1),
                mean_sd([o.label_accuracy for o in outs]),
                mean_sd([o.test_accuracy for o in outs]),
            ]
            print(f"| {name} | " + " | ".join(cells) + " |")
        print(f"| ceiling: probe on the answer key | | | | 1 | {mean_sd(ceilings)} |")
        ours = rows["iris rounds"]
        print(f"\niris rounds stopped by: {[o.stop for o in ours]}")
        for o in ours:
            for low, high, true in o.audits:
                coverage.append(low <= true <= high)
            print(
                "  audits (low, high, true): "
                + ", ".join(f"({a:.3f}, {b:.3f}, {t:.3f})" for a, b, t in o.audits)
            )
        curves: dict[str, list[tuple[float, float, float]]] = {}
        for name in ("random", "least-certain", "seed"):
            by_share: dict[float, list[Outcome]] = defaultdict(list)
            for o in rows.get(f"{name} sweep", []) + rows[f"{name} @ iris spend"]:
                by_share[round(o.asked if o.asked is not None else o.share, 2)].append(o)
            curves[name] = [
                (
                    float(np.mean([o.share for o in v])),
                    float(np.mean([o.label_accuracy for o in v])),
                    float(np.std([o.label_accuracy for o in v])),
                )
                for v in by_share.values()
                if len(v) == len(tasks)
            ]
        steps = min(len(o.curve) for o in ours)
        curves["iris rounds"] = [
            (
                float(np.mean([o.curve[i][0] for o in ours])),
                float(np.mean([o.curve[i][1] for o in ours])),
                float(np.std([o.curve[i][1] for o in ours])),
            )
            for i in range(steps)
        ]
        for name in [n for n in rows if n.startswith(("seed (whole", "whole pool", "no crowd"))]:
            v = rows[name]
            curves[name] = [
                (
                    float(np.mean([o.share for o in v])),
                    float(np.mean([o.label_accuracy for o in v])),
                    float(np.std([o.label_accuracy for o in v])),
                )
            ]
        panels[pair] = curves
    if coverage:
        print(
            "\naudit interval contains the true accuracy of the automatic labels: "
            f"{sum(coverage)} of {len(coverage)} audits"
        )
    draw_label_efficiency(
        panels, args.png, title="final-label accuracy against crowd share (mean ± sd over seeds)"
    )
    print(f"curve: {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
