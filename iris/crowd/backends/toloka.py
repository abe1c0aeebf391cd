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
   ``page_size − honeypots_per_page`` real tasks + honeypots per page, and the quality
   control rules (fast submits, golden set accuracy, majority vote → ban; a ban re-issues
   the banned worker's tasks; optionally their pages are rejected);
6. the tasks, uploaded in chunks with stable operation ids (uuid5 of the campaign key,
   pool and chunk): re-sending a chunk is a no-op on Toloka's side.

Collect reads accepted assignments (and submitted ones unless banned workers' pages are
rejected) and appends each to ``assignments.jsonl`` once.
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
from iris.crowd import quality
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
NAMESPACE = uuid.UUID("8a3d1f5e-6c1b-4f7a-9d52-1b7e0c6a9f10")


def campaign_key(inputs: CampaignInputs) -> str:
    """A short id of the campaign (spec + tasks + ground truth), written into every object."""
    blob = json.dumps(
        [inputs.spec.fingerprint(), inputs.tasks["id"].to_list(), inputs.ground_truth["id"].to_list()]
    )
    return "iris-" + hashlib.sha256(blob.encode()).hexdigest()[:12]


def operation_id(key: str, pool: str, chunk: int) -> uuid.UUID:
    """The stable operation id of one upload chunk."""
    return uuid.uuid5(NAMESPACE, f"{key}:{pool}:{chunk}")


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
        collector=collectors.GoldenSet(history_size=spec.exam),
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
        auto_accept_solutions=True,
        auto_accept_period_day=1,
        defaults=tk.Pool.Defaults(
            default_overlap_for_new_tasks=spec.overlap, default_overlap_for_new_task_suites=spec.overlap
        ),
        filter=tfilter.Skill(skill_id) >= round(spec.exam_pass * 100),
    )
    pool.set_mixer_config(
        real_tasks_count=spec.real_per_page,
        golden_tasks_count=spec.honeypots_per_page,
        training_tasks_count=0,
    )
    qc = pool.quality_control
    assert qc is not None
    triggers: list[tuple[Any, list[Any], int, str]] = [
        (
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
        (
            collectors.MajorityVote(
                answer_threshold=rules.majority.min_others, history_size=rules.majority.window
            ),
            [
                conditions.TotalAnswersCount >= rules.majority.window,
                conditions.CorrectAnswersRate < rules.majority.min_agreement * 100,
            ],
            rules.majority.ban_days,
            "majority",
        ),
    ]
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
    ids: dict[str, str] | None = None,
    now: datetime | None = None,
) -> TolokaObjects:
    """Build every object of the campaign.

    Args:
        ids: project_id, skill_id, training_id, exam_pool_id, main_pool_id; missing ones are
            the placeholders ``<project_id>`` etc.
        now: the clock (pool expiry is a year later).
    """
    spec = inputs.spec
    key = campaign_key(inputs)
    ids = ids or {}

    def the(name: str) -> str:
        return ids.get(name) or f"<{name}>"

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
        real_tasks=build_tasks(inputs.tasks, pool_id=the("main_pool_id"), spec=spec, role="real"),
    )


# ---------------------------------------------------------------- the backend


class TolokaBackend:
    name = "toloka"

    def __init__(self, *, settings: Settings, state_dir: Path, client: tk.TolokaClient | None = None) -> None:
        self.settings = settings
        self.state_dir = state_dir
        self._client = client

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

    # -- interface

    def plan(self, inputs: CampaignInputs) -> Plan:
        _check_urls(inputs)
        objects = build_objects(inputs)
        spec = inputs.spec
        n = inputs.tasks.height
        qc = objects.main_pool.quality_control
        n_rules = sum(len(c.rules or []) for c in (qc.configs or [])) if qc else 0
        groups = (objects.training_tasks, objects.exam_tasks, objects.honeypot_tasks, objects.real_tasks)
        uploads = sum(-(-len(g) // CHUNK) for g in groups)
        return Plan(
            backend=self.name,
            tasks=n,
            training=len(objects.training_tasks),
            exam=len(objects.exam_tasks),
            honeypots=len(objects.honeypot_tasks),
            pages=spec.pages_for(n),
            answers=n * spec.overlap,
            cost=spec.cost_for(n),
            objects=[
                f"project {objects.project.public_name!r}",
                f"skill {spec.skill_name!r}",
                f"training pool with {len(objects.training_tasks)} tasks with hints",
                f"exam pool with {len(objects.exam_tasks)} control tasks setting the skill",
                f"main pool: skill >= {round(spec.exam_pass * 100)}, overlap {spec.overlap}, "
                f"{spec.real_per_page} real + {spec.honeypots_per_page} honeypot per page, "
                f"{n_rules} quality-control rules, "
                f"{spec.price_per_page} per page",
                f"{n} real tasks + {len(objects.honeypot_tasks)} honeypots + training and exam tasks in "
                f"{uploads} uploads with stable operation ids",
                "cost excludes Toloka's fee and the exam (paid per worker who takes it)",
            ],
        )

    def _find(self, kind: str, key: str, project_id: str | None) -> str | None:
        """Look for an object this campaign created before its id could be saved."""
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

    def launch(self, inputs: CampaignInputs) -> CampaignStatus:
        _check_urls(inputs)
        client = self.client
        key = campaign_key(inputs)
        state = self._load_state()
        if state and state.get("key") != key:
            raise CrowdError(
                f"{self.state_path}: holds campaign {state.get('key')}, not {key}; "
                "stop it and pass --restart to launch a new one"
            )
        state.setdefault("key", key)
        state.setdefault("uploaded", {})
        state.setdefault("opened", [])
        now = datetime.fromisoformat(state.setdefault("created_at", datetime.now(UTC).isoformat()))
        self._save_state(state)

        def ensure(kind: str, create: Any) -> str:
            if not state.get(kind):
                state[kind] = self._find(kind, key, state.get("project_id")) or str(create().id)
                self._save_state(state)
            return str(state[kind])

        objects = build_objects(inputs, now=now)
        ensure("project_id", lambda: client.create_project(objects.project))
        ensure("skill_id", lambda: client.create_skill(objects.skill))
        objects = build_objects(inputs, ids=state, now=now)
        ensure("training_id", lambda: client.create_training(objects.training))
        objects = build_objects(inputs, ids=state, now=now)
        ensure("exam_pool_id", lambda: client.create_pool(objects.exam_pool))
        ensure("main_pool_id", lambda: client.create_pool(objects.main_pool))
        objects = build_objects(inputs, ids=state, now=now)

        uploads = [
            ("training", objects.training_tasks),
            ("exam", objects.exam_tasks),
            ("honeypot", objects.honeypot_tasks),
            ("real", objects.real_tasks),
        ]
        for pool, tasks in uploads:
            for chunk, start in enumerate(range(0, len(tasks), CHUNK)):
                name = f"{pool}:{chunk}"
                if name in state["uploaded"]:
                    continue
                op_id = operation_id(key, pool, chunk)
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
            if kind == "training_id":
                client.open_training(state[kind])
            else:
                client.open_pool(state[kind])
            state["opened"].append(kind)
            self._save_state(state)
        return self.status(inputs)

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

    def _fetch(self, state: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Append assignments not seen before to the log; returns the whole log."""
        records = self._log()
        statuses: list[str | tk.Assignment.Status] = ["ACCEPTED"]
        if not self.settings.crowd.reject_banned:
            statuses.append("SUBMITTED")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a", encoding="utf-8") as fh:
            for a in self.client.get_assignments(pool_id=state["main_pool_id"], status=statuses):
                if a.id is None or a.id in records or not a.solutions or not a.tasks:
                    continue
                rec = {
                    "id": a.id,
                    "worker": a.user_id,
                    "created": a.created.isoformat() if a.created else None,
                    "submitted": (a.submitted or a.created or datetime.now(UTC)).isoformat(),
                    "tasks": [(t.input_values or {})["iris_id"] for t in a.tasks],
                    "honeypot": [bool(t.known_solutions) for t in a.tasks],
                    "labels": [int(bool(s.output_values["result"])) for s in a.solutions],
                    "reward": float(a.reward) if a.reward is not None else None,
                }
                fh.write(json.dumps(rec) + "\n")
                fh.flush()
                records[a.id] = rec
        return records

    @staticmethod
    def _answers(records: dict[str, dict[str, Any]]) -> pl.DataFrame:
        rows: dict[str, list[Any]] = {k: [] for k in tables.ANSWERS}
        for rec in records.values():
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

    def status(self, inputs: CampaignInputs) -> CampaignStatus:
        state = self._load_state()
        if not state.get("main_pool_id"):
            return CampaignStatus(backend=self.name, state="not-launched", tasks_total=inputs.tasks.height)
        pool = self.client.get_pool(state["main_pool_id"])
        answers = self._answers(self._log())
        done = tasks_done(answers, overlap=inputs.spec.overlap)
        bans = quality.evaluate(answers, inputs.gold, inputs.spec.rules, now=datetime.now(UTC))
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
            },
        )

    def collect(self, inputs: CampaignInputs) -> Collected:
        state = self._load_state()
        if not state.get("main_pool_id"):
            raise CrowdError("toloka backend: nothing launched yet; run `iris crowd launch` first")
        answers = self._answers(self._fetch(state))
        # Toloka enforces the rules itself; iris re-applies them to report who was banned and why.
        bans = quality.evaluate(answers, inputs.gold, inputs.spec.rules, now=datetime.now(UTC))
        return Collected(answers=answers, bans=bans)

    def stop(self, inputs: CampaignInputs) -> CampaignStatus:
        state = self._load_state()
        for kind in ("main_pool_id", "exam_pool_id"):
            if state.get(kind):
                self.client.close_pool(state[kind])
        if state.get("training_id"):
            self.client.close_training(state["training_id"])
        return self.status(inputs)
