"""What the simulated crowd sold in a work directory, for the end-to-end tests."""

from __future__ import annotations

import json

from iris.workdir import Workdir


def pages_bought(workdir: Workdir) -> list[str]:
    """Every page the simulated crowd sold, campaign round by round (each round has its log)."""
    logs = [workdir.crowd / "simulated" / "pages.jsonl"]
    rounds = workdir.crowd / "rounds"
    if rounds.exists():
        logs += [d / "simulated" / "pages.jsonl" for d in sorted(rounds.iterdir(), key=lambda d: int(d.name))]
    keys = []
    for log in logs:
        if not log.exists():
            continue
        for line in log.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "tasks" in record:
                keys.append(f"{log.parent.parent.name}/{record['key']}")
    return keys
