"""``iris store info | snapshot | restore | copy-to-server`` through CliRunner.

copy-to-server is tested against qdrant-client's local mode on disk (``--url local:PATH``),
which speaks the server's API; the same command against a real server is in
tests/integration.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from iris.cli import main
from iris.store import EdgeStore, Filter, ServerStore
from iris.workdir import Workdir

N = 240


@pytest.fixture
def filled(workdir: Workdir) -> tuple[Workdir, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(N, 24)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = rng.choice(2**40, N, replace=False).astype(np.int64)
    statuses = ["gt", "auto", "problematic", "unlabeled"]
    payloads = [
        {
            "split": "gt" if i % 4 == 0 else "pool",
            "status": statuses[i % 4],
            "has_label": i % 4 == 0,
            "source": f"img/{i}.png",
            **({"label": i % 2} if i % 4 == 0 else {}),
        }
        for i in range(N)
    ]
    with EdgeStore(workdir.qdrant) as store:
        store.upsert(ids, vectors, payloads)
    return workdir, ids, vectors


def _run(workdir: Workdir, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--workdir", str(workdir.root), "store", *args])
    return result.exit_code, result.output


def test_info_counts_by_split_and_status(filled) -> None:
    workdir, _, _ = filled
    code, out = _run(workdir, "info", "--json")
    assert code == 0, out
    info = json.loads(out)
    assert info["kind"] == "edge" and info["collection"] == "iris"
    assert (info["points"], info["dim"], info["distance"]) == (N, 24, "cosine")
    assert info["by_split"] == {"gt": N // 4, "pool": 3 * N // 4}
    assert info["by_status"] == {"gt": 60, "auto": 60, "problematic": 60, "unlabeled": 60}
    assert info["by_origin"] == {}  # no final labels before propagation
    code, out = _run(workdir, "info")
    assert code == 0 and out.startswith(
        f"edge store at {workdir.qdrant / 'iris'}, collection 'iris': {N} points"
    )


def test_info_on_an_empty_workdir(workdir: Workdir) -> None:
    code, out = _run(workdir, "info", "--json")
    assert code == 0, out
    assert json.loads(out)["points"] == 0


def test_snapshot_then_restore_under_another_name(filled, tmp_path: Path) -> None:
    workdir, ids, _ = filled
    code, out = _run(workdir, "snapshot", str(tmp_path))
    assert code == 0, out
    archive = tmp_path / "iris.snapshot.tar"
    assert archive.is_file() and f"wrote {archive}" in out
    code, out = _run(workdir, "restore", str(archive), "--collection", "copy")
    assert code == 0, out
    assert f"restored {N} points into collection 'copy'" in out
    with EdgeStore(workdir.qdrant, collection="copy") as restored, EdgeStore(workdir.qdrant) as original:
        a, b = original.export(), restored.export()
        assert a.ids.tolist() == b.ids.tolist() == sorted(ids.tolist())
        np.testing.assert_allclose(a.vectors, b.vectors, atol=1e-6)
        assert a.payloads == b.payloads
        assert restored.count(Filter(must={"has_label": True})) == N // 4
    code, out = _run(workdir, "restore", str(archive), "--collection", "copy")
    assert code == 2 and "already holds a collection" in out


def test_copy_to_server_local_mode(filled, tmp_path: Path) -> None:
    workdir, _, _ = filled
    url = f"local:{tmp_path / 'server'}"
    code, out = _run(workdir, "copy-to-server", "--url", url, "--batch-size", "50", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert (report["copied"], report["target_count"], report["dim"]) == (N, N, 24)
    # Again: replaced by id, nothing doubled.
    code, out = _run(workdir, "copy-to-server", "--url", url)
    assert code == 0, out
    assert f"copied {N} points (24-d cosine) into 'iris' at {url}; it now holds {N}" in out
    with EdgeStore(workdir.qdrant) as edge, ServerStore.local(tmp_path / "server") as server:
        a, b = edge.export(), server.export()
        assert a.ids.tolist() == b.ids.tolist()
        np.testing.assert_allclose(a.vectors, b.vectors, atol=1e-6)
        assert a.payloads == b.payloads
        query = a.vectors[:5]
        flt = Filter(must={"split": "gt"})
        edge_hits = edge.query_batch(query, k=5, flt=flt, exact=True)
        server_hits = server.query_batch(query, k=5, flt=flt, exact=True)
        assert [[h.id for h in r] for r in edge_hits] == [[h.id for h in r] for r in server_hits]
    code, out = _run(workdir, "info", "--qdrant-url", url, "--json")
    assert code == 0, out
    assert json.loads(out)["kind"] == "local" and json.loads(out)["points"] == N


def test_copy_refuses_a_server_collection_of_another_size(filled, tmp_path: Path) -> None:
    workdir, _, _ = filled
    with ServerStore.local(tmp_path / "server") as server:
        server.ensure_collection(dim=8)
    code, out = _run(workdir, "copy-to-server", "--url", f"local:{tmp_path / 'server'}")
    assert code == 2
    assert "holds 8-d cosine vectors; asked for 24-d cosine" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("copy-to-server", "--url", "local::memory:"), "run `iris embed` first"),
        (("snapshot", "out.tar"), "run `iris embed` first"),
        (("copy-to-server", "--url", "ftp://x"), "should start with http:// or https://"),
    ],
)
def test_store_errors_are_one_line(workdir: Workdir, args: tuple[str, ...], message: str) -> None:
    code, out = _run(workdir, *args)
    assert code == 2, out
    assert message in out and out.strip().count("\n") == 0
