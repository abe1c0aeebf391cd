"""``iris similar``: the nearest images of an image in the store, or of a picture file."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click

from iris.cli._common import CliState, echo_table, json_option, pass_state
from iris.cli.store import store_options, store_settings
from iris.vocabulary import ORIGINS, SPLITS, STATUSES

ID_MAX = 2**63 - 1
"""Image ids are non-negative 63-bit integers (:mod:`iris.data.ids`)."""


# ignore_unknown_options: "-5" reaches the ID argument and gets a one-line answer, not
# click's "no such option".
@click.command("similar", context_settings={"ignore_unknown_options": True})
@click.argument("point_id", metavar="ID", required=False)
@click.option(
    "--image", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Query with this picture."
)
@click.option(
    "-k", "k", type=click.IntRange(min=1, max=1000), default=10, show_default=True, help="Neighbours."
)
@click.option(
    "--split",
    "splits",
    multiple=True,
    type=click.Choice(SPLITS),
    help="Only this split (repeatable).",
)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(STATUSES),
    help="Only this pipeline status (repeatable).",
)
@click.option(
    "--origin",
    "origins",
    multiple=True,
    type=click.Choice(ORIGINS),
    help="Only final labels of this origin (repeatable).",
)
@click.option("--label", type=click.IntRange(0, 1), default=None, help="Only images with this label.")
@click.option("--exact", is_flag=True, help="Exact search instead of HNSW.")
@click.option(
    "--grid", type=click.Path(dir_okay=False, path_type=Path), help="Draw a contact sheet PNG here."
)
@store_options
@json_option
@pass_state
def similar_command(
    state: CliState,
    point_id: str | None,
    image: Path | None,
    k: int,
    splits: tuple[str, ...],
    statuses: tuple[str, ...],
    origins: tuple[str, ...],
    label: int | None,
    exact: bool,
    grid: Path | None,
    qdrant_url: str | None,
    api_key: str | None,
    collection: str | None,
    as_json: bool,
) -> None:
    """Print the K nearest images of image ID (or of --image FILE) with score, split, label, status."""
    from iris.errors import InputError
    from iris.statuses import lookup, status_filter
    from iris.store import open_store
    from iris.store.similar import find_similar, similar_filter

    if (point_id is None) == (image is None):
        raise InputError("iris similar: give an image ID or --image FILE (one of them)")
    query_id = None if point_id is None else parse_id(point_id)
    settings = store_settings(state, qdrant_url, api_key, collection)
    vector = None
    if image is not None:
        vector = _encode(state, image)
    by_status = status_filter(state.workdir, statuses)
    with open_store(state.workdir, settings) as store:
        result = find_similar(
            store,
            point_id=query_id,
            vector=vector,
            k=k,
            flt=similar_filter(
                splits=splits,
                statuses=tuple(by_status.must.get("status", ())) if by_status else (),
                origins=origins,
                label=label,
                ids=by_status.ids if by_status else None,
            ),
            exact=exact,
        )
    # Statuses and pseudo-labels of later stages are in the tables (iris.statuses).
    shown: list[tuple[int | None, dict[str, Any]]] = [(h.id, h.payload) for h in result.hits]
    shown.append((query_id, result.query_payload))
    known = lookup(state.workdir, [i for i, _ in shown if i is not None])
    for shown_id, payload in shown:
        if shown_id is not None and shown_id in known:
            payload["status"], payload["pseudo_label"] = known[shown_id]
    rows = [
        {
            "id": hit.id,
            "score": round(hit.score, 4),
            "split": hit.payload.get("split"),
            "label": hit.payload.get("label"),
            "status": hit.payload.get("status"),
            "origin": hit.payload.get("origin"),
            "source": hit.payload.get("source"),
        }
        for hit in result.hits
    ]
    if grid is not None:
        _draw(state, result, rows, image, grid)
    if as_json:
        query: dict[str, Any] = {
            "id": query_id,
            "image": str(image) if image else None,
            **result.query_payload,
        }
        click.echo(json.dumps({"query": query, "neighbours": rows}, indent=2))
        return
    what = f"image {query_id}" if query_id is not None else str(image)
    echo_table(rows, title=f"{len(rows)} nearest of {what}")
    if grid is not None:
        click.echo(f"contact sheet: {grid}")


def parse_id(text: str) -> int:
    """An image id from the command line: a whole number from 0 to :data:`ID_MAX`.

    Raises:
        InputError: anything else (``-5``, ``1e23``, ``2**64``), in one line.
        click.NoSuchOption: an unknown option (``--frobnicate``) that landed here.
    """
    from iris.errors import InputError

    cleaned = text.strip()
    if re.fullmatch(r"[0-9]+", cleaned) and int(cleaned) <= ID_MAX:
        return int(cleaned)
    if re.fullmatch(r"--?[A-Za-z].*", cleaned):
        raise click.NoSuchOption(cleaned)
    raise InputError(
        f"iris similar: image id {text!r} is not valid: expected a whole number from 0 to {ID_MAX} "
        "(the id column of tables/images.parquet)"
    )


def _encode(state: CliState, image: Path) -> Any:
    """The query vector of a picture file, read and decoded as ingest would (a FIFO, a device,
    a huge or undecodable file is one line, never a hang or a traceback)."""
    from iris.data.validate import Limits, Rejected, decode, read_local
    from iris.embed.encoder import load_encoder
    from iris.errors import InputError

    options = state.settings().ingest
    limits = Limits(
        max_pixels=options.max_pixels,
        min_side=options.min_side,
        max_side=options.max_side,
        max_bytes=options.max_bytes,
    )
    try:
        picture = decode(read_local(str(image), max_bytes=limits.max_bytes), limits=limits)
    except Rejected as rejected:
        raise InputError(
            f"--image {image}: not a usable image ({rejected.reason}: {rejected.detail}); "
            "expected a picture file that iris ingest would accept"
        ) from None
    return load_encoder(state.workdir).encode([picture])[0]


def _draw(state: CliState, result: Any, rows: list[dict[str, Any]], image: Path | None, grid: Path) -> None:
    from iris.report.contact_sheet import QUERY_COLOUR, Tile, draw_contact_sheet, label_colour
    from iris.store.similar import image_paths

    task = state.settings().task
    names = {0: task.negative_name, 1: task.positive_name}
    ids = [r["id"] for r in rows] + ([result.query_id] if result.query_id is not None else [])
    paths = image_paths(state.workdir, ids)

    def picture(point_id: int, payload: dict[str, Any]) -> Path | None:
        if point_id in paths:
            return paths[point_id]
        source = payload.get("source")
        return Path(source) if isinstance(source, str) and Path(source).is_file() else None

    def describe(payload: dict[str, Any]) -> str:
        label, pseudo = payload.get("label"), payload.get("pseudo_label")
        if label is not None:
            name = names.get(label, str(label))
        elif pseudo is not None:
            name = f"~{names.get(pseudo, str(pseudo))}"
        else:
            name = "no label"
        return f"{name} · {payload.get('status', '?')}"

    query_payload = result.query_payload
    if image is not None:
        query_lines: tuple[str, ...] = (image.name,)
    else:
        query_lines = (describe(query_payload), f"id {result.query_id}")
    tiles = [
        Tile(
            image=image if image is not None else picture(result.query_id, query_payload),
            title="query",
            lines=query_lines,
            colour=QUERY_COLOUR,
        )
    ]
    for rank, (row, hit) in enumerate(zip(rows, result.hits, strict=True), start=1):
        tiles.append(
            Tile(
                image=picture(hit.id, hit.payload),
                title=f"#{rank}  {hit.score:.3f}",
                lines=(describe(hit.payload), f"id {row['id']}"),
                colour=label_colour(hit.payload.get("label")),
            )
        )
    draw_contact_sheet(tiles, grid, columns=6, title=f"{len(rows)} nearest neighbours")


COMMANDS = [similar_command]
