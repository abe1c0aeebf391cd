"""Checkpoints of the final classifier under ``WORK/models/classifier`` (written atomically).

Training writes them (:mod:`iris.train.loop`), export and predict read them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from iris.errors import ModelError, StageOrderError
from iris.workdir import Workdir


def classifier_dir(workdir: Workdir) -> Path:
    return workdir.models / "classifier"


def save_checkpoint(state: dict[str, Any], path: Path) -> Path:
    """``torch.save`` to a temporary file, then rename: a kill never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint dict written by :func:`save_checkpoint`.

    Raises:
        StageOrderError: no such file. ModelError: an unreadable one.
    """
    if not path.exists():
        raise StageOrderError(f"{path} does not exist yet; run `iris train` first")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)  # type: ignore[no-any-return]
    except Exception as exc:
        raise ModelError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})") from None
