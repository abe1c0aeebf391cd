"""The Toloka backend without the service.

Two kinds of checks: the exact toloka-kit objects a launch would send (their unstructured,
wire form), and the request/response flow against :class:`FakeToloka`, a small HTTP server
on 127.0.0.1 that models the parts of Toloka's API iris uses *strictly*: it refuses the
configurations Toloka refuses, serves pages the way Toloka's mixer does, and leaves pages
active, expired, submitted-but-not-yet-accepted, as a real pool has them. Each rule of the
fake names the toloka-kit source or Toloka documentation page it comes from, and is written
here independently of :mod:`iris.crowd.platform` (the model under test).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import warnings
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np
import polars as pl
import pytest

pytest.importorskip("toloka.client", reason="the toloka extra (toloka-kit) is not installed")

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import toloka.client as tk
    from toloka.client._converter import unstructure
    from toloka.client.exceptions import ApiError

from iris import tables
from iris.config import Settings, load_settings
from iris.crowd import platform, quality
from iris.crowd.backends.base import CampaignInputs
from iris.crowd.backends.simulated import SimulatedBackend, simulate
from iris.crowd.backends.toloka import (
    TolokaBackend,
    build_objects,
    campaign_key,
    operation_id,
    run_key,
)
from iris.crowd.spec import CampaignSpec, FastRule, split_ground_truth
from iris.errors import CrowdError

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def _error(code: str, message: str) -> dict[str, Any]:
    return {"code": code, "message": message}


class FakeToloka:
    """An in-process, strict stand-in for the parts of Toloka's REST API iris uses.

    Refuses (400 VALIDATION_ERROR / 409 CONFLICT_STATE):
      * a regular pool paying under $0.005 per task suite (toloka-kit ``client/pool/__init__.py``,
        ``Pool.reward_per_assignment``);
      * a RejectAllAssignments rule on a pool with automatic acceptance ("available for pools
        with non-automatic acceptance", toloka-kit ``client/actions.py``);
      * opening a pool whose control tasks cannot fill one task suite ("there must be enough
        control and training tasks to create a task suite", ``client/pool/mixer_config.py``);
      * opening, or uploading to, an archived pool ("You can't open archived pools",
        ``TolokaClient.archive_pool``); creating pools in an archived project;
      * archiving a pool that is not closed ("Only closed pools can be archived") and a
        project whose pools are not all archived (``TolokaClient.archive_project``);
      * a repeated operation id (OPERATION_ALREADY_EXISTS, which toloka-kit turns into the old
        operation: ``TolokaClient._async_create_objects_idempotent``).

    Serves pages (:meth:`take`) as Toloka's mixer does: ``real_tasks_count`` real tasks with
    overlap left that the worker has not done, in creation order or at random as
    ``mix_tasks_in_creation_order`` says (``MixerConfig``), plus ``golden_tasks_count``
    control tasks the worker has never seen; no page when either runs out. A short last page is
    served (``force_last_assignment`` defaults to True). Pages can expire (their tasks go back),
    be skipped, or be submitted; a submitted page on an auto-accept pool stays SUBMITTED until
    :meth:`auto_accept` runs, as on Toloka, where acceptance follows submission.
    """

    def __init__(self, seed: int = 0) -> None:
        self.objects: dict[str, dict[str, dict[str, Any]]] = {
            k: {} for k in ("projects", "skills", "trainings", "pools", "tasks", "operations", "assignments")
        }
        self.creates: dict[str, int] = {k: 0 for k in self.objects}
        self.requests: list[tuple[str, str]] = []
        self.refused: list[str] = []
        self.rng = np.random.default_rng(seed)
        self._ids = itertools.count(1000)
        self._clock = itertools.count()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: Any = None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> Any:
                n = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(n)) if n else None

            def _answer(self, method: str, call: Any, *args: Any) -> None:
                fake.requests.append((method, self.path))
                code, body = call(urlparse(self.path), *args)
                if code >= 400 and body:
                    fake.refused.append(body["message"])
                self._send(code, body)

            def do_GET(self) -> None:
                self._answer("GET", fake.get)

            def do_POST(self) -> None:
                self._answer("POST", fake.post, self._body())

            def do_PATCH(self) -> None:
                self._answer("PATCH", fake.patch, self._body())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.lock = threading.Lock()

    def __enter__(self) -> FakeToloka:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def client(self) -> tk.TolokaClient:
        return tk.TolokaClient("fake-token", url=self.url, retries=0, timeout=5.0)

    # -- API

    def _new_id(self) -> str:
        return str(next(self._ids))

    def _operation(self, kind: str, parameters: dict[str, Any], op_id: str | None = None) -> dict[str, Any]:
        op = {
            "id": op_id or self._new_id(),
            "type": kind,
            "status": "SUCCESS",
            "submitted": NOW.isoformat(),
            "started": NOW.isoformat(),
            "finished": NOW.isoformat(),
            "parameters": parameters,
            "details": {},
        }
        self.objects["operations"][op["id"]] = op
        return op

    def _search(self, kind: str, query: dict[str, list[str]], match: dict[str, str]) -> dict[str, Any]:
        items = sorted(self.objects[kind].values(), key=lambda o: int(o["id"]))
        for field, param in match.items():
            if param in query:
                allowed = set(query[param][0].split(","))
                items = [o for o in items if str(o.get(field)) in allowed]
        if "id_gt" in query:
            items = [o for o in items if int(o["id"]) > int(query["id_gt"][0])]
        limit = int(query.get("limit", ["50"])[0])
        return {"items": items[:limit], "has_more": len(items) > limit}

    def get(self, url: Any) -> tuple[int, Any]:
        parts = url.path.removeprefix("/api/v1/").split("/")
        query = parse_qs(url.query)
        kind = parts[0]
        with self.lock:
            if len(parts) == 2:
                obj = self.objects.get(kind, {}).get(parts[1])
                return (200, obj) if obj else (404, _error("DOES_NOT_EXIST", f"no {kind} {parts[1]}"))
            match = {
                "projects": {"status": "status"},
                "skills": {"name": "name"},
                "trainings": {"project_id": "project_id", "status": "status"},
                "pools": {"project_id": "project_id", "status": "status"},
                "tasks": {"pool_id": "pool_id"},
                "assignments": {"pool_id": "pool_id", "status": "status", "user_id": "user_id"},
            }[kind]
            return 200, self._search(kind, query, match)

    def _check_pool(self, body: dict[str, Any]) -> str | None:
        project = self.objects["projects"].get(str(body.get("project_id")))
        if project is None:
            return f"project {body.get('project_id')} does not exist"
        if project["status"] == "ARCHIVED":
            return f"project {project['id']} is archived"
        if body.get("reward_per_assignment", 0) < 0.005:
            return f"reward_per_assignment {body.get('reward_per_assignment')} < 0.005 for a REGULAR pool"
        configs = (body.get("quality_control") or {}).get("configs") or []
        rejects = [
            r for c in configs for r in c.get("rules", []) if r["action"]["type"] == "REJECT_ALL_ASSIGNMENTS"
        ]
        if rejects and body.get("auto_accept_solutions", False):
            return "REJECT_ALL_ASSIGNMENTS needs a pool with non-automatic acceptance"
        return None

    def _open(self, kind: str, obj: dict[str, Any]) -> str | None:
        if obj["status"] == "ARCHIVED":
            return f"{kind} {obj['id']} is archived and cannot be opened"
        tasks = [t for t in self.objects["tasks"].values() if t["pool_id"] == obj["id"]]
        mixer = obj.get("mixer_config") or {}
        golden = [t for t in tasks if t.get("known_solutions")]
        if kind == "pools" and len(golden) < mixer.get("golden_tasks_count", 0):
            return (
                f"pool {obj['id']} has {len(golden)} control tasks, a task suite needs "
                f"{mixer.get('golden_tasks_count')}"
            )
        if not tasks:
            return f"{kind} {obj['id']} has no tasks"
        return None

    def post(self, url: Any, body: Any) -> tuple[int, Any]:
        parts = url.path.removeprefix("/api/v1/").split("/")
        query = parse_qs(url.query)
        kind = parts[0]
        with self.lock:
            if len(parts) == 3:
                obj = self.objects[kind][parts[1]]
                action = parts[2]
                if action == "archive":
                    if obj["status"] == "ARCHIVED":
                        return 204, None
                    if kind in {"pools", "trainings"} and obj["status"] != "CLOSED":
                        return 409, _error("CONFLICT_STATE", f"only closed {kind} can be archived")
                    if kind == "projects":
                        children = [
                            p
                            for k in ("pools", "trainings")
                            for p in self.objects[k].values()
                            if p["project_id"] == obj["id"] and p["status"] != "ARCHIVED"
                        ]
                        if children:
                            return 409, _error("CONFLICT_STATE", "archive every pool before the project")
                    obj["status"] = "ARCHIVED"
                elif action == "open":
                    refused = self._open(kind, obj)
                    if refused:
                        return 409, _error("CONFLICT_STATE", refused)
                    obj["status"] = "OPEN"
                else:
                    if obj["status"] == "CLOSED":
                        return 204, None
                    obj["status"] = "CLOSED"
                    obj["last_close_reason"] = "MANUAL"
                prefix = {"pools": "POOL", "trainings": "TRAINING", "projects": "PROJECT"}[kind]
                key = {"pools": "pool_id", "trainings": "training_id", "projects": "project_id"}[kind]
                return 202, self._operation(f"{prefix}.{action.upper()}", {key: parts[1]})
            if kind == "tasks":
                op_id = query["operation_id"][0]
                if op_id in self.objects["operations"]:
                    return 409, _error("OPERATION_ALREADY_EXISTS", f"operation {op_id} exists")
                for task in body:
                    pool = self.objects["pools"].get(task["pool_id"]) or self.objects["trainings"].get(
                        task["pool_id"]
                    )
                    if pool is None or pool["status"] == "ARCHIVED":
                        return 400, _error("VALIDATION_ERROR", f"pool {task['pool_id']} takes no tasks")
                for task in body:
                    task = {**task, "id": self._new_id(), "created": NOW.isoformat()}
                    task.pop("__item_idx", None)
                    self.objects["tasks"][task["id"]] = task
                    self.creates["tasks"] += 1
                params = {"skip_invalid_items": False, "allow_defaults": True, "open_pool": False}
                return 202, self._operation("TASK.BATCH_CREATE", params, op_id=op_id)
            if kind == "pools":
                refused = self._check_pool(body)
                if refused:
                    return 400, _error("VALIDATION_ERROR", refused)
            obj = {**body, "id": self._new_id(), "created": NOW.isoformat()}
            if kind == "projects":
                obj["status"] = "ACTIVE"
            if kind in {"pools", "trainings"}:
                obj["status"] = "CLOSED"
                obj["type"] = "REGULAR" if kind == "pools" else None
            self.objects[kind][obj["id"]] = obj
            self.creates[kind] += 1
            return 201, obj

    def patch(self, url: Any, body: Any) -> tuple[int, Any]:
        parts = url.path.removeprefix("/api/v1/").split("/")
        with self.lock:
            a = self.objects["assignments"].get(parts[1])
            if a is None:
                return 404, _error("DOES_NOT_EXIST", f"no assignment {parts[1]}")
            pool = self.objects["pools"][a["pool_id"]]
            # Only a submitted page of a pool under manual review can be accepted or rejected.
            if a["status"] != "SUBMITTED" or pool.get("auto_accept_solutions"):
                return 409, _error("CONFLICT_STATE", f"assignment {a['id']} is {a['status']}")
            a["status"] = body["status"]
            a["public_comment"] = body.get("public_comment")
            return 200, a

    # -- what workers would do

    def _seen(self, pool_id: str, worker: str) -> set[str]:
        return {
            t["id"]
            for a in self.objects["assignments"].values()
            if a["pool_id"] == pool_id and a["user_id"] == worker
            for t in a["tasks"]
        }

    def _taken(self, task_id: str) -> int:
        return sum(
            1
            for a in self.objects["assignments"].values()
            if a["status"] not in {"EXPIRED", "SKIPPED"}
            for t in a["tasks"]
            if t["id"] == task_id
        )

    def take(self, pool_id: str, worker: str) -> str | None:
        """The worker asks for a page: the id of the assignment Toloka gives, or None."""
        with self.lock:
            pool = self.objects["pools"][pool_id]
            if pool["status"] != "OPEN":
                return None
            mixer = pool["mixer_config"]
            overlap = pool["defaults"]["default_overlap_for_new_tasks"]
            seen = self._seen(pool_id, worker)
            tasks = sorted(
                (t for t in self.objects["tasks"].values() if t["pool_id"] == pool_id),
                key=lambda t: int(t["id"]),
            )
            golden = [t for t in tasks if t.get("known_solutions") and t["id"] not in seen]
            real = [
                t
                for t in tasks
                if not t.get("known_solutions") and t["id"] not in seen and self._taken(t["id"]) < overlap
            ]
            n_golden, n_real = mixer["golden_tasks_count"], mixer["real_tasks_count"]
            if len(golden) < n_golden or (n_real and not real):
                return None
            if not mixer.get("mix_tasks_in_creation_order") and len(real) > n_real:
                real = [real[i] for i in sorted(self.rng.choice(len(real), n_real, replace=False))]
            page = real[:n_real] + [
                golden[i] for i in sorted(self.rng.choice(len(golden), n_golden, replace=False))
            ]
            if mixer.get("shuffle_tasks_in_task_suite"):
                page = [page[i] for i in self.rng.permutation(len(page))]
            created = NOW + timedelta(hours=next(self._clock))
            aid = self._new_id()
            self.objects["assignments"][aid] = {
                "id": aid,
                "task_suite_id": self._new_id(),
                "pool_id": pool_id,
                "user_id": worker,
                "status": "ACTIVE",
                "reward": pool["reward_per_assignment"],
                "tasks": page,
                "mixed": True,
                "created": created.isoformat(),
            }
            return aid

    def submit(self, aid: str, *, answer: Any, seconds: float = 120.0) -> None:
        with self.lock:
            a = self.objects["assignments"][aid]
            created = datetime.fromisoformat(a["created"])
            a["status"] = "SUBMITTED"
            a["solutions"] = [{"output_values": {"result": answer(t)}} for t in a["tasks"]]
            a["submitted"] = (created + timedelta(seconds=seconds)).isoformat()

    def expire(self, aid: str) -> None:
        """The worker let the page's time run out: its tasks go back to the pool."""
        with self.lock:
            self.objects["assignments"][aid]["status"] = "EXPIRED"

    def auto_accept(self) -> int:
        """Toloka accepts the submitted pages of auto-accept pools (some time after submission)."""
        with self.lock:
            n = 0
            for a in self.objects["assignments"].values():
                if a["status"] == "SUBMITTED" and self.objects["pools"][a["pool_id"]].get(
                    "auto_accept_solutions"
                ):
                    a["status"] = "ACCEPTED"
                    a["accepted"] = a["submitted"]
                    n += 1
            return n

    def work(self, pool_id: str, worker: str, *, answer: Any, seconds: float = 120.0) -> str | None:
        """One worker takes and submits one page; None when Toloka has no page for them."""
        aid = self.take(pool_id, worker)
        if aid is not None:
            self.submit(aid, answer=answer, seconds=seconds)
        return aid

    def pool_tasks(self, pool_id: str) -> list[dict[str, Any]]:
        return [t for t in self.objects["tasks"].values() if t["pool_id"] == pool_id]


def _inputs(
    tmp_path: Path, settings: Settings, *, n_tasks: int = 8, n_gt: int = 60, priority: str = "id"
) -> CampaignInputs:
    ids = list(range(1, n_gt + n_tasks + 1))
    images = pl.DataFrame(
        {
            "id": ids,
            "source": [f"https://img.example/{i}.jpg" for i in ids],
            "path": [f"images/{i}.png" for i in ids],
            "split": ["gt"] * n_gt + ["pool"] * n_tasks,
            "label": [i % 2 for i in ids[:n_gt]] + [None] * n_tasks,
            "width": 8,
            "height": 8,
            "sha256": "",
        }
    ).cast(tables.IMAGES)  # type: ignore[arg-type]
    spec = CampaignSpec.from_settings(settings)
    tasks = images.filter(pl.col("split") == "pool").select("id", "source", "path")
    rank = pl.int_range(pl.len()) if priority == "id" else pl.int_range(pl.len()).reverse()
    tasks = tasks.with_columns(priority=rank.cast(pl.Int32))
    return CampaignInputs(
        spec=spec, tasks=tasks, ground_truth=split_ground_truth(images, spec), root=tmp_path
    )


WINDOW_RULES: dict[str, Any] = {
    "min_seconds_per_page": 20.0,
    "min_honeypot_accuracy": 0.6,
    "honeypot_window": 5,
    "min_majority_agreement": 0.6,
    "min_skill": 0.0,
}
"""Every Toloka rule on, at the values these tests of Toloka's mechanics were written for (the
defaults switch the majority rule off and judge by skill, which iris applies, not Toloka)."""


def _settings(**crowd: Any) -> Settings:
    base = load_settings(None, environ={})
    return replace(base, crowd=replace(base.crowd, **(WINDOW_RULES | crowd)))


@pytest.fixture
def settings() -> Settings:
    return _settings()


def test_default_rules_on_toloka_leave_the_majority_vote_out(tmp_path: Path) -> None:
    """The calibrated defaults: fast 5 s, 5 of the last 10 honeypots, no majority vote."""
    main = unstructure(build_objects(_inputs(tmp_path, load_settings(None, environ={})), now=NOW).main_pool)
    configs = main["quality_control"]["configs"]
    assert [c["collector_config"]["type"] for c in configs] == [
        "ASSIGNMENT_SUBMIT_TIME",
        "GOLDEN_SET",
        "USERS_ASSESSMENT",
    ]
    assert configs[0]["collector_config"]["parameters"]["fast_submit_threshold_seconds"] == 5
    assert configs[1]["rules"][0]["conditions"] == [
        {"key": "total_answers_count", "operator": "GTE", "value": 10},
        {"key": "golden_set_correct_answers_rate", "operator": "LT", "value": 50.0},
    ]


def _truth(inputs: CampaignInputs) -> dict[str, bool]:
    return {str(r["id"]): bool(r["label"]) for r in inputs.ground_truth.iter_rows(named=True)}


def _launched(
    fake: FakeToloka, tmp_path: Path, settings: Settings, inputs: CampaignInputs
) -> tuple[TolokaBackend, dict[str, Any]]:
    backend = TolokaBackend(settings=settings, state_dir=tmp_path / "toloka", client=fake.client())
    backend.launch(inputs)
    return backend, json.loads((tmp_path / "toloka" / "state.json").read_text())


# ---------------------------------------------------------------- the objects


def test_objects_are_what_toloka_expects(tmp_path: Path, settings: Settings) -> None:
    inputs = _inputs(tmp_path, settings)
    ids = {
        "project_id": "p1",
        "skill_id": "s1",
        "training_id": "t1",
        "exam_pool_id": "e1",
        "main_pool_id": "m1",
    }
    objects = build_objects(inputs, ids=ids, now=NOW)
    project = unstructure(objects.project)
    assert project["task_spec"]["input_spec"] == {
        "image": {"type": "url", "required": True, "hidden": False},
        "iris_id": {"type": "string", "required": True, "hidden": True},
    }
    assert project["task_spec"]["output_spec"] == {
        "result": {"type": "boolean", "required": True, "hidden": False}
    }
    assert "conifer" in project["public_instructions"] and "deciduous" in project["public_instructions"]
    assert project["private_comment"] == campaign_key(inputs)

    main = unstructure(objects.main_pool)
    assert main["mixer_config"] == {
        "real_tasks_count": 49,
        "golden_tasks_count": 1,
        "training_tasks_count": 0,
        "mix_tasks_in_creation_order": True,
        "shuffle_tasks_in_task_suite": True,
    }
    assert main["defaults"] == {"default_overlap_for_new_task_suites": 5, "default_overlap_for_new_tasks": 5}
    assert main["filter"] == {
        "and": [{"or": [{"category": "skill", "key": "s1", "operator": "GTE", "value": 80}]}]
    }
    assert main["reward_per_assignment"] == 0.05
    assert main["auto_accept_solutions"] is True
    configs = main["quality_control"]["configs"]
    assert [c["collector_config"]["type"] for c in configs] == [
        "ASSIGNMENT_SUBMIT_TIME",
        "GOLDEN_SET",
        "MAJORITY_VOTE",
        "USERS_ASSESSMENT",
    ]
    assert configs[0]["collector_config"]["parameters"] == {
        "fast_submit_threshold_seconds": 20,
        "history_size": 1,
    }
    assert configs[0]["rules"][0]["action"] == {
        "type": "RESTRICTION_V2",
        "parameters": {
            "scope": "PROJECT",
            "duration": 1,
            "duration_unit": "DAYS",
            "private_comment": "iris: fast",
        },
    }
    assert configs[1]["rules"][0]["conditions"] == [
        {"key": "total_answers_count", "operator": "GTE", "value": 5},
        {"key": "golden_set_correct_answers_rate", "operator": "LT", "value": 60.0},
    ]
    assert configs[2]["collector_config"]["parameters"] == {"answer_threshold": 3, "history_size": 20}  # of 5
    assert configs[3]["rules"][0]["action"] == {
        "type": "CHANGE_OVERLAP",
        "parameters": {"delta": 1, "open_pool": True},
    }

    exam = unstructure(objects.exam_pool)
    assert exam["mixer_config"]["golden_tasks_count"] == 20
    assert exam["quality_control"]["training_requirement"] == {
        "training_pool_id": "t1",
        "training_passing_skill_value": 50,
    }
    exam_rule = exam["quality_control"]["configs"][0]["rules"][0]
    assert exam_rule["action"] == {
        "type": "SET_SKILL_FROM_OUTPUT_FIELD",
        "parameters": {"skill_id": "s1", "from_field": "correct_answers_rate"},
    }

    training = unstructure(objects.training_tasks[0])
    label = inputs.role("training")["label"][0]
    assert training["pool_id"] == "t1"
    assert training["known_solutions"] == [
        {"output_values": {"result": bool(label)}, "correctness_weight": 1}
    ]
    assert training["message_on_unknown_solution"] == f"This is {'conifer' if label else 'deciduous'}."
    real = unstructure(objects.real_tasks[0])
    first = inputs.tasks.row(0, named=True)
    assert real == {"pool_id": "m1", "input_values": {"image": first["source"], "iris_id": str(first["id"])}}
    assert len(objects.honeypot_tasks) == inputs.role("honeypot").height == 10
    assert all(unstructure(t)["infinite_overlap"] for t in objects.honeypot_tasks)


def test_operation_ids_depend_on_the_pool() -> None:
    assert operation_id("iris-x", "11", "real", 0) == operation_id("iris-x", "11", "real", 0)
    assert operation_id("iris-x", "11", "real", 0) != operation_id("iris-x", "11", "real", 1)
    assert operation_id("iris-x", "11", "real", 0) != operation_id("iris-x", "12", "real", 0)
    assert operation_id("iris-x", "11", "real", 0) != operation_id("iris-y", "11", "real", 0)
    assert run_key("iris-x", 0) == "iris-x" and run_key("iris-x", 2) == "iris-x.2"


def test_non_url_sources_are_refused(tmp_path: Path, settings: Settings) -> None:
    inputs = _inputs(tmp_path, settings)
    local = CampaignInputs(
        spec=inputs.spec,
        tasks=inputs.tasks.with_columns(source=pl.lit("images/1.png")),
        ground_truth=inputs.ground_truth,
        root=tmp_path,
    )
    backend = TolokaBackend(settings=settings, state_dir=tmp_path / "toloka")
    with pytest.raises(CrowdError, match=r"8 images have no http\(s\) URL"):
        backend.plan(local)


def test_no_token_is_a_clear_error(tmp_path: Path, settings: Settings) -> None:
    backend = TolokaBackend(settings=settings, state_dir=tmp_path / "toloka")
    with pytest.raises(CrowdError, match="IRIS_CROWD_TOLOKA_TOKEN"):
        backend.launch(_inputs(tmp_path, settings))


# ---------------------------------------------------------------- the flow


def test_launch_flow_is_idempotent_and_collects(tmp_path: Path, settings: Settings) -> None:
    inputs = _inputs(tmp_path, settings)
    with FakeToloka() as fake:
        client = fake.client()
        state_dir = tmp_path / "toloka"
        backend = TolokaBackend(settings=settings, state_dir=state_dir, client=client)
        status = backend.launch(inputs)
        assert status.state == "running"
        assert fake.creates == {
            "projects": 1,
            "skills": 1,
            "trainings": 1,
            "pools": 2,
            "tasks": 30 + 20 + 10 + 8,
            "operations": 0,
            "assignments": 0,
        }
        state = json.loads((state_dir / "state.json").read_text())
        main = fake.objects["pools"][state["main_pool_id"]]
        assert main["status"] == "OPEN" and main["mixer_config"]["real_tasks_count"] == 49
        assert fake.objects["trainings"][state["training_id"]]["status"] == "OPEN"
        assert main["filter"]["and"][0]["or"][0]["key"] == state["skill_id"]
        key = campaign_key(inputs)
        assert state["uploaded"]["real:0"] == str(operation_id(key, state["main_pool_id"], "real", 0))

        # A re-run with the state file creates nothing.
        before = dict(fake.creates)
        backend.launch(inputs)
        assert fake.creates == before

        # A launch killed before it saved anything: objects are found by the campaign key,
        # and uploads with the same operation ids are refused by the service as duplicates.
        (state_dir / "state.json").unlink()
        fresh = TolokaBackend(settings=settings, state_dir=state_dir, client=client)
        fresh.launch(inputs)
        assert fake.creates == before
        assert any(p.startswith("/api/v1/projects?") for _, p in fake.requests)

        # Workers answer: a careful one and a spammer; collect twice, count once.
        truth = _truth(inputs)
        careful = fake.work(
            state["main_pool_id"], "careful", answer=lambda t: truth.get(t["input_values"]["iris_id"], True)
        )
        fake.work(state["main_pool_id"], "fast", answer=lambda t: False, seconds=1.0)
        assert careful is not None
        collected = fresh.collect(inputs)
        answers = collected.answers
        assert answers.height == 18  # 8 real tasks + 1 honeypot on each page
        assert answers.filter(pl.col("is_honeypot")).height == 2
        assert set(answers["worker"]) == {"careful", "fast"}
        assert answers.filter(pl.col("worker") == "fast")["duration"].unique().to_list() == [1.0]
        assert collected.bans.filter(pl.col("rule") == "fast")["worker"].to_list() == ["fast"]
        fake.auto_accept()
        again = fresh.collect(inputs)
        assert again.answers.height == 18

        stopped = fresh.stop(inputs)
        assert stopped.state == "stopped"
        assert fake.objects["pools"][state["main_pool_id"]]["status"] == "CLOSED"


def test_expired_and_active_pages_hold_no_answers(tmp_path: Path, settings: Settings) -> None:
    inputs = _inputs(tmp_path, settings, n_tasks=60)
    with FakeToloka() as fake:
        backend, state = _launched(fake, tmp_path, settings, inputs)
        pool = state["main_pool_id"]
        truth = _truth(inputs)
        expired = fake.take(pool, "a")
        assert expired is not None
        fake.expire(expired)
        active = fake.take(pool, "b")  # still being worked on
        done = fake.work(pool, "c", answer=lambda t: truth.get(t["input_values"]["iris_id"], True))
        assert active and done
        answers = backend.collect(inputs).answers
        assert set(answers["page"]) == {done}
        # The expired page's tasks went back: c's page (49 real tasks) started from the first task.
        first = fake.objects["assignments"][done]["tasks"]
        assert min(int(t["input_values"]["iris_id"]) for t in first if not t.get("known_solutions")) == 61


# ---------------------------------------------------------------- the nine cases of issue 14


def test_case1_reject_banned_needs_manual_review(tmp_path: Path) -> None:
    """Rejecting a banned worker's pages works only with non-automatic acceptance."""
    settings = _settings(reject_banned=True)
    inputs = _inputs(tmp_path, settings, n_tasks=100)
    main = unstructure(build_objects(inputs, now=NOW).main_pool)
    actions = {
        c["collector_config"]["type"]: [r["action"]["type"] for r in c["rules"]]
        for c in main["quality_control"]["configs"]
    }
    for collector in ("ASSIGNMENT_SUBMIT_TIME", "GOLDEN_SET", "MAJORITY_VOTE"):
        assert actions[collector] == ["RESTRICTION_V2", "REJECT_ALL_ASSIGNMENTS"]
    assert main["auto_accept_solutions"] is False

    with FakeToloka() as fake:
        # The old configuration (reject rules on an auto-accept pool) is refused by the fake.
        client = fake.client()
        project = client.create_project(build_objects(inputs, now=NOW).project)
        old = build_objects(inputs, ids={"project_id": str(project.id)}, now=NOW).main_pool
        old.auto_accept_solutions = True
        with pytest.raises(ApiError, match="non-automatic acceptance"):
            client.create_pool(old)

        backend, state = _launched(fake, tmp_path, settings, inputs)
        pool = state["main_pool_id"]
        truth = _truth(inputs)
        good = fake.work(pool, "careful", answer=lambda t: truth.get(t["input_values"]["iris_id"], True))
        fast = fake.work(pool, "fast", answer=lambda t: False, seconds=2.0)
        assert good and fast
        collected = backend.collect(inputs)
        assert collected.bans["worker"].to_list() == ["fast"]
        assert fake.objects["assignments"][fast]["status"] == "REJECTED"
        assert fake.objects["assignments"][good]["status"] == "ACCEPTED"
        assert set(collected.answers["worker"]) == {"careful"}
        assert backend.status(inputs).cost == pytest.approx(settings.crowd.price_per_page)


def test_case1_without_reject_banned_pages_of_banned_workers_are_kept(
    tmp_path: Path, settings: Settings
) -> None:
    """On an auto-accept pool Toloka pays a banned worker's pages; iris keeps and reports them."""
    inputs = _inputs(tmp_path, settings, n_tasks=100)
    with FakeToloka() as fake:
        backend, state = _launched(fake, tmp_path, settings, inputs)
        fast = fake.work(state["main_pool_id"], "fast", answer=lambda t: False, seconds=2.0)
        fake.auto_accept()
        collected = backend.collect(inputs)
        assert fake.objects["assignments"][fast]["status"] == "ACCEPTED"
        assert set(collected.answers["worker"]) == {"fast"}
        assert collected.bans["worker"].to_list() == ["fast"]


def test_case2_relaunch_after_archive_is_refused_and_restart_fills_new_pools(
    tmp_path: Path, settings: Settings
) -> None:
    inputs = _inputs(tmp_path, settings, n_tasks=20)
    with FakeToloka() as fake:
        client = fake.client()
        backend, old = _launched(fake, tmp_path, settings, inputs)
        # The requester archives the campaign on Toloka (pools first, then the project).
        for kind, close, archive in (
            ("main_pool_id", client.close_pool, client.archive_pool),
            ("exam_pool_id", client.close_pool, client.archive_pool),
            ("training_id", client.close_training, client.archive_training),
        ):
            close(old[kind])
            archive(old[kind])
        client.archive_project(old["project_id"])
        before = dict(fake.creates)

        # With the state file: an archived run cannot be resumed, and nothing is created.
        with pytest.raises(CrowdError, match=r"archived on Toloka.*--restart"):
            backend.launch(inputs)
        # Without it (a new machine, a lost work directory): the archived run is still found.
        (tmp_path / "toloka" / "state.json").unlink()
        with pytest.raises(CrowdError, match="archived on Toloka"):
            TolokaBackend(settings=settings, state_dir=tmp_path / "toloka", client=client).launch(inputs)
        assert fake.creates == before

        # --restart: a new run whose pools hold their tasks.
        fresh = TolokaBackend(settings=settings, state_dir=tmp_path / "toloka", client=client)
        fresh.retire(inputs)
        fresh.launch(inputs)
        new = json.loads((tmp_path / "toloka" / "state.json").read_text())
        assert new["key"] == campaign_key(inputs) + ".1" and new["project_id"] != old["project_id"]
        main = fake.pool_tasks(new["main_pool_id"])
        assert len([t for t in main if not t.get("known_solutions")]) == 20
        assert len([t for t in main if t.get("known_solutions")]) == 10
        assert len(fake.pool_tasks(new["exam_pool_id"])) == 20
        assert len(fake.pool_tasks(new["training_id"])) == 30
        assert fake.objects["pools"][new["main_pool_id"]]["status"] == "OPEN"
        assert fake.objects["projects"][old["project_id"]]["status"] == "ARCHIVED"


def test_case2_restart_of_an_active_campaign_starts_a_new_one(tmp_path: Path, settings: Settings) -> None:
    inputs = _inputs(tmp_path, settings, n_tasks=20)
    with FakeToloka() as fake:
        client = fake.client()
        _, old = _launched(fake, tmp_path, settings, inputs)
        # A restart on a machine that lost its state must not resume the old run either.
        (tmp_path / "toloka" / "state.json").unlink()
        backend = TolokaBackend(settings=settings, state_dir=tmp_path / "toloka", client=client)
        backend.retire(inputs)
        for kind in ("main_pool_id", "exam_pool_id"):
            assert fake.objects["pools"][old[kind]]["status"] == "ARCHIVED"
        assert fake.objects["trainings"][old["training_id"]]["status"] == "ARCHIVED"
        assert fake.objects["projects"][old["project_id"]]["status"] == "ARCHIVED"
        backend.launch(inputs)
        new = json.loads((tmp_path / "toloka" / "state.json").read_text())
        assert new["project_id"] != old["project_id"] and new["main_pool_id"] != old["main_pool_id"]
        assert fake.creates["projects"] == 2 and fake.creates["pools"] == 4
        assert len(fake.pool_tasks(new["main_pool_id"])) == 30
        assert fake.objects["pools"][new["main_pool_id"]]["status"] == "OPEN"


def _toloka_workdir(tmp_path: Path, *, n_gt: int = 60, n_tasks: int = 20, **crowd: Any) -> Any:
    """A work directory with images and a shortlist, configured for the toloka backend."""
    from iris.config import render_toml
    from iris.workdir import init_workdir

    wd = init_workdir(tmp_path / "work")
    ids = list(range(1, n_gt + n_tasks + 1))
    tables.write(
        pl.DataFrame(
            {
                "id": ids,
                "source": [f"https://img.example/{i}.png" for i in ids],
                "path": [f"images/{i}.png" for i in ids],
                "split": ["gt"] * n_gt + ["pool"] * n_tasks,
                "label": [i % 2 for i in ids[:n_gt]] + [None] * n_tasks,
                "width": 8,
                "height": 8,
                "sha256": "",
            }
        ).cast(tables.IMAGES),  # type: ignore[arg-type]
        wd.table("images"),
    )
    tables.write(
        pl.DataFrame(
            {
                "id": ids[n_gt:],
                "reason": "problematic",
                "problematic_neighbours": 0,
                "priority": list(range(n_tasks)),
            }
        ).cast(tables.SHORTLIST),  # type: ignore[arg-type]
        wd.table("shortlist"),
    )
    s = wd.settings()
    wd.config.write_text(render_toml(replace(s, crowd=replace(s.crowd, backend="toloka", **crowd))))
    return wd


def _cli(wd: Any, *args: str) -> Any:
    from click.testing import CliRunner

    from iris.cli import main as cli

    result = CliRunner().invoke(cli, ["--workdir", str(wd.root), "crowd", *args])
    assert result.exit_code == 0, result.output
    return result


def test_cli_plan_warns_when_honeypots_run_out(tmp_path: Path) -> None:
    wd = _toloka_workdir(tmp_path, n_gt=60, n_tasks=500, pages_per_worker=12)
    out = _cli(wd, "plan").output
    assert re.search(r"pages per worker \(at most\) +10 ", out)
    assert "warning: 10 honeypots at 1 per page let each worker do at most 10 page(s)" in out
    assert "62 labeled ground-truth images" in out and "2 more than the 60 there are" in out
    assert not (wd.crowd / "toloka").exists()  # nothing created, no token needed


def test_case2_launch_restart_through_the_cli(tmp_path: Path) -> None:
    with FakeToloka() as fake:
        wd = _toloka_workdir(tmp_path, toloka_url=fake.url, toloka_token="t")

        def run(*args: str) -> Any:
            return _cli(wd, *args)

        assert "archive" in run("launch", "--help").output
        run("launch", "--json")
        first = {p["id"] for p in fake.objects["pools"].values()}
        run("launch", "--json")  # a plain re-launch resumes: nothing new
        assert {p["id"] for p in fake.objects["pools"].values()} == first
        run("launch", "--restart", "--json")
        pools = fake.objects["pools"].values()
        assert {p["id"] for p in pools if p["status"] == "ARCHIVED"} == first
        open_pools = [p for p in pools if p["status"] == "OPEN"]
        assert len(open_pools) == 2 and all(fake.pool_tasks(p["id"]) for p in open_pools)


def test_case3_honeypots_run_out_per_worker(tmp_path: Path, settings: Settings) -> None:
    """A worker gets one page per honeypot at most, and never the same control task twice."""
    inputs = _inputs(tmp_path, settings, n_tasks=2000)
    backend = TolokaBackend(settings=settings, state_dir=tmp_path / "toloka")
    plan = backend.plan(inputs)
    assert plan.max_pages_per_worker == 10
    assert any("at most 10 page(s)" in w and "crowd.pages_per_worker plans 12" in w for w in plan.warnings)
    with FakeToloka() as fake:
        _, state = _launched(fake, tmp_path, settings, inputs)
        pages = list(iter(lambda: fake.work(state["main_pool_id"], "eager", answer=lambda t: True), None))
        assert len(pages) == plan.max_pages_per_worker
        golden = [
            t["id"]
            for a in pages
            for t in fake.objects["assignments"][a]["tasks"]
            if t.get("known_solutions")
        ]
        assert len(golden) == len(set(golden)) == 10
        # Another worker still gets pages: the limit is per worker.
        assert fake.work(state["main_pool_id"], "other", answer=lambda t: True) is not None


def test_case3_plan_says_how_many_labels_would_do(tmp_path: Path) -> None:
    settings = _settings(honeypots_per_page=2, pages_per_worker=12)
    inputs = _inputs(tmp_path, settings, n_gt=60, n_tasks=500)
    plan = TolokaBackend(settings=settings, state_dir=tmp_path / "t").plan(inputs)
    assert plan.max_pages_per_worker == 5
    # 30 training + 20 exam + 12 pages x 2 honeypots = 74 labels, 14 more than the 60 there are.
    assert any("74 labeled ground-truth images" in w and "14 more than the 60" in w for w in plan.warnings)
    roomy = _inputs(tmp_path, settings, n_gt=74, n_tasks=500)
    assert not [
        w
        for w in TolokaBackend(settings=settings, state_dir=tmp_path / "t").plan(roomy).warnings
        if "honeypots" in w
    ]


def test_case4_exam_answers_stay_out_of_the_honeypot_window(tmp_path: Path, settings: Settings) -> None:
    """Toloka counts control answers from every pool whose rule sets history_size."""
    inputs = _inputs(tmp_path, settings)
    exam = unstructure(build_objects(inputs, now=NOW).exam_pool)
    assert "history_size" not in exam["quality_control"]["configs"][0]["collector_config"].get(
        "parameters", {}
    )
    assert platform.EXAM_SHARES_HONEYPOT_HISTORY is False
    # A worker who passed the exam at 80% with four misses at its end, then gets page 1 right.
    exam_answers = {"w": [True] * 16 + [False] * 4}
    gold = inputs.gold
    hp = int(gold["task"][0])
    page1 = pl.DataFrame(
        {
            "task": [hp, 61],
            "worker": "w",
            "label": [int(gold["label"][0]), 1],
            "page": "p1",
            "submitted_at": NOW + timedelta(minutes=5),
            "duration": 100.0,
            "is_honeypot": [True, False],
        },
        schema=tables.ANSWERS,
    )
    rules = platform.TolokaRules.of(inputs.spec.rules, overlap=3)
    shared = platform.evaluate(page1, gold, rules, history=exam_answers)
    assert shared["rule"].to_list() == ["honeypot"]  # 1 of the last 5 right: banned on page 1
    assert platform.exam_history(exam_answers) is None
    assert platform.evaluate(page1, gold, rules, history=platform.exam_history(exam_answers)).height == 0


def test_case5_exam_and_page_prices_match(tmp_path: Path, settings: Settings) -> None:
    inputs = _inputs(tmp_path, settings)
    objects = build_objects(inputs, now=NOW)
    assert objects.exam_pool.reward_per_assignment == objects.main_pool.reward_per_assignment
    assert not platform.price_warnings(inputs.spec)
    cheap = _settings(exam_price=0.01)
    plan = TolokaBackend(settings=cheap, state_dir=tmp_path / "t").plan(_inputs(tmp_path, cheap))
    assert any("cannot start the main tasks right after passing" in w for w in plan.warnings)


def test_case6_majority_threshold_is_the_count_that_makes_a_majority(tmp_path: Path) -> None:
    for overlap, threshold in ((3, 2), (5, 3), (7, 4)):
        settings = _settings(overlap=overlap)
        main = unstructure(build_objects(_inputs(tmp_path, settings), now=NOW).main_pool)
        mv = [
            c for c in main["quality_control"]["configs"] if c["collector_config"]["type"] == "MAJORITY_VOTE"
        ]
        assert mv[0]["collector_config"]["parameters"]["answer_threshold"] == threshold
    # Overlap 2: a majority would need both answers to match; the rule is left out and said so.
    two = _settings(overlap=2)
    main = unstructure(build_objects(_inputs(tmp_path, two), now=NOW).main_pool)
    assert "MAJORITY_VOTE" not in [c["collector_config"]["type"] for c in main["quality_control"]["configs"]]
    assert any(
        "majority" in w
        for w in TolokaBackend(settings=two, state_dir=tmp_path / "t").plan(_inputs(tmp_path, two)).warnings
    )


def _panel(votes: list[list[int]]) -> pl.DataFrame:
    """votes[t][w]: worker w's label on task t, all on one page per worker."""
    rows = []
    for t, labels in enumerate(votes):
        for w, label in enumerate(labels):
            rows.append(
                {
                    "task": t,
                    "worker": f"w{w}",
                    "label": label,
                    "page": f"p{w}",
                    "submitted_at": NOW + timedelta(minutes=w),
                    "duration": 100.0,
                    "is_honeypot": False,
                }
            )
    return pl.DataFrame(rows, schema=tables.ANSWERS)


def test_case6_toloka_scores_the_majority_side_as_right() -> None:
    # Toloka's guide: overlap 5, threshold 2, answers OK OK BAD BAD 404 -> four right.
    # Binary here: at overlap 3 with A A B, both A voters are right and B is wrong on Toloka;
    # iris's local rule (the others' strict majority) says nothing about the A voters.
    answers = _panel([[1, 1, 0]] * 4)
    events = platform.majority_events(answers, overlap=3, answer_threshold=2)
    right = dict(events.group_by("worker").agg(pl.col("right").all()).iter_rows())
    assert right == {"w0": True, "w1": True, "w2": False}
    local = quality.majority_agreement(answers, min_others=2)
    assert local["worker"].to_list() == ["w2"]
    # Overlap 4, threshold 3: a 2-2 split is scored for nobody.
    assert platform.majority_events(_panel([[1, 1, 0, 0]]), overlap=4, answer_threshold=3).height == 0


def test_case7_tasks_are_served_by_priority(tmp_path: Path, settings: Settings) -> None:
    # Priority runs against the id order here, so creation order must follow the priority.
    inputs = _inputs(tmp_path, settings, n_tasks=200, priority="reversed")
    objects = build_objects(inputs, now=NOW)
    assert unstructure(objects.main_pool)["mixer_config"]["mix_tasks_in_creation_order"] is True
    first = inputs.tasks.sort("priority")["id"].head(49).to_list()
    with FakeToloka() as fake:
        _, state = _launched(fake, tmp_path, settings, inputs)
        page = fake.work(state["main_pool_id"], "w", answer=lambda t: True)
        assert page is not None
        served = [
            int(t["input_values"]["iris_id"])
            for t in fake.objects["assignments"][page]["tasks"]
            if not t.get("known_solutions")
        ]
        assert sorted(served) == sorted(first)
        # Toloka's default (random order) would not have served the top of the list.
        pool = fake.objects["pools"][state["main_pool_id"]]
        pool["mixer_config"]["mix_tasks_in_creation_order"] = False
        other = fake.work(state["main_pool_id"], "v", answer=lambda t: True)
        assert other is not None
        random_ids = [
            int(t["input_values"]["iris_id"])
            for t in fake.objects["assignments"][other]["tasks"]
            if not t.get("known_solutions")
        ]
        assert sorted(random_ids) != sorted(first)


@pytest.mark.parametrize(
    ("field", "value"), [("price_per_page", 0.0), ("price_per_page", 0.004), ("exam_price", 0.0)]
)
def test_case8_prices_under_the_minimum_are_refused_before_anything_is_created(
    tmp_path: Path, field: str, value: float
) -> None:
    settings = _settings(**{field: value})
    inputs = _inputs(tmp_path, settings)
    with FakeToloka() as fake:
        backend = TolokaBackend(settings=settings, state_dir=tmp_path / "toloka", client=fake.client())
        with pytest.raises(CrowdError, match=rf"crowd.{field} = {value}.*at least 0.005"):
            backend.plan(inputs)
        with pytest.raises(CrowdError, match=r"at least 0\.005"):
            backend.launch(inputs)
        assert sum(fake.creates.values()) == 0
        # The platform itself refuses such a pool (what the old code ran into after creating
        # the project, skill and training).
        client = fake.client()
        project = client.create_project(build_objects(inputs, now=NOW).project)
        pool = build_objects(inputs, ids={"project_id": str(project.id)}, now=NOW).main_pool
        pool.reward_per_assignment = 0.004
        with pytest.raises(ApiError, match=r"0\.005"):
            client.create_pool(pool)


def test_case9_fast_rule_is_not_pro_rated_on_a_short_last_page(tmp_path: Path, settings: Settings) -> None:
    # 20 tasks x overlap 3 = 60 answers: pages of 49 and short last pages.
    inputs = _inputs(tmp_path, settings, n_tasks=20)
    with FakeToloka() as fake:
        backend, state = _launched(fake, tmp_path, settings, inputs)
        page = fake.work(state["main_pool_id"], "quick", answer=lambda t: True, seconds=10.0)
        assert page is not None and len(fake.objects["assignments"][page]["tasks"]) == 21
        collected = backend.collect(inputs)
        # iris's local rule pro-rates 20 s to 21/50 of it (8.4 s) and would let 10 s pass ...
        assert quality.fast_pages(collected.answers, inputs.spec.rules.fast).height == 0
        # ... Toloka applies 20 s to the task suite as it is, and the report says so.
        assert collected.bans.row(0, named=True)["rule"] == "fast"
        assert (
            platform.fast_pages(collected.answers, FastRule(min_seconds=20, ban_days=1, page_size=50)).height
            == 1
        )


# ---------------------------------------------------------------- the simulated crowd agrees


def test_simulated_and_toloka_agree_on_plan_cost_and_pages_per_worker(tmp_path: Path) -> None:
    """A demo-sized shortlist (5,130 tasks, 200 labels) and a tight one where honeypots bind."""
    for n_gt, n_tasks in ((200, 5130), (60, 800)):
        inputs = _inputs(tmp_path, _settings(), n_gt=n_gt, n_tasks=n_tasks)
        key = tmp_path / f"key-{n_gt}.csv"
        pl.DataFrame({"source": inputs.tasks["source"], "label": inputs.tasks["id"] % 2}).write_csv(key)
        settings = _settings(pages_per_worker=12, workers=40, answer_key=str(key))
        toloka = TolokaBackend(settings=settings, state_dir=tmp_path / "t").plan(inputs)
        sim = SimulatedBackend(settings=settings, state_dir=tmp_path / "s").plan(inputs)
        for field in ("tasks", "pages", "answers", "cost", "max_pages_per_worker"):
            assert getattr(sim, field) == getattr(toloka, field), field
        shortage = [w for w in toloka.warnings if "honeypots" in w]
        assert [w for w in sim.warnings if "honeypots" in w] == shortage
        assert bool(shortage) == (n_gt == 60)

    # The tight campaign run by the simulated crowd: nobody exceeds the pages Toloka would give,
    # no worker sees a honeypot twice, and the eager ones stop exactly at the limit.
    settings = _settings(pages_per_worker=30, workers=40)
    inputs = _inputs(tmp_path, settings, n_gt=60, n_tasks=1600)
    truth = {int(i): int(i) % 2 for i in [*inputs.tasks["id"], *inputs.ground_truth["id"]]}
    population = {"workers": 40, "spammers": 0.0, "fast_clickers": 0.0, "pages_per_worker": 30, "seed": 0}
    result = simulate(inputs, truth=truth, difficulty={}, population=population)
    pages = result.answers.group_by("worker").agg(pl.col("page").n_unique())["page"]
    assert pages.max() == 10
    hp = result.answers.filter(pl.col("is_honeypot"))
    assert not hp.filter(pl.struct("worker", "task").is_duplicated()).height
    assert result.pages == result.answers["page"].n_unique()


def test_sandbox_script_runs_its_two_page_campaign(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """scripts/toloka_sandbox.py against the fake (on the real sandbox it needs a token)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "toloka_sandbox", Path(__file__).parents[2] / "scripts" / "toloka_sandbox.py"
    )
    assert spec and spec.loader
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    images = tmp_path / "images.csv"
    labels = [str(i % 2) for i in range(6)] + [""] * 8
    pl.DataFrame({"source": [f"https://img.example/{i}.jpg" for i in range(14)], "label": labels}).write_csv(
        images
    )
    monkeypatch.setenv("IRIS_CROWD_TOLOKA_TOKEN", "sandbox-token")
    state = tmp_path / "state"
    with FakeToloka() as fake:
        script.main([str(images), "launch", "--state", str(state), "--url", fake.url])
        ids = json.loads((state / "state.json").read_text())
        pages = list(iter(lambda: fake.work(ids["main_pool_id"], "me", answer=lambda t: True), None))
        assert len(pages) == 2
        script.main([str(images), "collect", "--state", str(state), "--url", fake.url])
        assert len((state / "assignments.jsonl").read_text().splitlines()) == 2
        script.main([str(images), "restart", "--state", str(state), "--url", fake.url])
        assert fake.objects["projects"][ids["project_id"]]["status"] == "ARCHIVED"
        assert json.loads((state / "state.json").read_text())["project_id"] != ids["project_id"]


def test_case2_pools_archived_by_toloka_are_not_reopened(tmp_path: Path, settings: Settings) -> None:
    """Toloka archives idle pools by itself; a re-launch that lost its state says so."""
    inputs = _inputs(tmp_path, settings, n_tasks=20)
    with FakeToloka() as fake:
        client = fake.client()
        _, old = _launched(fake, tmp_path, settings, inputs)
        for kind in ("main_pool_id", "exam_pool_id"):
            client.close_pool(old[kind])
            client.archive_pool(old[kind])
        (tmp_path / "toloka" / "state.json").unlink()
        before = dict(fake.creates)
        backend = TolokaBackend(settings=settings, state_dir=tmp_path / "toloka", client=client)
        with pytest.raises(CrowdError, match=r"archived on Toloka.*--restart"):
            backend.launch(inputs)
        assert fake.creates == before
        backend.retire(inputs)
        backend.launch(inputs)
        new = json.loads((tmp_path / "toloka" / "state.json").read_text())
        assert fake.objects["pools"][new["main_pool_id"]]["status"] == "OPEN"
        assert len(fake.pool_tasks(new["main_pool_id"])) == 30
