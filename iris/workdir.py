"""The work directory: where every stage reads and writes.

::

    WORK/
      iris.toml          settings
      images/            downloaded and validated images (RGB PNG), named by image id
      tables/            parquet tables, one per stage output (see iris.tables)
      qdrant/            the embedded Qdrant Edge store
      models/            embedder and classifier weights, ONNX exports, checkpoints
      crowd/             campaign state and collected answers
      reports/           PNGs and report.md
      state.json         what ``iris run`` has finished (iris.pipeline)
      .lock              held by the one command writing here (iris.lock)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from iris.config import CONFIG_FILE, Settings, load_settings, render_toml
from iris.errors import WorkdirError
from iris.lock import WorkdirLock


@dataclass(frozen=True)
class Workdir:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def tables(self) -> Path:
        return self.root / "tables"

    @property
    def qdrant(self) -> Path:
        return self.root / "qdrant"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def crowd(self) -> Path:
        return self.root / "crowd"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    def lock(self, command: str) -> WorkdirLock:
        """The lock a command writing here holds (``with workdir.lock("iris run"): ...``).

        Raises (on entry):
            WorkdirLockedError: another process holds it.
        """
        return WorkdirLock(self.root, command=command)

    def table(self, name: str) -> Path:
        return self.tables / f"{name}.parquet"

    def ensure(self) -> Workdir:
        for folder in (self.images, self.tables, self.models, self.crowd, self.reports):
            folder.mkdir(parents=True, exist_ok=True)
        return self

    def settings(self, **overrides: dict[str, object]) -> Settings:
        return load_settings(self.root, overrides=overrides)


def init_workdir(path: Path, *, settings: Settings | None = None, force: bool = False) -> Workdir:
    """Create a work directory with an ``iris.toml`` holding every setting."""
    workdir = Workdir(path.resolve())
    if workdir.config.exists() and not force:
        raise WorkdirError(f"{workdir.config} already exists; pass --force to overwrite it")
    workdir.root.mkdir(parents=True, exist_ok=True)
    workdir.config.write_text(render_toml(settings or Settings()), encoding="utf-8")
    return workdir.ensure()


def find_workdir(explicit: Path | None = None) -> Workdir:
    """Locate the work directory: the flag, then ``IRIS_WORKDIR``, then the current directory."""
    candidates = []
    if explicit is not None:
        candidates.append(("--workdir", explicit))
    elif os.environ.get("IRIS_WORKDIR"):
        candidates.append(("IRIS_WORKDIR", Path(os.environ["IRIS_WORKDIR"])))
    else:
        candidates.append(("current directory", Path.cwd()))
    origin, path = candidates[0]
    if not (path / CONFIG_FILE).exists():
        raise WorkdirError(
            f"no {CONFIG_FILE} in {path} ({origin}); run `iris init DIR` first or pass --workdir"
        )
    return Workdir(path.resolve()).ensure()
