"""``iris store``: look at the vector store, snapshot it, copy it to a Qdrant server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from iris.cli._common import CliState, echo_table, json_option, pass_state
from iris.config import Settings

F = TypeVar("F", bound=Callable[..., Any])


def store_options(func: F) -> F:
    """``--qdrant-url``, ``--api-key`` and ``--collection``: which store a command talks to."""
    func = click.option(
        "--collection", default=None, help="Collection name (default from iris.toml: store.collection)."
    )(func)
    func = click.option(
        "--api-key", envvar="IRIS_QDRANT_API_KEY", default=None, help="API key of the Qdrant server."
    )(func)
    func = click.option(
        "--qdrant-url",
        default=None,
        help="Use the Qdrant server at this URL instead of the embedded store (or IRIS_QDRANT_URL).",
    )(func)
    return func


def store_settings(
    state: CliState, qdrant_url: str | None, api_key: str | None, collection: str | None
) -> Settings:
    """Settings with the store flags applied."""
    return state.settings(store={"url": qdrant_url, "api_key": api_key, "collection": collection})


@click.group("store")
def store_group() -> None:
    """Inspect, snapshot and move the vector store."""


@store_group.command("info")
@store_options
@json_option
@pass_state
def info_command(
    state: CliState, qdrant_url: str | None, api_key: str | None, collection: str | None, as_json: bool
) -> None:
    """Kind, collection, size and the number of points per split and status."""
    from iris.store import open_store
    from iris.store.copy import describe

    with open_store(state.workdir, store_settings(state, qdrant_url, api_key, collection)) as store:
        info = describe(store, state.workdir)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(
        f"{info['kind']} store at {info['location']}, collection {info['collection']!r}: "
        f"{info['points']} points, {info['dim'] or '-'}-d {info['distance'] or ''}".rstrip()
    )
    if info["shards"] is not None:
        click.echo(
            f"{info['shards']} shard(s), replication factor {info['replication_factor']}, "
            f"write consistency {info['write_consistency']}"
        )
        for shard, states in (info["replicas"] or {}).items():
            click.echo(f"  shard {shard}: {len(states)} replica(s) ({', '.join(states)})")
    if info["points"]:
        rows = [{"split": k, "points": v} for k, v in info["by_split"].items()]
        echo_table(rows)
        click.echo()
        echo_table([{"status": k, "points": v} for k, v in info["by_status"].items()])
        if info["by_origin"]:
            click.echo()
            echo_table([{"label origin": k, "points": v} for k, v in info["by_origin"].items()])


@store_group.command("snapshot")
@click.argument("out", type=click.Path(path_type=Path))
@store_options
@pass_state
def snapshot_command(
    state: CliState, out: Path, qdrant_url: str | None, api_key: str | None, collection: str | None
) -> None:
    """Write a snapshot of the collection to OUT (a file, or an existing folder).

    The embedded store writes a tar archive of its Qdrant Edge shard (restore it with
    `iris store restore`); a server writes its own collection snapshot.
    """
    from iris.store import open_store

    with open_store(state.workdir, store_settings(state, qdrant_url, api_key, collection)) as store:
        written = store.snapshot(out)
    size = written.stat().st_size / 2**20
    click.echo(f"wrote {written} ({size:.1f} MiB)")


@store_group.command("restore")
@click.argument("snapshot", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--collection", default=None, help="Collection to restore into (default: store.collection).")
@pass_state
def restore_command(state: CliState, snapshot: Path, collection: str | None) -> None:
    """Restore the embedded store from a SNAPSHOT written by `iris store snapshot`.

    The collection must not exist yet (restore under another name with --collection).
    """
    from iris.store.edge import restore_snapshot

    name = collection or state.settings().store.collection
    with restore_snapshot(snapshot, state.workdir.qdrant, collection=name) as store:
        click.echo(f"restored {store.count()} points into collection {name!r} ({store.path})")


@store_group.command("copy-to-server")
@click.option("--url", required=True, help="Qdrant server URL, e.g. http://localhost:6333.")
@click.option("--api-key", envvar="IRIS_QDRANT_API_KEY", default=None, help="API key of the server.")
@click.option("--collection", default=None, help="Server collection (default: the embedded one's name).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Points per upsert request.")
@json_option
@pass_state
def copy_command(
    state: CliState,
    url: str,
    api_key: str | None,
    collection: str | None,
    batch_size: int | None,
    as_json: bool,
) -> None:
    """Copy the embedded collection (vectors and payloads) into a Qdrant server.

    Start embedded, move to a server without re-embedding: afterwards point iris at the
    server with IRIS_QDRANT_URL=URL (or `[store] url` in iris.toml). Copying again is safe:
    points are replaced by id.
    """
    from iris.store.copy import copy_store
    from iris.store.edge import EdgeStore
    from iris.store.server import ServerStore

    conf = state.settings(store={"batch_size": batch_size}).store
    with (
        EdgeStore(state.workdir.qdrant, collection=conf.collection) as source,
        ServerStore.connect(
            url,
            api_key=api_key or "",
            collection=collection or conf.collection,
            timeout_s=conf.timeout_s,
            batch_size=conf.batch_size,
            shards=conf.shards,
            replication_factor=conf.replication_factor,
            write_consistency=conf.write_consistency,
        ) as target,
    ):
        report = copy_store(source, target, batch=conf.batch_size)
    if as_json:
        click.echo(json.dumps({"url": url, "collection": collection or conf.collection, **vars(report)}))
        return
    click.echo(
        f"copied {report.copied} points ({report.dim}-d {report.distance}) into "
        f"{collection or conf.collection!r} at {url}; it now holds {report.target_count}"
    )
    click.echo(f"use it: export IRIS_QDRANT_URL={url}")


COMMANDS = [store_group]
