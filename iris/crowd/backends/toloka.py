"""Backend ``toloka``: the campaign on Toloka through toloka-kit (the ``toloka`` extra).

What launch creates, in order (each id is saved to ``WORK/crowd/toloka/state.json`` the
moment it exists, and on a re-run an object is first looked up by the campaign key written
into its private name/comment, so a killed launch never creates a second one):

1. a project: the rendered instructions, input ``image`` (URL) + hidden ``iris_id``,
   binary output ``result`` (True = the positive class), a template-builder view with two
   buttons and hotkeys 1/2;
2. a skill (``crowd.skill_name``);
3. a training pool: ``crowd.training`` tasks, each with its known answer and a hint;
4. an exam pool: ``crowd.exam`` control tasks on one page, requiring the training, with a
   rule that sets the skill to the exam's correct-answer rate;
5. the main pool, open only to workers with skill ≥ ``exam_pass``: overlap, a mixer of
   ``page_size − honeypots_per_page`` real tasks + honeypots per page handed out in creation
   order (the tasks are uploaded by priority), and the quality control rules (fast submits,
   golden set accuracy, majority vote → ban; a ban re-issues the banned worker's tasks;
   optionally their pages are rejected, which needs non-automatic acceptance);
6. the tasks, uploaded in chunks with stable operation ids (uuid5 of the campaign key, the
   pool's id, the role and the chunk): re-sending a chunk into the same pool is a no-op on
   Toloka's side, and a new pool never inherits an old pool's upload.

Generations: the objects carry a run key, the campaign key for the first run and
``KEY.N`` after ``launch --restart`` (:meth:`TolokaBackend.retire` closes and archives the
old run first). A launch that finds its run archived on Toloka stops with an error instead
of building an empty campaign beside it.

What Toloka then does — which honeypots a worker sees, how many pages they can do, which
bans fire — is modelled in :mod:`iris.crowd.platform`, and status/collect report those bans.

Collect reads accepted and submitted assignments and appends each to ``assignments.jsonl``
once. With ``reject_banned`` the pool reviews by hand: collect rejects the submitted pages of
workers Toloka banned and accepts the others.
"""

from __future__ import annotations

import hashlib
import json
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from iris import tables
from iris.config import Settings
from iris.crowd import platform
from iris.crowd.backends.base import CampaignInputs, CampaignStatus, Collected, Plan, tasks_done
from iris.crowd.instructions import render_instructions
from iris.crowd.spec import CampaignSpec
from iris.errors import CrowdError

with warnings.catch_warnings():
    # toloka-kit 1.2.3 imports pkg_resources, which warns on import.
    warnings.simplefilter("ignore")
    import toloka.client as tk
    from toloka.client import actions, collectors, conditions
    from toloka.client import filter as tfilter
    from toloka.client.project import field_spec
    from toloka.client.project import template_builder as tb
    from toloka.client.project.task_spec import TaskSpec
    from toloka.client.project.view_spec import TemplateBuilderViewSpec

CHUNK = 10_000
"""Tasks per upload request (Toloka's recommended maximum in async mode)."""
AUTO_ACCEPT_DAYS = 3
"""Days Toloka waits for a review before accepting a page (pools with ``reject_banned``)."""
NAMESPACE = uuid.UUID("8a3d1f5e-6c1b-4f7a-9d52-1b7e0c6a9f10")


def campaign_key(inputs: CampaignInputs) -> str:
    """A short id of the campaign (spec + tasks + ground truth), written into every object."""
    blob = json.dumps(
        [inputs.spec.fingerprint(), inputs.tasks["id"].to_list(), inputs.ground_truth["id"].to_list()]
    )
    return "iris-" + hashlib.sha256(blob.encode()).hexdigest()[:12]


def run_key(base: str, generation: int) -> str:
    """The key written into the objects of one run of the campaign (``base`` for the first)."""
    return base if generation == 0 else f"{base}.{generation}"


def generation_of(comment: str | None, base: str) -> int | None:
    """The generation a project's private comment names, or None when it is not this campaign's."""
    if comment == base:
        return 0
    if comment and comment.startswith(base + "."):
        tail = comment[len(base) + 1 :]
        return int(tail) if tail.isdigit() else None
    return None


def operation_id(key: str, pool_id: str, role: str, chunk: int) -> uuid.UUID:
    """The stable operation id of one upload chunk into one pool.

    Toloka answers a repeated id with OPERATION_ALREADY_EXISTS and toloka-kit then returns
    the *earlier* operation as if it had just run (toloka-kit ``client/__init__.py``,
    ``TolokaClient._async_create_objects_idempotent``). The pool's id is part of the name, so
    only a re-send into the same pool is skipped.
    """
    return uuid.uuid5(NAMESPACE, f"{key}:{pool_id}:{role}:{chunk}")


# ---------------------------------------------------------------- object builders (pure)


def build_project(spec: CampaignSpec, *, instructions: str, key: str) -> tk.Project:
    view = tb.ListViewV1(
        [
            tb.ImageViewV1(tb.InputData("image"), ratio=[1, 1]),
            tb.ButtonRadioGroupFieldV1(
                tb.OutputData("result"),
                [
                    tb.GroupFieldOption(True, spec.positive_name),
                    tb.GroupFieldOption(False, spec.negative_name),
                ],
                validation=tb.RequiredConditionV1(),
            ),
        ]
    )
    plugins = [
        tb.HotkeysPluginV1(
            key_1=tb.SetActionV1(tb.OutputData("result"), True),
            key_2=tb.SetActionV1(tb.OutputData("result"), False),
        ),
        tb.TolokaPluginV1(kind="scroll", task_width=400),  # type: ignore[call-overload]
    ]
    return tk.Project(
        public_name=f"Is it {spec.positive_name} or {spec.negative_name}?",
        public_description=f"Look at each image and choose {spec.positive_name} or {spec.negative_name}.",
        public_instructions=instructions,
        private_comment=key,
        task_spec=TaskSpec(
            input_spec={
                "image": field_spec.UrlSpec(),
                "iris_id": field_spec.StringSpec(hidden=True),
            },
            output_spec={"result": field_spec.BooleanSpec()},
            view_spec=TemplateBuilderViewSpec(config=tb.TemplateBuilder(view=view, plugins=plugins)),
        ),
    )


def build_skill(spec: CampaignSpec, *, key: str) -> tk.Skill:
    return tk.Skill(
        name=spec.skill_name,
        private_comment=key,
        hidden=True,
        public_requester_description={"EN": f"Passed the {spec.positive_name}/{spec.negative_name} exam"},
    )


def build_training(spec: CampaignSpec, *, project_id: str, key: str) -> tk.Training:
    return tk.Training(
        project_id=project_id,
        private_name=f"{key} training",
        may_contain_adult_content=False,
        assignment_max_duration_seconds=60 * 30,
        mix_tasks_in_creation_order=False,
        shuffle_tasks_in_task_suite=True,
        training_tasks_in_task_suite_count=spec.training,
        task_suites_required_to_pass=1,
        retry_training_after_days=1,
        inherited_instructions=True,
    )


def _ban(days: int, comment: str) -> actions.RestrictionV2:
    return actions.RestrictionV2(
        scope="PROJECT", duration=days, duration_unit="DAYS", private_comment=f"iris: {comment}"
    )


def build_exam_pool(
    spec: CampaignSpec, *, project_id: str, skill_id: str, training_id: str, key: str, now: datetime
) -> tk.Pool:
    pool = tk.Pool(
        project_id=project_id,
        private_name=f"{key} exam",
        may_contain_adult_content=False,
        will_expire=now + timedelta(days=365),
        reward_per_assignment=spec.exam_price,
        assignment_max_duration_seconds=60 * 30,
        auto_accept_solutions=True,
        defaults=tk.Pool.Defaults(default_overlap_for_new_tasks=1, default_overlap_for_new_task_suites=1),
    )
    pool.set_mixer_config(real_tasks_count=0, golden_tasks_count=spec.exam, training_tasks_count=0)
    pool.set_training_requirement(training_pool_id=training_id, training_passing_skill_value=50)
    assert pool.quality_control is not None
    pool.quality_control.add_action(
        # Without history_size the rule counts this pool's answers only, and the main pool's
        # honeypot window does not start with exam answers in it (platform.EXAM_SHARES_HONEYPOT_HISTORY).
        collector=collectors.GoldenSet(
            history_size=spec.exam if platform.EXAM_SHARES_HONEYPOT_HISTORY else None
        ),
        conditions=[conditions.TotalAnswersCount >= spec.exam],
        action=actions.SetSkillFromOutputField(
            skill_id=skill_id, from_field=conditions.RuleConditionKey("correct_answers_rate")
        ),
    )
    return pool


def build_main_pool(
    spec: CampaignSpec, *, project_id: str, skill_id: str, key: str, now: datetime
) -> tk.Pool:
    rules = spec.rules
    pool = tk.Pool(
        project_id=project_id,
        private_name=f"{key} main",
        may_contain_adult_content=False,
        will_expire=now + timedelta(days=365),
        reward_per_assignment=spec.price_per_page,
        assignment_max_duration_seconds=60 * 60,
        # RejectAllAssignments "is available for pools with non-automatic acceptance"
        # (toloka-kit client/actions.py): rejecting banned workers' pages needs manual review,
        # which collect does; unreviewed pages are accepted after auto_accept_period_day.
        auto_accept_solutions=not rules.reject_banned,
        auto_accept_period_day=AUTO_ACCEPT_DAYS,
        defaults=tk.Pool.Defaults(
            default_overlap_for_new_tasks=spec.overlap, default_overlap_for_new_task_suites=spec.overlap
        ),
        filter=tfilter.Skill(skill_id) >= round(spec.exam_pass * 100),
    )
    pool.set_mixer_config(
        real_tasks_count=spec.real_per_page,
        golden_tasks_count=spec.honeypots_per_page,
        training_tasks_count=0,
        # Toloka picks tasks at random unless told otherwise (MixerConfig in toloka-kit
        # client/pool/mixer_config.py); the tasks are uploaded by priority, so creation order
        # serves the most valuable ones first, as the simulated and web crowds do.
        mix_tasks_in_creation_order=True,
        shuffle_tasks_in_task_suite=True,
    )
    qc = pool.quality_control
    assert qc is not None
    triggers: list[tuple[Any, list[Any], int, str]] = [
        (
            # One threshold for every task suite: Toloka does not pro-rate it for a short last
            # page, and platform.fast_pages reports the bans the same way.
            collectors.AssignmentSubmitTime(
                history_size=1, fast_submit_threshold_seconds=round(rules.fast.min_seconds)
            ),
            [conditions.FastSubmittedCount >= 1],
            rules.fast.ban_days,
            "fast",
        ),
        (
            collectors.GoldenSet(history_size=rules.honeypot.window),
            [
                conditions.TotalAnswersCount >= rules.honeypot.window,
                conditions.GoldenSetCorrectAnswersRate < rules.honeypot.min_accuracy * 100,
            ],
            rules.honeypot.ban_days,
            "honeypot",
        ),
    ]
    if platform.majority_rule_usable(spec.overlap) and rules.majority.min_agreement > 0:
        triggers.append(
            (
                # answer_threshold is the number of matching answers that makes a majority
                # (en/guide/concepts/mvote.md: 3 at overlap 5), not the count of the others.
                collectors.MajorityVote(
                    answer_threshold=platform.majority_answer_threshold(spec.overlap),
                    history_size=rules.majority.window,
                ),
                [
                    conditions.TotalAnswersCount >= rules.majority.window,
                    conditions.CorrectAnswersRate < rules.majority.min_agreement * 100,
                ],
                rules.majority.ban_days,
                "majority",
            )
        )
    for collector, when, days, name in triggers:
        qc.add_action(collector=collector, conditions=when, action=_ban(days, name))
    if rules.reject_banned:
        # A rule has one action: the same triggers again (a second rule on the same
        # collector), rejecting the worker's pages.
        for collector, when, _days, name in triggers:
            qc.add_action(
                collector=collector,
                conditions=when,
                action=actions.RejectAllAssignments(public_comment=f"Quality control: {name}"),
            )
    if rules.reissue_banned:
        qc.add_action(
            collector=collectors.UsersAssessment(),
            conditions=[conditions.PoolAccessRevokedReason == "RESTRICTION"],
            action=actions.ChangeOverlap(delta=1, open_pool=True),
        )
    return pool


def _inputs(row: dict[str, Any]) -> dict[str, str]:
    return {"image": row["source"], "iris_id": str(row["id"])}


def build_tasks(frame: pl.DataFrame, *, pool_id: str, spec: CampaignSpec, role: str) -> list[tk.Task]:
    """Toloka tasks for one pool.

    Args:
        frame: id, source (+ label for training/exam/honeypot rows).
        role: "real", "training", "exam" or "honeypot".
    """
    out: list[tk.Task] = []
    for row in frame.iter_rows(named=True):
        if role == "real":
            out.append(tk.Task(pool_id=pool_id, input_values=_inputs(row)))
            continue
        answer = bool(row["label"])
        name = spec.positive_name if answer else spec.negative_name
        out.append(
            tk.Task(
                pool_id=pool_id,
                input_values=_inputs(row),
                known_solutions=[
                    tk.Task.KnownSolution(output_values={"result": answer}, correctness_weight=1)
                ],
                message_on_unknown_solution=f"This is {name}." if role == "training" else None,
                infinite_overlap=True,
            )
        )
    return out


@dataclass(frozen=True)
class TolokaObjects:
    """Everything launch would create, as toloka-kit objects (ids are placeholders in a plan)."""

    project: tk.Project
    skill: tk.Skill
    training: tk.Training
    exam_pool: tk.Pool
    main_pool: tk.Pool
    training_tasks: list[tk.Task]
    exam_tasks: list[tk.Task]
    honeypot_tasks: list[tk.Task]
    real_tasks: list[tk.Task]


def _check_urls(inputs: CampaignInputs) -> None:
    frames = [inputs.tasks.select("source"), inputs.ground_truth.select("source")]
    sources = pl.concat(frames)["source"]
    bad = sources.filter(~sources.str.contains(r"^https?://"))
    if bad.len():
        raise CrowdError(
            f"toloka backend: {bad.len()} images have no http(s) URL as source (Toloka workers load "
            f"images by URL); first: {bad[0]}"
        )


def build_objects(
    inputs: CampaignInputs,
    *,
    ids: dict[str, Any] | None = None,
    now: datetime | None = None,
    key: str | None = None,
) -> TolokaObjects:
    """Build every object of the campaign.

    Args:
        ids: project_id, skill_id, training_id, exam_pool_id, main_pool_id; missing ones are
            the placeholders ``<project_id>`` etc.
        now: the clock (pool expiry is a year later).
        key: the run key written into the objects (default: the campaign key, first run).
    """
    spec = inputs.spec
    key = key or campaign_key(inputs)
    ids = ids or {}

    def the(name: str) -> str:
        return str(ids.get(name) or f"<{name}>")

    now = now or datetime.now(UTC)
    training = inputs.role("training")
    instructions = render_instructions(
        spec,
        positive_examples=training.filter(pl.col("label") == 1)["source"].head(3).to_list(),
        negative_examples=training.filter(pl.col("label") == 0)["source"].head(3).to_list(),
    )
    return TolokaObjects(
        project=build_project(spec, instructions=instructions, key=key),
        skill=build_skill(spec, key=key),
        training=build_training(spec, project_id=the("project_id"), key=key),
        exam_pool=build_exam_pool(
            spec,
            project_id=the("project_id"),
            skill_id=the("skill_id"),
            training_id=the("training_id"),
            key=key,
            now=now,
        ),
        main_pool=build_main_pool(
            spec, project_id=the("project_id"), skill_id=the("skill_id"), key=key, now=now
        ),
        training_tasks=build_tasks(training, pool_id=the("training_id"), spec=spec, role="training"),
        exam_tasks=build_tasks(inputs.role("exam"), pool_id=the("exam_pool_id"), spec=spec, role="exam"),
        honeypot_tasks=build_tasks(
            inputs.role("honeypot"), pool_id=the("main_pool_id"), spec=spec, role="honeypot"
        ),
        # Creation order is the serving order (mix_tasks_in_creation_order): upload by priority.
        real_tasks=build_tasks(
            inputs.tasks.sort("priority", "id"), pool_id=the("main_pool_id"), spec=spec, role="real"
        ),
    )


# ---------------------------------------------------------------- the backend


class TolokaBackend:
    name = "toloka"

    def __init__(self, *, settings: Settings, state_dir: Path, client: tk.TolokaClient | None = None) -> None:
        self.settings = settings
        self.state_dir = state_dir
        self._client = client
        self._retired = False
        """Set by :meth:`retire`: the next launch starts a new generation."""

    # -- plumbing

    @property
    def client(self) -> tk.TolokaClient:
        if self._client is None:
            c = self.settings.crowd
            if not c.toloka_token:
                raise CrowdError(
                    "toloka backend: no API token; set IRIS_CROWD_TOLOKA_TOKEN (or crowd.toloka_token)"
                )
            if c.toloka_url:
                self._client = tk.TolokaClient(c.toloka_token, url=c.toloka_url, retries=2, timeout=30.0)
            else:
                self._client = tk.TolokaClient(c.toloka_token, "PRODUCTION", retries=2, timeout=30.0)
        return self._client

    @property
    def state_path(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "assignments.jsonl"

    def _load_state(self) -> dict[str, Any]:
        return json.loads(self.state_path.read_text(encoding="utf-8")) if self.state_path.exists() else {}

    def _save_state(self, state: dict[str, Any]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
        tmp.replace(self.state_path)

    def _rules(self, inputs: CampaignInputs) -> platform.TolokaRules:
        return platform.TolokaRules.of(inputs.spec.rules, overlap=inputs.spec.overlap)

    # -- interface

    def _validate(self, inputs: CampaignInputs) -> None:
        """Everything Toloka would refuse, found before anything is created."""
        _check_urls(inputs)
        problems = platform.price_problems(inputs.spec)
        if problems:
            raise CrowdError("toloka backend: " + "; ".join(problems))

    def plan(self, inputs: CampaignInputs) -> Plan:
        self._validate(inputs)
        objects = build_objects(inputs)
        spec = inputs.spec
        n = inputs.tasks.height
        qc = objects.main_pool.quality_control
        n_rules = sum(len(c.rules or []) for c in (qc.configs or [])) if qc else 0
        groups = (objects.training_tasks, objects.exam_tasks, objects.honeypot_tasks, objects.real_tasks)
        uploads = sum(-(-len(g) // CHUNK) for g in groups)
        cap = platform.max_pages_per_worker(len(objects.honeypot_tasks), spec.honeypots_per_page)
        pages = spec.pages_for(n)
        workers = (
            "" if not cap else f"; at least {-(-pages // cap)} workers (each can do at most {cap} pages)"
        )
        warnings = platform.price_warnings(spec)
        if not platform.majority_rule_usable(spec.overlap):
            warnings.append(
                f"overlap {spec.overlap}: a majority would need every answer to match, so the "
                "majority-vote rule is left out"
            )
        if spec.rules.skill.on:
            # iris.crowd.quality.SkillState; the simulated crowd applies it on top of Toloka's rules.
            warnings.append(
                f"crowd.min_skill = {spec.rules.skill.min_skill:g}: Toloka has no skill rule and iris "
                "does not yet apply it to a Toloka pool, so there only the fast and honeypot rules ban "
                "(crowd.min_majority_agreement adds Toloka's majority vote)"
            )
        return Plan.of(
            self.name,
            inputs,
            [
                f"project {objects.project.public_name!r}",
                f"skill {spec.skill_name!r}",
                f"training pool with {len(objects.training_tasks)} tasks with hints",
                f"exam pool with {len(objects.exam_tasks)} control tasks setting the skill, "
                f"{spec.exam_price} per exam",
                f"main pool: skill >= {round(spec.exam_pass * 100)}, overlap {spec.overlap}, "
                f"{spec.real_per_page} real + {spec.honeypots_per_page} honeypot per page in priority order, "
                f"{n_rules} quality-control rules, "
                f"{spec.price_per_page} per page"
                + (
                    ", pages reviewed by iris (banned workers' pages rejected)"
                    if spec.rules.reject_banned
                    else ""
                ),
                f"{n} real tasks + {len(objects.honeypot_tasks)} honeypots + training and exam tasks in "
                f"{uploads} uploads with stable operation ids{workers}",
                "cost excludes Toloka's fee and the exam (paid per worker who takes it)",
            ],
            pages_per_worker=self.settings.crowd.pages_per_worker,
            warnings=warnings,
        )

    def _runs(self, base: str) -> list[tuple[int, str, str]]:
        """(generation, project id, status) of every run of this campaign on Toloka, oldest first.

        Both statuses are searched: an archived run must be seen, or a re-launch would build a
        second campaign beside it (toloka-kit ``client/project/__init__.py``,
        ``Project.ProjectStatus``: ACTIVE, ARCHIVED).
        """
        runs = []
        for status in (tk.Project.ProjectStatus.ACTIVE, tk.Project.ProjectStatus.ARCHIVED):
            for p in self.client.get_projects(status=status):
                g = generation_of(p.private_comment, base)
                if g is not None:
                    runs.append((g, str(p.id), str(getattr(p.status, "value", p.status))))
        return sorted(runs)

    def _find(self, kind: str, key: str, project_id: str | None) -> str | None:
        """Look for an object this run created before its id could be saved."""
        client = self.client
        found: Iterator[Any]
        if kind == "project_id":
            found = (
                p
                for p in client.get_projects(status=tk.Project.ProjectStatus.ACTIVE)
                if p.private_comment == key
            )
        elif kind == "skill_id":
            found = (
                s for s in client.get_skills(name=self.settings.crowd.skill_name) if s.private_comment == key
            )
        elif kind == "training_id":
            found = (
                t for t in client.get_trainings(project_id=project_id) if t.private_name == f"{key} training"
            )
        else:
            suffix = "exam" if kind == "exam_pool_id" else "main"
            found = (
                p for p in client.get_pools(project_id=project_id) if p.private_name == f"{key} {suffix}"
            )
        obj = next(found, None)
        return None if obj is None else str(obj.id)

    def _archived_error(self, base: str, project_id: str) -> CrowdError:
        return CrowdError(
            f"toloka backend: campaign {base} (project {project_id}) is archived on Toloka, so it "
            "cannot be resumed; `iris crowd launch --restart` launches it again as a new campaign"
        )

    def _start_state(self, base: str) -> dict[str, Any]:
        """The state of a launch with no state file: resume the latest run, or start one."""
        runs = self._runs(base)
        latest = runs[-1] if runs else None
        generation = 0
        if latest is not None:
            g, project_id, status = latest
            if status == "ARCHIVED":
                if not self._retired:
                    raise self._archived_error(base, project_id)
                generation = g + 1
            else:
                generation = g  # a launch killed before it saved its state: resume that run
        return {"base": base, "generation": generation, "key": run_key(base, generation)}

    def launch(self, inputs: CampaignInputs) -> CampaignStatus:
        self._validate(inputs)
        client = self.client
        base = campaign_key(inputs)
        state = self._load_state()
        if state and state.get("base", state.get("key")) != base:
            raise CrowdError(
                f"{self.state_path}: holds campaign {state.get('base', state.get('key'))}, not {base}; "
                "pass --restart to end it and launch a new one"
            )
        if not state:
            state = self._start_state(base)
        elif state.get("project_id"):
            project = client.get_project(state["project_id"])
            if str(getattr(project.status, "value", project.status)) == "ARCHIVED":
                raise self._archived_error(base, state["project_id"])
        key = str(state["key"])
        state.setdefault("uploaded", {})
        state.setdefault("opened", [])
        now = datetime.fromisoformat(state.setdefault("created_at", datetime.now(UTC).isoformat()))
        self._save_state(state)

        def ensure(kind: str, create: Any) -> str:
            if not state.get(kind):
                state[kind] = self._find(kind, key, state.get("project_id")) or str(create().id)
                self._save_state(state)
            return str(state[kind])

        def objects_now() -> TolokaObjects:
            return build_objects(inputs, ids=state, now=now, key=key)

        objects = objects_now()
        ensure("project_id", lambda: client.create_project(objects.project))
        ensure("skill_id", lambda: client.create_skill(objects.skill))
        objects = objects_now()
        ensure("training_id", lambda: client.create_training(objects.training))
        objects = objects_now()
        ensure("exam_pool_id", lambda: client.create_pool(objects.exam_pool))
        ensure("main_pool_id", lambda: client.create_pool(objects.main_pool))
        objects = objects_now()

        uploads = [
            ("training", "training_id", objects.training_tasks),
            ("exam", "exam_pool_id", objects.exam_tasks),
            ("honeypot", "main_pool_id", objects.honeypot_tasks),
            ("real", "main_pool_id", objects.real_tasks),
        ]
        for role, pool_kind, tasks in uploads:
            for chunk, start in enumerate(range(0, len(tasks), CHUNK)):
                name = f"{role}:{chunk}"
                if name in state["uploaded"]:
                    continue
                op_id = operation_id(key, state[pool_kind], role, chunk)
                params = tk.task.CreateTasksParameters(
                    operation_id=op_id, async_mode=True, allow_defaults=True, open_pool=False
                )
                started = client.create_tasks_async(tasks[start : start + CHUNK], parameters=params)
                done = client.wait_operation(started, disable_progress=True)
                if done.status != tk.operations.Operation.Status.SUCCESS:
                    raise CrowdError(f"toloka backend: upload {name} (operation {op_id}) ended {done.status}")
                state["uploaded"][name] = str(op_id)
                self._save_state(state)

        for kind in ("training_id", "exam_pool_id", "main_pool_id"):
            if kind in state["opened"]:
                continue
            pool = client.get_training(state[kind]) if kind == "training_id" else client.get_pool(state[kind])
            if str(getattr(pool.status, "value", pool.status)) == "ARCHIVED":
                # Toloka archives a pool left alone for a month; an archived pool cannot be
                # opened again (toloka-kit TolokaClient.archive_pool).
                raise self._archived_error(
                    base, f"{state['project_id']}, {kind.removesuffix('_id')} {state[kind]}"
                )
            # Never open a pool without its tasks (a skipped upload would otherwise go unseen).
            if not client.find_tasks(pool_id=state[kind], limit=1).items:
                raise CrowdError(f"toloka backend: {kind.removesuffix('_id')} {state[kind]} holds no tasks")
            if kind == "training_id":
                client.open_training(state[kind])
            else:
                client.open_pool(state[kind])
            state["opened"].append(kind)
            self._save_state(state)
        return self.status(inputs)

    def retire(self, inputs: CampaignInputs) -> None:
        """End the campaign's current run on Toloka so the next launch starts a new one.

        What ``launch --restart`` calls before forgetting the local state: the run's pools
        and training are closed and archived, then its project ("All pools in the project must
        be archived before archiving the project", toloka-kit ``TolokaClient.archive_project``;
        "Only closed pools can be archived", ``TolokaClient.archive_pool``), and the local
        state of the run is forgotten. Answers already given stay readable on Toloka.
        """
        client = self.client
        base = campaign_key(inputs)
        # The state file names the run launched here, whatever the settings are now.
        project_id = self._load_state().get("project_id")
        if project_id is None:
            runs = self._runs(base)
            project_id = runs[-1][1] if runs and runs[-1][2] == "ACTIVE" else None
        if (
            project_id is not None
            and str(getattr(client.get_project(project_id).status, "value", "")) != "ARCHIVED"
        ):
            for pool in client.get_pools(project_id=project_id):
                status = str(getattr(pool.status, "value", pool.status))
                if status == "OPEN":
                    client.close_pool(str(pool.id))
                if status != "ARCHIVED":
                    client.archive_pool(str(pool.id))
            for training in client.get_trainings(project_id=project_id):
                status = str(getattr(training.status, "value", training.status))
                if status == "OPEN":
                    client.close_training(str(training.id))
                if status != "ARCHIVED":
                    client.archive_training(str(training.id))
            client.archive_project(project_id)
        for path in (self.state_path, self.log_path):
            path.unlink(missing_ok=True)
        self._retired = True

    def _log(self) -> dict[str, dict[str, Any]]:
        records: dict[str, dict[str, Any]] = {}
        if self.log_path.exists():
            for line in self.log_path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                records[rec["id"]] = rec
        return records

    @staticmethod
    def _record(a: tk.Assignment) -> dict[str, Any]:
        assert a.tasks is not None and a.solutions is not None
        return {
            "id": a.id,
            "worker": a.user_id,
            "status": str(getattr(a.status, "value", a.status)),
            "created": a.created.isoformat() if a.created else None,
            "submitted": (a.submitted or a.created or datetime.now(UTC)).isoformat(),
            "tasks": [(t.input_values or {})["iris_id"] for t in a.tasks],
            "honeypot": [bool(t.known_solutions) for t in a.tasks],
            "labels": [int(bool(s.output_values["result"])) for s in a.solutions],
            "reward": float(a.reward) if a.reward is not None else None,
        }

    def _fetch(self, state: dict[str, Any], inputs: CampaignInputs) -> dict[str, dict[str, Any]]:
        """Append assignments not seen before to the log; returns the whole log.

        Submitted pages count as well as accepted ones: on an auto-accept pool Toloka accepts
        and pays them whatever the rules say later ("The assignments submitted by banned
        Tolokers will be taken into account if you don't reject them using manual review",
        en/guide/concepts/goldenset.md). With ``reject_banned`` iris is the reviewer: a
        submitted page of a worker Toloka banned is rejected, every other one accepted.
        Expired and skipped pages hold no answers and are not read.
        """
        records = self._log()
        new: list[dict[str, Any]] = []
        for a in self.client.get_assignments(pool_id=state["main_pool_id"], status=["ACCEPTED", "SUBMITTED"]):
            if a.id is None or a.id in records or not a.solutions or not a.tasks:
                continue
            new.append(self._record(a))
        if inputs.spec.rules.reject_banned and new:
            everything = {**records, **{r["id"]: r for r in new}}
            banned = dict(
                zip(*self._bans(self._answers(everything), inputs).select("worker", "rule"), strict=True)
            )
            reviewed = []
            for rec in new:
                if rec["status"] != "SUBMITTED":
                    reviewed.append(rec)
                elif rec["worker"] in banned:
                    self.client.reject_assignment(rec["id"], f"Quality control: {banned[rec['worker']]}")
                    reviewed.append({**rec, "status": "REJECTED"})
                else:
                    self.client.accept_assignment(rec["id"], "Thank you")
                    reviewed.append({**rec, "status": "ACCEPTED"})
            new = reviewed
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a", encoding="utf-8") as fh:
            for rec in new:
                fh.write(json.dumps(rec) + "\n")
                fh.flush()
                records[rec["id"]] = rec
        return records

    @staticmethod
    def _answers(records: dict[str, dict[str, Any]], *, rejected: bool = False) -> pl.DataFrame:
        """The ANSWERS table of the logged pages (those iris rejected only when ``rejected``)."""
        rows: dict[str, list[Any]] = {k: [] for k in tables.ANSWERS}
        for rec in records.values():
            if rec.get("status") == "REJECTED" and not rejected:
                continue
            submitted = datetime.fromisoformat(rec["submitted"])
            if submitted.tzinfo is None:
                submitted = submitted.replace(tzinfo=UTC)
            created = datetime.fromisoformat(rec["created"]) if rec["created"] else submitted
            if created.tzinfo is None:
                created = created.replace(tzinfo=UTC)
            for t, label, hp in zip(rec["tasks"], rec["labels"], rec["honeypot"], strict=True):
                rows["task"].append(int(t))
                rows["worker"].append(rec["worker"])
                rows["label"].append(label)
                rows["page"].append(rec["id"])
                rows["submitted_at"].append(submitted)
                rows["duration"].append((submitted - created).total_seconds())
                rows["is_honeypot"].append(hp)
        return pl.DataFrame(rows, schema=tables.ANSWERS).sort("submitted_at", "page")

    def _bans(self, answers: pl.DataFrame, inputs: CampaignInputs) -> pl.DataFrame:
        """The bans Toloka makes on these answers (its rules, as iris.crowd.platform models them)."""
        return platform.evaluate(answers, inputs.gold, self._rules(inputs))

    def status(self, inputs: CampaignInputs) -> CampaignStatus:
        state = self._load_state()
        if not state.get("main_pool_id"):
            return CampaignStatus(backend=self.name, state="not-launched", tasks_total=inputs.tasks.height)
        pool = self.client.get_pool(state["main_pool_id"])
        records = self._log()
        answers = self._answers(records)
        done = tasks_done(answers, overlap=inputs.spec.overlap)
        bans = self._bans(self._answers(records, rejected=True), inputs)
        pool_status = str(getattr(pool.status, "value", pool.status))
        reason = str(getattr(pool.last_close_reason, "value", pool.last_close_reason))
        run_state = "running" if pool_status == "OPEN" else "complete" if reason == "COMPLETED" else "stopped"
        return CampaignStatus(
            backend=self.name,
            state=run_state,  # type: ignore[arg-type]
            pages=int(answers["page"].n_unique()),
            answers=answers.height,
            tasks_total=inputs.tasks.height,
            tasks_done=done,
            workers=int(answers["worker"].n_unique()),
            banned=bans.height,
            cost=round(answers["page"].n_unique() * inputs.spec.price_per_page, 4),
            detail={
                "pool": state["main_pool_id"],
                "pool_status": pool_status,
                "project": state["project_id"],
                "run": state.get("key"),
            },
        )

    def collect(self, inputs: CampaignInputs) -> Collected:
        state = self._load_state()
        if not state.get("main_pool_id"):
            raise CrowdError("toloka backend: nothing launched yet; run `iris crowd launch` first")
        records = self._fetch(state, inputs)
        # Toloka enforces the rules itself; iris models them to report who was banned, when and
        # why, on every page Toloka counted (rejected ones too).
        bans = self._bans(self._answers(records, rejected=True), inputs)
        return Collected(answers=self._answers(records), bans=bans)

    def stop(self, inputs: CampaignInputs) -> CampaignStatus:
        state = self._load_state()
        for kind in ("main_pool_id", "exam_pool_id"):
            if state.get(kind):
                self.client.close_pool(state[kind])
        if state.get("training_id"):
            self.client.close_training(state["training_id"])
        return self.status(inputs)
