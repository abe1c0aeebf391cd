"""iris: label large image pools for binary classification at a fraction of the crowd cost.

Pipeline (one package per stage): data (ingest) → embed → store (Qdrant) → pseudolabel →
select → crowd → aggregate → propagate → train (predict). ``iris.pipeline`` runs them in
order; ``iris.cli`` is the command line.
"""

from iris.config import Settings, load_settings
from iris.errors import IrisError
from iris.workdir import Workdir, find_workdir, init_workdir

__all__ = ["IrisError", "Settings", "Workdir", "find_workdir", "init_workdir", "load_settings"]
__version__ = "0.1.0"
