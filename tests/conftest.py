"""Shared fixtures: small, readable, real data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("IRIS_PROGRESS", "0")


@pytest.fixture
def workdir(tmp_path: Path):
    """A fresh, initialised work directory."""
    from iris.workdir import init_workdir

    return init_workdir(tmp_path / "work")
