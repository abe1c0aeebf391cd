"""``iris similar``: the nearest images of an image in the store, or of a picture file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from iris.cli._common import CliState, echo_table, json_option, pass_state
from iris.cli.store import store_options, store_settings
from iris.vocabulary import ORIGINS, SPLITS, STATUSES


@click.command("similar")
@click.argument("point_id", metavar="ID", type=int, required=False)
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
    point_id: int | None,
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
    from iris.store import open_store
    from iris.store.similar import find_similar, similar_filter

    if (point_id is None) == (image is None):
        raise InputError("iris similar: give an image ID or --image FILE (one of them)")
    settings = store_settings(state, qdrant_url, api_key, collection)
    vector = None
    if image is not None:
        vector = _encode(state, image)
    with open_store(state.workdir, settings) as store:
        result = find_similar(
            store,
            point_id=point_id,
            vector=vector,
            k=k,
            flt=similar_filter(splits=splits, statuses=statuses, origins=origins, label=label),
            exact=exact,
        )
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
            "id": point_id,
            "image": str(image) if image else None,
            **result.query_payload,
        }
        click.echo(json.dumps({"query": query, "neighbours": rows}, indent=2))
        return
    what = f"image {point_id}" if point_id is not None else str(image)
    echo_table(rows, title=f"{len(rows)} nearest of {what}")
    if grid is not None:
        click.echo(f"contact sheet: {grid}")


def _encode(state: CliState, image: Path) -> Any:
    from PIL import Image, UnidentifiedImageError

    from iris.embed.encoder import load_encoder
    from iris.errors import InputError

    try:
        with Image.open(image) as opened:
            picture = opened.convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise InputError(f"{image}: not a readable image ({exc})") from None
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
