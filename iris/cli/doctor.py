"""``iris doctor``: the devices and runtimes found, and the checks ``iris run`` makes first."""

from __future__ import annotations

import importlib.metadata
import json
from typing import Any

import click

from iris.cli._common import CliState, json_option, pass_state
from iris.errors import PreflightError, WorkdirError

RUNTIMES = (
    "torch",
    "torchvision",
    "onnxruntime",
    "onnxruntime-gpu",
    "qdrant-edge-py",
    "qdrant-client",
    "ray",
)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _checks(state: CliState, every_stage: bool) -> tuple[str, list[dict[str, Any]]]:
    """Where the checks looked and, per check, ok / failed (with the problems) / not needed."""
    from iris.pipeline import STAGE_NAMES, RunState
    from iris.preflight import CHECKS, Needs

    workdir = state.workdir
    try:
        run_state = RunState(workdir)
    except WorkdirError as exc:
        return str(workdir.root), [{"check": "run state", "result": "failed", "problems": [str(exc)]}]
    stages = STAGE_NAMES if every_stage else run_state.to_run()
    needs = Needs(workdir, state.settings(), tuple(stages), run_state.data.get("manifests", {}))
    rows = []
    for check in CHECKS:
        if not needs.runs(*check.stages):
            rows.append({"check": check.name, "result": "not needed", "problems": []})
            continue
        problems = [p.message for p in check.run(needs)]
        rows.append({"check": check.name, "result": "failed" if problems else "ok", "problems": problems})
    where = f"{workdir.root}, stages to check: {', '.join(stages) or 'none (every stage is done)'}"
    return where, rows


@click.command("doctor")
@click.option(
    "--all-stages",
    is_flag=True,
    help="Check what every stage needs, not only those iris run still has to run.",
)
@json_option
@pass_state
def doctor_command(state: CliState, all_stages: bool, as_json: bool) -> None:
    """Devices and runtimes found, and the checks `iris run` makes before its first stage
    (weights, crowd backend, store, manifests, disk). Exits non-zero when a check fails."""
    from iris.devices import describe_devices, format_devices

    devices = describe_devices()
    runtimes = {p: _version(p) for p in RUNTIMES}
    try:
        state.workdir  # noqa: B018 - found here so that a missing one is a note, not a failure
    except WorkdirError as exc:
        where, rows = f"no work directory: {exc}", list[dict[str, Any]]()
    else:
        where, rows = _checks(state, all_stages)
    failed = [row for row in rows if row["result"] == "failed"]
    if as_json:
        click.echo(
            json.dumps({"devices": devices, "runtimes": runtimes, "where": where, "checks": rows}, indent=2)
        )
    else:
        click.echo("runtimes: " + ", ".join(f"{p} {v or '-'}" for p, v in runtimes.items()))
        for line in format_devices(devices):
            click.echo(line)
        click.echo(f"\nchecks for {where}")
        for row in rows:
            click.echo(f"  {row['result']:<10}  {row['check']}")
            for problem in row["problems"]:
                click.echo(f"              {problem}")
    if failed:
        n = sum(len(row["problems"]) for row in failed)
        raise PreflightError(
            f"{n} problem(s) found by {', '.join(row['check'] for row in failed)}; see above"
        )


COMMANDS = [doctor_command]
