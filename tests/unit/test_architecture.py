"""Rules of the house, pinned: stages do not import each other, stages draw no pictures,
every stage has the same entry point, and the CLI starts without the heavy libraries."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from iris.pipeline import STAGES

IRIS = Path(__file__).resolve().parents[2] / "iris"
STAGE_MODULES = {stage.module for stage in STAGES}
ALLOWED_TO_IMPORT_STAGES = ("iris.pipeline", "iris.cli")
"""The pipeline runs the stages and the CLI commands call them; nothing else may."""
HEAVY = ("polars", "numpy", "torch", "qdrant_edge", "qdrant_client")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(IRIS.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    return _imports_of(
        path.read_text(encoding="utf-8"), _module_name(path), package=path.name == "__init__.py"
    )


def _imports_of(source: str, module: str, *, package: bool = False) -> set[str]:
    """Every module ``source`` imports (at any depth, lazily or not), as absolute names."""
    here = module.split(".") if package else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            anchor = here[: len(here) - node.level + 1] if node.level else []
            base = ".".join([*anchor, node.module] if node.module else anchor)
            found.add(base)
            # ``from iris.crowd import stage`` imports the module iris.crowd.stage
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


MODULES = {stage.module for stage in STAGES}
ALLOWED_TO_IMPORT_STAGES = ("iris.pipeline", "iris.cli")
"""The pipeline runs the stages and the CLI commands call them; nothing else may."""
HEAVY = ("polars", "numpy", "torch", "qdrant_edge", "qdrant_client")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(IRIS.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (at any depth, lazily or not), absolute names."""
    package = _module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else _module_name(path)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            # ``from iris.crowd import stage`` imports the module iris.crowd.stage
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


MODULES = {_module_name(p): p for p in sorted(IRIS.rglob("*.py"))}


def test_the_stage_list_names_real_modules() -> None:
    assert set(MODULES) >= STAGE_MODULES, STAGE_MODULES - set(MODULES)
    assert len(STAGE_MODULES) == len(STAGES) == 9


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_imports_another_stage(name: str) -> None:
    if name.startswith(ALLOWED_TO_IMPORT_STAGES):
        return
    imported = _imports(MODULES[name]) & STAGE_MODULES
    # A package may re-export the stage it holds (iris.data re-exports iris.data.ingest).
    others = {m for m in imported if m != name and m.rsplit(".", 1)[0] != name}
    assert not others, (
        f"{name} imports the stage module(s) {sorted(others)}; use iris.stagekit or a library module"
    )


def test_the_rule_sees_lazy_relative_and_submodule_imports() -> None:
    source = (
        "def f():\n    from iris.select import run\n"
        "from . import stage\n"
        "from .loop import run as train\n"
        "import matplotlib.pyplot as plt\n"
    )
    found = _imports_of(source, "iris.crowd.campaign")
    assert {"iris.select", "iris.crowd.stage", "iris.crowd.loop", "matplotlib.pyplot"} <= found


@pytest.mark.parametrize("module", sorted(STAGE_MODULES))
def test_no_stage_draws_pictures(module: str) -> None:
    """Stages return and write data; iris.report draws it (after the stage, from what it wrote)."""
    imported = _imports(MODULES[module])
    drawing = {m for m in imported if m.split(".")[0] == "matplotlib" or m.startswith("iris.report")}
    assert not drawing, f"{module} imports {sorted(drawing)}"


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_every_stage_is_run_of_a_context(stage: object) -> None:
    import importlib

    module = importlib.import_module(stage.module)  # type: ignore[attr-defined]
    parameters = list(inspect.signature(module.run).parameters)
    assert parameters == ["ctx"], f"{stage.module}.run{parameters}"  # type: ignore[attr-defined]


def test_import_iris_cli_loads_no_heavy_library() -> None:
    code = (
        "import sys, iris.cli\n"
        f"print(','.join(m for m in {HEAVY!r} if any(k == m or k.startswith(m + '.') for k in sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"import iris.cli pulled in: {result.stdout.strip()}"


def test_the_import_check_would_see_a_heavy_import() -> None:
    code = "import sys, iris.cli, iris.tables\nprint('polars' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True"
