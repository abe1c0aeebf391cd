"""The simulated crowd: seeded virtual people who go through the same campaign as real ones.

Population (``[crowd]`` settings): ``workers`` people per cohort; each has an accuracy
``0.5 + 0.5 · Beta(5, 1)`` (mean ≈ 0.92). A share ``spammers`` answer the main pool at
random and a share ``fast_clickers`` click through pages in a few seconds, mostly giving
one answer; both pass the exam honestly first (it costs them nothing), which is exactly
the case quality control exists for. Everyone takes the training (each mistake shows a
hint, which teaches a little) and the exam; those above ``exam_pass`` get the skill and
work pages of ``page_size`` tasks with ``honeypots_per_page`` honeypots under the
campaign's quality-control rules, evaluated after every page (:mod:`iris.crowd.quality`).
Banned people's tasks are re-issued. New cohorts arrive while tasks remain (at most
:data:`MAX_COHORTS`).

People err more on ambiguous images: the chance of a right answer is
``0.5 + (accuracy − 0.5) · (1 − 0.7 · difficulty)``, with difficulty ``1 − knn_share`` from the
``pseudolabels`` table where present, otherwise a seeded ``Beta(2, 5)`` draw.

The truth the virtual people know comes from ``crowd.answer_key`` (a CSV with a source
column and a label column) and, for honeypots, training and exam, from the ground truth.
No other part of iris reads the answer key.

Resume: every purchase (a page, a paid exam) is appended to ``pages.jsonl`` with fsync
before the next one is made. The simulation is deterministic, so a re-run replays it and
takes already-bought pages from the log instead of buying them again.
"""

from __future__ import annotations

import heapq
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from iris import tables
from iris.config import Settings, TaskSettings
from iris.crowd import quality
from iris.crowd.backends.base import CampaignInputs, CampaignStatus, Collected, Plan, tasks_done
from iris.crowd.pages import assemble_page, pick_honeypots
from iris.data.ids import clean_source
from iris.errors import ColumnError, CrowdError, InputError
from iris.progress import bar
from iris.workdir import Workdir

MAX_COHORTS = 20
AMBIGUITY_TO_DIFFICULTY = 0.6
"""How much of the kNN ensemble's doubt (1 − knn_share) people share. People look at the
image, not at a 1280-d embedding: an image the ensemble splits on is harder for them too,
but far from a coin toss (at 1.0 nearly every honest worker on a shortlist of ambiguous
images fell under the majority-agreement rule)."""
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
"""Virtual time starts here, so that replays are identical."""

Kind = Literal["good", "spammer", "fast"]


@dataclass
class VirtualWorker:
    id: str
    kind: Kind
    accuracy: float
    seconds_per_task: float
    pages: int
    """Pages this person does before leaving."""
    arrival: float
    """Seconds after the campaign start."""
    favourite: int
    """The answer a fast clicker mostly gives."""


def make_population(
    n: int, *, spammers: float, fast_clickers: float, pages_per_worker: int, seed: int, cohort: int = 0
) -> list[VirtualWorker]:
    """Draw one cohort of ``n`` people (deterministic in ``seed`` and ``cohort``)."""
    if not 0 <= spammers + fast_clickers <= 1:
        raise CrowdError(
            f"crowd.spammers ({spammers}) + crowd.fast_clickers ({fast_clickers}) must lie in [0, 1]"
        )
    rng = np.random.default_rng([seed, cohort, 7])
    n_spam = round(n * spammers)
    n_fast = round(n * fast_clickers)
    spam: list[Kind] = ["spammer"]
    fast: list[Kind] = ["fast"]
    good: list[Kind] = ["good"]
    kinds = spam * n_spam + fast * n_fast + good * (n - n_spam - n_fast)
    order = rng.permutation(n)
    workers = []
    for i in range(n):
        kind = kinds[order[i]]
        accuracy = 0.5 + 0.5 * float(rng.beta(5.0, 1.0))
        if kind == "fast":
            seconds = float(rng.uniform(0.1, 0.35))
        elif kind == "spammer":
            seconds = float(rng.lognormal(np.log(1.5), 0.3))
        else:
            seconds = float(rng.lognormal(np.log(2.5), 0.4))
        workers.append(
            VirtualWorker(
                id=f"sim-{cohort:02d}-{i:04d}",
                kind=kind,
                accuracy=accuracy,
                seconds_per_task=seconds,
                pages=1 + int(rng.poisson(max(pages_per_worker - 1, 0))),
                arrival=float(rng.uniform(0, 3600)) + cohort * 6 * 3600,
                favourite=int(rng.integers(0, 2)),
            )
        )
    return workers


# ---------------------------------------------------------------- truth and difficulty


def _truthy(value: str, task: TaskSettings) -> int | None:
    v = value.strip().lower()
    if v in {"1", "true", "yes", task.positive.strip().lower(), task.positive_name.strip().lower()}:
        return 1
    if v in {"0", "false", "no", task.negative.strip().lower(), task.negative_name.strip().lower()}:
        return 0
    return None


def _is_url(s: str) -> bool:
    return "://" in s


def read_answer_key(path: Path, *, task: TaskSettings) -> pl.DataFrame:
    """Read an answer key (CSV, or TSV by extension) into source, label.

    The source column is the first of ``source``, ``task.source_column``, ``downloadUrl``;
    the label column the first of ``label``, ``task.label_column``, else the only column
    left once source/split/path are set aside. A relative path is also registered resolved
    against the key's folder, the way ingest resolves manifest paths.

    Raises:
        InputError / ColumnError: unreadable file, missing columns, or a label cell that is
            neither class (with its line number).
    """
    if not path.is_file():
        raise InputError(f"crowd.answer_key: {path} does not exist; expected a CSV with source and label")
    sep = "\t" if path.suffix.lower() in {".tsv", ".txt"} else ","
    try:
        key = pl.read_csv(path, separator=sep, infer_schema=False)
    except pl.exceptions.PolarsError as exc:
        raise InputError(f"{path}: cannot read as CSV: {exc}") from None
    src_col = next((c for c in ("source", task.source_column, "downloadUrl") if c in key.columns), None)
    if src_col is None:
        raise ColumnError(
            f"{path}: no source column (source, {task.source_column}); found {', '.join(key.columns)}"
        )
    rest = [c for c in key.columns if c not in {src_col, "split", "path", "id"}]
    label_col = next((c for c in ("label", task.label_column) if c in key.columns), None)
    if label_col is None and len(rest) == 1:
        label_col = rest[0]
    if label_col is None:
        raise ColumnError(
            f"{path}: no label column (label, {task.label_column}); found {', '.join(key.columns)}"
        )
    sources: list[str] = []
    labels: list[int] = []
    for line, (src, cell) in enumerate(zip(key[src_col], key[label_col], strict=True), start=2):
        value = _truthy(cell or "", task)
        if value is None:
            raise InputError(
                f"{path}:{line}: label {cell!r} in column {label_col} is neither "
                f"{task.positive}/1/TRUE nor {task.negative}/0/FALSE"
            )
        src = clean_source(src or "")
        sources.append(src)
        labels.append(value)
        if src and not _is_url(src) and not Path(src).is_absolute():
            sources.append(str((path.parent / src).resolve()))
            labels.append(value)
    return pl.DataFrame({"source": sources, "label": labels}, schema={"source": pl.String, "label": pl.Int8})


def match_truth(tasks: pl.DataFrame, key: pl.DataFrame, *, where: str) -> dict[int, int]:
    """Map task id → true label by the task's source (exact, resolved path, then unique file name).

    Raises:
        CrowdError: some tasks have no row in the key (count and first example).
    """
    exact = dict(zip(key["source"].to_list(), key["label"].to_list(), strict=True))
    names: dict[str, int | None] = {}
    for src, label in exact.items():
        name = src.rsplit("/", 1)[-1]
        names[name] = label if names.get(name, label) == label and name not in names else None
    truth: dict[int, int] = {}
    missing: list[str] = []
    for tid, src in zip(tasks["id"].to_list(), tasks["source"].to_list(), strict=True):
        candidates = [src]
        if src.startswith("file://"):
            candidates.append(src[len("file://") :])
        if not _is_url(src):
            candidates.append(str(Path(src).resolve()))
        label = next((exact[c] for c in candidates if c in exact), None)
        if label is None:
            label = names.get(src.rsplit("/", 1)[-1])
        if label is None:
            missing.append(src)
        else:
            truth[int(tid)] = int(label)
    if missing:
        raise CrowdError(
            f"simulated crowd: {len(missing)} of {tasks.height} tasks have no row in {where} "
            f"(matched by images.source); first: {missing[0]}"
        )
    return truth


def load_truth(inputs: CampaignInputs, settings: Settings) -> dict[int, int]:
    """True labels of every task and ground-truth image, as the virtual people know them."""
    truth = {
        int(i): int(label)
        for i, label in zip(inputs.ground_truth["id"], inputs.ground_truth["label"], strict=True)
    }
    if inputs.tasks.height:
        if not settings.crowd.answer_key:
            raise CrowdError(
                "simulated crowd: crowd.answer_key is not set; it needs a CSV of true labels "
                "(e.g. answer_key.csv from `iris data fashion-mnist`) for its virtual people"
            )
        path = Path(settings.crowd.answer_key)
        if not path.is_absolute():
            path = (inputs.root / path) if (inputs.root / path).exists() else path.resolve()
        key = read_answer_key(path, task=settings.task)
        truth |= match_truth(inputs.tasks, key, where=str(path))
    return truth


def load_difficulty(inputs: CampaignInputs, ids: list[int], *, seed: int) -> dict[int, float]:
    """Per-image difficulty in [0, 1]: ``AMBIGUITY_TO_DIFFICULTY · (1 − knn_share)`` where
    pseudo-labels exist, else a draw."""
    rng = np.random.default_rng([seed, 11])
    drawn = rng.beta(2.0, 5.0, size=len(ids))
    difficulty = {i: float(d) for i, d in zip(ids, drawn, strict=True)}
    path = Workdir(inputs.root).table("pseudolabels")
    if path.exists():
        pl_table = tables.read(path, tables.PSEUDOLABELS)
        for i, share in zip(pl_table["id"].to_list(), pl_table["knn_share"].to_list(), strict=True):
            if i in difficulty and share is not None:
                difficulty[i] = AMBIGUITY_TO_DIFFICULTY * float(min(max(1.0 - share, 0.0), 1.0))
    return difficulty


# ---------------------------------------------------------------- the purchase log


class PurchaseLog:
    """Append-only JSON-lines log of what was bought; a torn last line (a kill) is ignored."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        self.meta: dict[str, Any] = {}
        if path.exists():
            text = path.read_text(encoding="utf-8")
            if text and not text.endswith("\n"):
                # A kill cut the last line short: drop it, so the next record starts a clean line.
                text = text[: text.rfind("\n") + 1]
                with path.open("r+", encoding="utf-8") as fh:
                    fh.truncate(len(text.encode("utf-8")))
            for line in text.splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the line a kill cut short; its purchase is redone
                if "key" in record:
                    self.records[record["key"]] = record
                else:
                    self.meta.update(record)

    def append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, separators=(",", ":")) + "\n")
            # A killed process loses nothing that reached the OS; fsync per page would only
            # guard against power loss and costs more than the simulation itself.
            fh.flush()
        if "key" in record:
            self.records[record["key"]] = record
        else:
            self.meta.update(record)


# ---------------------------------------------------------------- the simulation


@dataclass
class _WorkerState:
    worker: VirtualWorker
    done: np.ndarray
    hp_seen: dict[int, int] = field(default_factory=dict)
    pages_done: int = 0
    banned: bool = False


@dataclass
class _OpenPage:
    id: str
    tasks: list[int]
    honeypot: list[bool]
    labels: list[int]
    duration: float
    reserved: np.ndarray


@dataclass
class SimulationResult:
    answers: pl.DataFrame
    bans: pl.DataFrame
    exams: pl.DataFrame
    """worker, kind, hints (training mistakes), correct, total (exam), passed."""
    pages: int
    cost: float
    complete: bool
    tasks_done: int
    workers: list[VirtualWorker]


def simulate(
    inputs: CampaignInputs,
    *,
    truth: Mapping[int, int],
    difficulty: Mapping[int, float],
    population: Mapping[str, float | int],
    log: PurchaseLog | None = None,
) -> SimulationResult:
    """Run the whole campaign with virtual people (see the module docstring).

    Args:
        inputs: spec, tasks (id, source, path, priority) and the ground-truth split.
        truth: id → true label for every task and ground-truth image.
        difficulty: id → difficulty in [0, 1] (missing ids count as 0.3).
        population: ``workers``, ``spammers``, ``fast_clickers``, ``pages_per_worker``, ``seed``
            and optionally ``pace_s`` (wall-clock pause after each page bought).
        log: purchase log to resume from and append to; None keeps everything in memory.
    """
    spec = inputs.spec
    rules = spec.rules
    seed = int(population["seed"])
    pace_s = float(population.get("pace_s", 0.0))
    task_ids = np.asarray(inputs.tasks.sort("priority", "id")["id"].to_list(), dtype=np.int64)
    n_tasks = len(task_ids)
    need = np.full(n_tasks, spec.overlap, dtype=np.int64)
    exam_ids = inputs.role("exam")["id"].to_list()
    training_ids = inputs.role("training")["id"].to_list()
    honeypots = inputs.role("honeypot")["id"].to_list()
    gold = inputs.gold
    missing = [int(t) for t in task_ids if int(t) not in truth]
    if missing:
        raise CrowdError(f"simulated crowd: no truth for {len(missing)} tasks; first id {missing[0]}")

    def p_right(w: VirtualWorker, image: int) -> float:
        return 0.5 + (w.accuracy - 0.5) * (1.0 - 0.7 * difficulty.get(image, 0.3))

    answers = pl.DataFrame(schema=tables.ANSWERS)
    bans = pl.DataFrame(schema=quality.BANS)
    exams: list[dict[str, Any]] = []
    states: dict[str, _WorkerState] = {}
    events: list[tuple[float, int, str, str]] = []
    seq = 0
    pages_paid: dict[str, float] = {}
    exam_cost = 0.0
    open_pages: dict[str, _OpenPage] = {}
    index = {int(t): i for i, t in enumerate(task_ids)}
    cohort = 0

    def push(t: float, kind: str, worker: str) -> None:
        nonlocal seq
        heapq.heappush(events, (t, seq, kind, worker))
        seq += 1

    def arrive(cohort_no: int) -> None:
        nonlocal exam_cost
        people = make_population(
            int(population["workers"]),
            spammers=float(population["spammers"]),
            fast_clickers=float(population["fast_clickers"]),
            pages_per_worker=int(population["pages_per_worker"]),
            seed=seed,
            cohort=cohort_no,
        )
        for w in people:
            wrng = np.random.default_rng([seed, cohort_no, int(w.id.rsplit("-", 1)[1]), 3])
            # Training: every mistake shows the hint, and each hint teaches a little
            # (+0.005 accuracy, at most 0.99). It is not scored; the exam decides.
            hints = sum(int(wrng.random() >= p_right(w, i)) for i in training_ids)
            w.accuracy = min(w.accuracy + 0.005 * hints, 0.99)
            correct = sum(int(wrng.random() < p_right(w, i)) for i in exam_ids)
            passed = correct >= spec.exam_pass * len(exam_ids) - 1e-9
            key = f"exam:{w.id}"
            if spec.exam_price > 0 and log is not None and key not in log.records:
                log.append({"key": key, "price": spec.exam_price})
            exam_cost += spec.exam_price
            exams.append(
                {
                    "worker": w.id,
                    "kind": w.kind,
                    "hints": hints,
                    "correct": correct,
                    "total": len(exam_ids),
                    "passed": passed,
                }
            )
            if passed:
                states[w.id] = _WorkerState(worker=w, done=np.zeros(n_tasks, dtype=bool))
                push(w.arrival, "start", w.id)

    arrive(cohort)
    progress = bar(desc="simulated crowd", total=spec.pages_for(n_tasks), unit="page")
    now = 0.0
    while True:
        if not events:
            if need.sum() <= 0 or cohort + 1 >= MAX_COHORTS:
                break
            cohort += 1
            arrive(cohort)
            if not events:
                continue
        now, _, kind, wid = heapq.heappop(events)
        st = states[wid]
        w = st.worker
        _, c_no, w_no = w.id.split("-")
        wrng = np.random.default_rng([seed, 5, int(c_no), int(w_no), st.pages_done, int(kind == "submit")])
        if kind == "start":
            if st.banned or st.pages_done >= w.pages:
                continue
            free = np.flatnonzero((need > 0) & ~st.done)[: spec.real_per_page]
            if len(free) == 0:
                continue  # nothing left for this person: they leave
            need[free] -= 1
            st.done[free] = True
            hps = pick_honeypots(honeypots, n=spec.honeypots_per_page, seen=st.hp_seen, rng=wrng)
            for h in hps:
                st.hp_seen[h] = st.hp_seen.get(h, 0) + 1
            page = assemble_page(
                f"{wid}-p{st.pages_done:03d}", [int(task_ids[i]) for i in free], hps, rng=wrng
            )
            labels: list[int] = []
            for t in page.tasks:
                if w.kind == "spammer":
                    labels.append(int(wrng.integers(0, 2)))
                elif w.kind == "fast":
                    labels.append(w.favourite if wrng.random() < 0.9 else 1 - w.favourite)
                else:
                    right = wrng.random() < p_right(w, t)
                    labels.append(truth[t] if right else 1 - truth[t])
            duration = float(
                sum(wrng.lognormal(np.log(w.seconds_per_task), 0.25) for _ in page.tasks) + wrng.uniform(1, 4)
            )
            open_pages[wid] = _OpenPage(
                id=page.id,
                tasks=list(page.tasks),
                honeypot=[t in page.honeypots for t in page.tasks],
                labels=labels,
                duration=duration,
                reserved=free,
            )
            st.pages_done += 1
            push(now + duration, "submit", wid)
            continue

        # submit
        op = open_pages.pop(wid)
        if st.banned:
            need[op.reserved] += 1  # the page expired unanswered: its tasks go back to the pool
            continue
        submitted = EPOCH + timedelta(seconds=now)
        page_id, page_tasks, labels, is_hp, duration = op.id, op.tasks, op.labels, op.honeypot, op.duration
        if log is not None:
            prior = log.records.get(page_id)
            if prior is None:
                log.append(
                    {
                        "key": page_id,
                        "worker": wid,
                        "tasks": page_tasks,
                        "labels": labels,
                        "honeypot": is_hp,
                        "submitted_at": submitted.isoformat(),
                        "duration": duration,
                        "price": spec.price_per_page,
                    }
                )
                if pace_s:
                    time.sleep(pace_s)
            elif prior["tasks"] != page_tasks or prior["labels"] != labels:
                raise CrowdError(
                    f"simulated crowd: {log.path} holds page {page_id} with other answers than this run "
                    "makes; the spec or inputs changed since it was written — start afresh with "
                    "`iris crowd launch --restart`"
                )
        pages_paid[page_id] = spec.price_per_page
        progress.update(1)
        page_frame = pl.DataFrame(
            {"task": page_tasks, "label": labels, "is_honeypot": is_hp},
            schema={"task": pl.Int64, "label": pl.Int8, "is_honeypot": pl.Boolean},
        ).with_columns(
            worker=pl.lit(wid),
            page=pl.lit(page_id),
            submitted_at=pl.lit(submitted, dtype=pl.Datetime("us", "UTC")),
            duration=pl.lit(duration, dtype=pl.Float64),
        )
        answers = pl.concat([answers, page_frame.select(list(tables.ANSWERS))], rechunk=False)
        new = quality.evaluate(
            answers, gold, rules, now=submitted, already_banned={b for b, s in states.items() if s.banned}
        )
        for ban in new.iter_rows(named=True):
            banned = states[ban["worker"]]
            banned.banned = True
            if log is not None and f"ban:{ban['worker']}" not in log.records:
                log.append(
                    {
                        "key": f"ban:{ban['worker']}",
                        **ban,
                        "at": ban["at"].isoformat(),
                        "until": ban["until"].isoformat(),
                    }
                )
            if rules.reissue_banned:
                their = answers.filter((pl.col("worker") == ban["worker"]) & ~pl.col("is_honeypot"))
                for t in their["task"].to_list():
                    need[index[int(t)]] += 1
            if rules.reject_banned:
                for p in set(answers.filter(pl.col("worker") == ban["worker"])["page"].to_list()):
                    pages_paid.pop(p, None)
        if new.height:
            bans = pl.concat([bans, new])
        if st.pages_done < w.pages and not st.banned:
            push(now + float(wrng.exponential(30.0)), "start", wid)
    progress.close()

    answers = answers.rechunk()
    if rules.reject_banned and bans.height:
        answers = answers.filter(~pl.col("worker").is_in(bans["worker"].to_list()))
    n_done = tasks_done(answers, overlap=spec.overlap)
    result = SimulationResult(
        answers=answers,
        bans=bans,
        exams=pl.DataFrame(
            exams,
            schema={
                "worker": pl.String,
                "kind": pl.String,
                "hints": pl.Int32,
                "correct": pl.Int32,
                "total": pl.Int32,
                "passed": pl.Boolean,
            },
        ),
        pages=len(pages_paid),
        cost=round(sum(pages_paid.values()) + exam_cost, 4),
        complete=n_done == n_tasks,
        tasks_done=n_done,
        workers=[s.worker for s in states.values()],
    )
    if log is not None:
        log.append(
            {
                "done": True,
                "complete": result.complete,
                "pages": result.pages,
                "cost": result.cost,
                "tasks_done": n_done,
                "tasks_total": n_tasks,
            }
        )
    return result


# ---------------------------------------------------------------- the backend


class SimulatedBackend:
    """Backend ``simulated``: the campaign runs to completion inside ``launch``."""

    name = "simulated"

    def __init__(self, *, settings: Settings, state_dir: Path) -> None:
        self.settings = settings
        self.state_dir = state_dir

    @property
    def log_path(self) -> Path:
        return self.state_dir / "pages.jsonl"

    def _population(self) -> dict[str, float | int]:
        c = self.settings.crowd
        return {
            "workers": c.workers,
            "spammers": c.spammers,
            "fast_clickers": c.fast_clickers,
            "pages_per_worker": c.pages_per_worker,
            "pace_s": c.pace_s,
            "seed": c.seed,
        }

    def plan(self, inputs: CampaignInputs) -> Plan:
        load_truth(inputs, self.settings)  # fails early when the virtual people lack the truth
        spec = inputs.spec
        n = inputs.tasks.height
        return Plan.of(
            self.name,
            inputs,
            [
                f"population of {self.settings.crowd.workers} virtual people per cohort "
                f"({self.settings.crowd.spammers:.0%} spammers, {self.settings.crowd.fast_clickers:.0%} "
                "fast clickers)",
                f"training of {inputs.role('training').height} tasks with hints",
                f"exam of {inputs.role('exam').height} tasks granting skill {spec.skill_name!r} "
                f"at {spec.exam_pass:.0%}",
                f"{spec.pages_for(n)} pages of {spec.real_per_page} tasks + {spec.honeypots_per_page} "
                f"honeypot(s), overlap {spec.overlap}",
            ],
        )

    def run(self, inputs: CampaignInputs) -> SimulationResult:
        truth = load_truth(inputs, self.settings)
        ids = [*inputs.tasks["id"].to_list(), *inputs.ground_truth["id"].to_list()]
        difficulty = load_difficulty(inputs, ids, seed=self.settings.crowd.seed)
        return simulate(
            inputs,
            truth=truth,
            difficulty=difficulty,
            population=self._population(),
            log=PurchaseLog(self.log_path),
        )

    def launch(self, inputs: CampaignInputs) -> CampaignStatus:
        log = PurchaseLog(self.log_path)
        if not log.meta.get("done"):
            self.run(inputs)
        return self.status(inputs)

    def _answers_from_log(self, log: PurchaseLog) -> pl.DataFrame:
        rows: dict[str, list[Any]] = {k: [] for k in tables.ANSWERS}
        for key, rec in log.records.items():
            if "tasks" not in rec or (
                self.settings.crowd.reject_banned and f"ban:{rec['worker']}" in log.records
            ):
                continue
            submitted = datetime.fromisoformat(rec["submitted_at"])
            for t, label, hp in zip(rec["tasks"], rec["labels"], rec["honeypot"], strict=True):
                rows["task"].append(t)
                rows["worker"].append(rec["worker"])
                rows["label"].append(label)
                rows["page"].append(key)
                rows["submitted_at"].append(submitted)
                rows["duration"].append(rec["duration"])
                rows["is_honeypot"].append(hp)
        return pl.DataFrame(rows, schema=tables.ANSWERS).sort("submitted_at", "page")

    @staticmethod
    def _bans_from_log(log: PurchaseLog) -> pl.DataFrame:
        rows = [
            {
                "worker": r["worker"],
                "rule": r["rule"],
                "detail": r["detail"],
                "at": datetime.fromisoformat(r["at"]),
                "until": datetime.fromisoformat(r["until"]),
            }
            for key, r in log.records.items()
            if key.startswith("ban:")
        ]
        return pl.DataFrame(rows, schema=quality.BANS) if rows else pl.DataFrame(schema=quality.BANS)

    def status(self, inputs: CampaignInputs) -> CampaignStatus:
        log = PurchaseLog(self.log_path)
        if not log.records and not log.meta:
            return CampaignStatus(backend=self.name, state="not-launched", tasks_total=inputs.tasks.height)
        answers = self._answers_from_log(log)
        done = tasks_done(answers, overlap=inputs.spec.overlap)
        bans = self._bans_from_log(log)
        state = "stopped" if log.meta.get("stopped") else "complete" if log.meta.get("done") else "running"
        return CampaignStatus(
            backend=self.name,
            state=state,  # type: ignore[arg-type]
            pages=int(answers["page"].n_unique()),
            answers=answers.height,
            tasks_total=inputs.tasks.height,
            tasks_done=done,
            workers=int(answers["worker"].n_unique()),
            banned=bans.height,
            cost=float(log.meta.get("cost", sum(r.get("price", 0.0) for r in log.records.values()))),
            detail={"complete": bool(log.meta.get("complete", False))},
        )

    def collect(self, inputs: CampaignInputs) -> Collected:
        log = PurchaseLog(self.log_path)
        answers = self._answers_from_log(log)
        bans = self._bans_from_log(log)
        if inputs.spec.rules.reject_banned and bans.height:
            answers = answers.filter(~pl.col("worker").is_in(bans["worker"].to_list()))
        return Collected(answers=answers, bans=bans)

    def stop(self, inputs: CampaignInputs) -> CampaignStatus:
        PurchaseLog(self.log_path).append({"stopped": True})
        return self.status(inputs)
