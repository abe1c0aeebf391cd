"""The Toloka backend without the service.

Two kinds of checks: the exact toloka-kit objects a launch would send (their unstructured,
wire form), and the request/response flow against :class:`FakeToloka`, a small HTTP server
on 127.0.0.1 that answers the endpoints the backend uses the way Toloka's API does
(ids assigned on create, async operations, OPERATION_ALREADY_EXISTS on a repeated
operation id, paginated searches).
"""

from __future__ import annotations

import itertools
import json
import threading
import warnings
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import polars as pl
import pytest

pytest.importorskip("toloka.client", reason="the toloka extra (toloka-kit) is not installed")

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import toloka.client as tk
    from toloka.client._converter import unstructure

from iris import tables
from iris.config import Settings, load_settings
from iris.crowd.backends.base import CampaignInputs
from iris.crowd.backends.toloka import (
    TolokaBackend,
    build_objects,
    campaign_key,
    operation_id,
)
from iris.crowd.spec import CampaignSpec, split_ground_truth
from iris.errors import CrowdError

NOW = datetime(2025, 1, 1, tzinfo=UTC)


class FakeToloka:
    """An in-process stand-in for the parts of Toloka's REST API iris uses."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, dict[str, Any]]] = {
            k: {} for k in ("projects", "skills", "trainings", "pools", "tasks", "operations", "assignments")
        }
        self.creates: dict[str, int] = {k: 0 for k in self.objects}
        self.requests: list[tuple[str, str]] = []
        self._ids = itertools.count(1000)
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

            def do_GET(self) -> None:
                fake.requests.append(("GET", self.path))
                code, body = fake.get(urlparse(self.path))
                self._send(code, body)

            def do_POST(self) -> None:
                fake.requests.append(("POST", self.path))
                code, body = fake.post(urlparse(self.path), self._body())
                self._send(code, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeToloka:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

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
        items = sorted(self.objects[kind].values(), key=lambda o: o["id"])
        for field, param in match.items():
            if param in query:
                allowed = set(query[param][0].split(","))
                items = [o for o in items if str(o.get(field)) in allowed]
        if "id_gt" in query:
            items = [o for o in items if o["id"] > query["id_gt"][0]]
        limit = int(query.get("limit", ["50"])[0])
        return {"items": items[:limit], "has_more": len(items) > limit}

    def get(self, url: Any) -> tuple[int, Any]:
        parts = url.path.removeprefix("/api/v1/").split("/")
        query = parse_qs(url.query)
        kind = parts[0]
        if len(parts) == 2:
            obj = self.objects.get(kind, {}).get(parts[1])
            return (200, obj) if obj else (404, {"code": "DOES_NOT_EXIST", "message": "no such object"})
        match = {
            "projects": {"status": "status"},
            "skills": {"name": "name"},
            "trainings": {"project_id": "project_id"},
            "pools": {"project_id": "project_id"},
            "assignments": {"pool_id": "pool_id", "status": "status"},
        }[kind]
        return 200, self._search(kind, query, match)

    def post(self, url: Any, body: Any) -> tuple[int, Any]:
        parts = url.path.removeprefix("/api/v1/").split("/")
        query = parse_qs(url.query)
        kind = parts[0]
        if kind in {"pools", "trainings"} and len(parts) == 3:
            obj = self.objects[kind][parts[1]]
            action = parts[2]
            obj["status"] = "OPEN" if action == "open" else "CLOSED"
            if action == "close":
                obj["last_close_reason"] = "MANUAL"
            prefix = "POOL" if kind == "pools" else "TRAINING"
            key = "pool_id" if kind == "pools" else "training_id"
            return 202, self._operation(f"{prefix}.{action.upper()}", {key: parts[1]})
        if kind == "tasks":
            op_id = query["operation_id"][0]
            if op_id in self.objects["operations"]:
                return 409, {"code": "OPERATION_ALREADY_EXISTS", "message": f"operation {op_id} exists"}
            for task in body:
                task = {**task, "id": self._new_id(), "created": NOW.isoformat()}
                task.pop("__item_idx", None)
                self.objects["tasks"][task["id"]] = task
                self.creates["tasks"] += 1
            params = {"skip_invalid_items": False, "allow_defaults": True, "open_pool": False}
            return 202, self._operation("TASK.BATCH_CREATE", params, op_id=op_id)
        obj = {**body, "id": self._new_id(), "created": NOW.isoformat()}
        if kind in {"projects"}:
            obj["status"] = "ACTIVE"
        if kind in {"pools", "trainings"}:
            obj["status"] = "CLOSED"
            obj["type"] = "REGULAR" if kind == "pools" else None
        self.objects[kind][obj["id"]] = obj
        self.creates[kind] += 1
        return 201, obj

    # -- what workers would do

    def work(self, pool_id: str, worker: str, *, answer: Any, seconds: float = 120.0) -> str:
        """One worker submits one page of the pool's tasks: real tasks + one golden task."""
        tasks = [t for t in self.objects["tasks"].values() if t["pool_id"] == pool_id]
        real = [t for t in tasks if not t.get("known_solutions")][:4]
        golden = [t for t in tasks if t.get("known_solutions")][:1]
        page = real + golden
        created = NOW + timedelta(hours=len(self.objects["assignments"]))
        aid = self._new_id()
        self.objects["assignments"][aid] = {
            "id": aid,
            "task_suite_id": self._new_id(),
            "pool_id": pool_id,
            "user_id": worker,
            "status": "ACCEPTED",
            "reward": 0.05,
            "tasks": page,
            "solutions": [{"output_values": {"result": answer(t)}} for t in page],
            "mixed": True,
            "created": created.isoformat(),
            "submitted": (created + timedelta(seconds=seconds)).isoformat(),
            "accepted": (created + timedelta(seconds=seconds + 1)).isoformat(),
        }
        return aid


def _inputs(tmp_path: Path, settings: Settings, *, n_tasks: int = 8, n_gt: int = 60) -> CampaignInputs:
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
    tasks = tasks.with_columns(priority=pl.int_range(pl.len()).cast(pl.Int32))
    return CampaignInputs(
        spec=spec, tasks=tasks, ground_truth=split_ground_truth(images, spec), root=tmp_path
    )


@pytest.fixture
def settings() -> Settings:
    return load_settings(None, environ={})


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
    }
    assert main["defaults"] == {"default_overlap_for_new_task_suites": 3, "default_overlap_for_new_tasks": 3}
    assert main["filter"] == {
        "and": [{"or": [{"category": "skill", "key": "s1", "operator": "GTE", "value": 80}]}]
    }
    assert main["reward_per_assignment"] == 0.05
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
    assert configs[2]["collector_config"]["parameters"] == {"answer_threshold": 2, "history_size": 20}
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


def test_reject_rules_are_twins_of_the_ban_rules(tmp_path: Path) -> None:
    settings = load_settings(None, environ={"IRIS_CROWD_REJECT_BANNED": "true"})
    pool = unstructure(build_objects(_inputs(tmp_path, settings), now=NOW).main_pool)
    actions = {
        c["collector_config"]["type"]: [r["action"]["type"] for r in c["rules"]]
        for c in pool["quality_control"]["configs"]
    }
    for collector in ("ASSIGNMENT_SUBMIT_TIME", "GOLDEN_SET", "MAJORITY_VOTE"):
        assert actions[collector] == ["RESTRICTION_V2", "REJECT_ALL_ASSIGNMENTS"]


def test_operation_ids_are_stable() -> None:
    assert operation_id("iris-x", "real", 0) == operation_id("iris-x", "real", 0)
    assert operation_id("iris-x", "real", 0) != operation_id("iris-x", "real", 1)
    assert operation_id("iris-x", "real", 0) != operation_id("iris-y", "real", 0)


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


def test_launch_flow_is_idempotent_and_collects(tmp_path: Path, settings: Settings) -> None:
    inputs = _inputs(tmp_path, settings)
    with FakeToloka() as fake:
        client = tk.TolokaClient("fake-token", url=fake.url, retries=0, timeout=5.0)
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
        assert state["uploaded"]["real:0"] == str(operation_id(campaign_key(inputs), "real", 0))

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
        truth = {str(r["id"]): bool(r["label"]) for r in inputs.ground_truth.iter_rows(named=True)}
        fake.work(
            state["main_pool_id"], "careful", answer=lambda t: truth.get(t["input_values"]["iris_id"], True)
        )
        fake.work(state["main_pool_id"], "fast", answer=lambda t: False, seconds=1.0)
        collected = fresh.collect(inputs)
        answers = collected.answers
        assert answers.height == 10
        assert answers.filter(pl.col("is_honeypot")).height == 2
        assert set(answers["worker"]) == {"careful", "fast"}
        assert answers.filter(pl.col("worker") == "fast")["duration"].unique().to_list() == [1.0]
        assert collected.bans.filter(pl.col("rule") == "fast")["worker"].to_list() == ["fast"]
        again = fresh.collect(inputs)
        assert again.answers.height == 10

        stopped = fresh.stop(inputs)
        assert stopped.state == "stopped"
        assert fake.objects["pools"][state["main_pool_id"]]["status"] == "CLOSED"
