"""``iris similar`` through CliRunner on a real work directory: digits as PNG files, an
images table, the embedded store holding their pixel vectors, and a tiny real ONNX encoder
(8x8 grey pixels → 64-d) so ``--image`` runs the same path as a user's query."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import polars as pl
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper
from PIL import Image
from sklearn.datasets import load_digits

from iris import tables
from iris.cli import main
from iris.store import EdgeStore
from iris.workdir import Workdir

N = 300


def _write_encoder(models: Path) -> None:
    """A real ONNX model with the exported embedder's contract: uint8 (n, 8, 8, 3) → (n, 64)."""
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["pixels"], ["f"], to=TensorProto.FLOAT),
            helper.make_node("ReduceMean", ["f", "axes"], ["grey"], keepdims=0),
            helper.make_node("Reshape", ["grey", "shape"], ["features"]),
        ],
        "grey",
        [helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["n", 8, 8, 3])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", 64])],
        initializer=[
            helper.make_tensor("axes", TensorProto.INT64, [1], [3]),
            helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 64]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    models.mkdir(parents=True, exist_ok=True)
    onnx.save(model, models / "embedder.onnx")
    (models / "embedder.json").write_text(json.dumps({"config": {"image_size": 8}}))


@pytest.fixture
def digits_workdir(workdir: Workdir) -> tuple[Workdir, np.ndarray, np.ndarray]:
    digits = load_digits()
    pixels = (digits.images[:N] * 15).astype(np.uint8)
    ids = np.arange(N, dtype=np.int64) * 101 + 7
    rows = []
    for i, (point_id, image) in enumerate(zip(ids, pixels, strict=True)):
        path = f"images/{point_id}.png"
        Image.fromarray(image, "L").convert("RGB").save(workdir.root / path)
        split = "gt" if i % 10 == 0 else "pool"
        label = int(digits.target[i] % 2) if split == "gt" else None
        rows.append(
            {
                "id": int(point_id),
                "source": f"http://x/{i}.png",
                "path": path,
                "split": split,
                "label": label,
                "width": 8,
                "height": 8,
                "sha256": str(i),
            }
        )
    frame = tables.check(pl.DataFrame(rows, schema_overrides={"label": pl.Int8}), tables.IMAGES, where="test")
    tables.write(frame, workdir.table("images"))
    vectors = pixels.reshape(N, 64).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    payloads = [
        {
            "split": r["split"],
            "source": r["source"],
            "status": "gt" if r["split"] == "gt" else "unlabeled",
            "has_label": r["label"] is not None,
            **({"label": r["label"]} if r["label"] is not None else {}),
        }
        for r in rows
    ]
    with EdgeStore(workdir.qdrant) as store:
        store.upsert(ids, vectors, payloads)
    _write_encoder(workdir.models)
    return workdir, ids, vectors


def _run(workdir: Workdir, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--workdir", str(workdir.root), "similar", *args])
    return result.exit_code, result.output


def _exact(
    vectors: np.ndarray, ids: np.ndarray, query: int, k: int, keep: np.ndarray | None = None
) -> list[int]:
    scores = vectors @ vectors[query]
    scores[query] = -np.inf
    if keep is not None:
        scores[~keep] = -np.inf
    return [int(ids[i]) for i in np.argsort(-scores)[:k]]


def test_similar_by_id_matches_exact_neighbours(digits_workdir) -> None:
    workdir, ids, vectors = digits_workdir
    code, out = _run(workdir, str(ids[3]), "-k", "6", "--json")
    assert code == 0, out
    data = json.loads(out)
    assert data["query"]["id"] == ids[3] and data["query"]["split"] == "pool"
    got = [row["id"] for row in data["neighbours"]]
    assert got == _exact(vectors, ids, 3, 6)
    assert int(ids[3]) not in got, "the query is not its own neighbour"
    scores = [row["score"] for row in data["neighbours"]]
    assert scores == sorted(scores, reverse=True)
    assert set(data["neighbours"][0]) == {"id", "score", "split", "label", "status", "origin", "source"}


def test_similar_filters(digits_workdir) -> None:
    workdir, ids, vectors = digits_workdir
    code, out = _run(workdir, str(ids[5]), "-k", "4", "--split", "gt", "--label", "1", "--json")
    assert code == 0, out
    neighbours = json.loads(out)["neighbours"]
    digits = load_digits().target[:N]
    keep = np.array([i % 10 == 0 and digits[i] % 2 == 1 for i in range(N)])
    assert [r["id"] for r in neighbours] == _exact(vectors, ids, 5, 4, keep)
    assert all(r["split"] == "gt" and r["label"] == 1 for r in neighbours)
    code, out = _run(workdir, str(ids[5]), "--status", "unlabeled", "--status", "auto", "--json")
    assert code == 0 and all(r["status"] == "unlabeled" for r in json.loads(out)["neighbours"])
    # No label has an origin before propagation: the origin filter keeps nothing yet.
    code, out = _run(workdir, str(ids[5]), "--origin", "crowd", "--json")
    assert code == 0 and json.loads(out)["neighbours"] == []


def test_similar_table_output(digits_workdir) -> None:
    workdir, ids, _ = digits_workdir
    code, out = _run(workdir, str(ids[0]), "-k", "3")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == f"3 nearest of image {ids[0]}"
    assert lines[1].split() == ["id", "score", "split", "label", "status", "origin", "source"]
    assert len(lines) == 2 + 1 + 3


def test_similar_by_image_file_finds_that_image(digits_workdir, tmp_path: Path) -> None:
    workdir, ids, _ = digits_workdir
    picture = tmp_path / "query.png"
    Image.open(workdir.root / f"images/{ids[42]}.png").save(picture)
    code, out = _run(workdir, "--image", str(picture), "-k", "3", "--json")
    assert code == 0, out
    neighbours = json.loads(out)["neighbours"]
    assert neighbours[0]["id"] == ids[42]
    assert neighbours[0]["score"] == pytest.approx(1.0, abs=1e-4)


def test_similar_grid_draws_a_contact_sheet(digits_workdir, tmp_path: Path) -> None:
    workdir, ids, _ = digits_workdir
    out_png = tmp_path / "sheets" / "grid.png"
    code, out = _run(workdir, str(ids[1]), "-k", "8", "--grid", str(out_png))
    assert code == 0, out
    assert f"contact sheet: {out_png}" in out
    with Image.open(out_png) as sheet:
        width, height = sheet.size
        # 9 tiles in rows of 6: two rows; the query's frame is blue in the top-left corner.
        assert width > 6 * 160 and height > 2 * 160
        frame = sheet.convert("RGB").getpixel((10, 38))
        assert frame == (0x1F, 0x6F, 0xEB)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give an image ID or --image FILE"),
        (("999999",), "no point with id 999999"),
        (("7", "--image", "{config}"), "one of them"),
    ],
)
def test_similar_errors_are_one_line(digits_workdir, args: tuple[str, ...], message: str) -> None:
    workdir, _, _ = digits_workdir
    code, out = _run(workdir, *(a.format(config=workdir.config) for a in args))
    assert code == 2
    assert message in out and out.strip().count("\n") == 0


def test_similar_before_embedding_names_the_stage(workdir: Workdir) -> None:
    code, out = _run(workdir, "12")
    assert code == 2
    assert "run `iris embed` first" in out


@pytest.mark.parametrize("text", ["-5", "1e23", "12.0", "0x1f", str(2**63), "99999999999999999999999"])
def test_a_bad_image_id_is_one_line(digits_workdir, text: str) -> None:
    workdir, _, _ = digits_workdir
    code, out = _run(workdir, text)
    assert (code, out) == (
        2,
        f"iris: error: iris similar: image id {text!r} is not valid: expected a whole number from 0 to "
        f"{2**63 - 1} (the id column of tables/images.parquet)\n",
    )


def test_an_unknown_option_is_still_named_as_one(digits_workdir) -> None:
    workdir, _, _ = digits_workdir
    code, out = _run(workdir, "--frobnicate")
    assert code == 2 and "No such option '--frobnicate'" in out


def test_the_largest_id_is_looked_up(digits_workdir) -> None:
    workdir, _, _ = digits_workdir
    code, out = _run(workdir, str(2**63 - 1))
    assert code == 2 and f"no point with id {2**63 - 1}" in out


def _odd_file(tmp_path: Path, kind: str) -> Path:
    if kind == "dev-zero":
        return Path("/dev/zero")
    path = tmp_path / f"query.{kind}"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dds":  # no pixel format: Pillow's DDS plugin raises NotImplementedError
        path.write_bytes(b"DDS " + (124).to_bytes(4, "little") + bytes(120))
    else:
        Image.new("RGB", (64, 64), (9, 9, 9)).save(path)
        path.write_bytes(path.read_bytes()[:-30])
    return path


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("dds", "corrupt: NotImplementedError: Unknown pixel format flags 0"),
        ("fifo", "not-a-file: {path} is a FIFO, socket or device, expected a regular image file"),
        ("dev-zero", "not-a-file: {path} is a FIFO, socket or device, expected a regular image file"),
        ("png", "truncated: "),
    ],
)
def test_an_unusable_query_image_is_one_line(digits_workdir, tmp_path: Path, kind: str, reason: str) -> None:
    workdir, _, _ = digits_workdir
    path = _odd_file(tmp_path, kind)
    code, out = _run(workdir, "--image", str(path))
    assert code == 2 and out.count("\n") == 1, out
    prefix = f"iris: error: --image {path}: not a usable image ({reason.format(path=path)}"
    assert out.startswith(prefix), out
    assert out.endswith("); expected a picture file that iris ingest would accept\n")
