"""The purchase log: every page and paid exam, appended before the next one is bought.

``WORK/crowd/simulated/pages.jsonl`` holds one JSON object per line: a purchase (``key`` =
page id, ``exam:<worker>`` or ``ban:<worker>``) or a campaign note (``done``, ``stopped``).
The simulation is deterministic, so a re-run replays it and takes the pages already in the
log instead of buying them again: a kill, even a SIGKILL in the middle of a line, never
buys a page twice. The answers and bans of a campaign are read back from this log.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from iris import tables
from iris.crowd import quality


class PurchaseLog:
    """Append-only JSON-lines log of what was bought; a torn last line (a kill) is ignored."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        self.meta: dict[str, Any] = {}
        if path.exists():
            text = path.read_text(encoding="utf-8")
            if text and not text.endswith("\n"):
                # A kill cut the last line short: drop it, so the next record starts a clean line.
                text = text[: text.rfind("\n") + 1]
                with path.open("r+", encoding="utf-8") as fh:
                    fh.truncate(len(text.encode("utf-8")))
            for line in text.splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the line a kill cut short; its purchase is redone
                self._remember(record)

    def _remember(self, record: dict[str, Any]) -> None:
        if "key" in record:
            self.records[record["key"]] = record
        else:
            self.meta.update(record)

    def append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, separators=(",", ":")) + "\n")
            # A killed process loses nothing that reached the OS; fsync per page would only
            # guard against power loss and costs more than the simulation itself.
            fh.flush()
        self._remember(record)

    def answers(self, *, reject_banned: bool) -> pl.DataFrame:
        """ANSWERS table of every logged page (without banned workers' with ``reject_banned``)."""
        rows: dict[str, list[Any]] = {k: [] for k in tables.ANSWERS}
        for key, rec in self.records.items():
            if "tasks" not in rec or (reject_banned and f"ban:{rec['worker']}" in self.records):
                continue
            submitted = datetime.fromisoformat(rec["submitted_at"])
            for t, label, hp in zip(rec["tasks"], rec["labels"], rec["honeypot"], strict=True):
                rows["task"].append(t)
                rows["worker"].append(rec["worker"])
                rows["label"].append(label)
                rows["page"].append(key)
                rows["submitted_at"].append(submitted)
                rows["duration"].append(rec["duration"])
                rows["is_honeypot"].append(hp)
        return pl.DataFrame(rows, schema=tables.ANSWERS).sort("submitted_at", "page")

    def bans(self) -> pl.DataFrame:
        """BANS table of every logged ban."""
        rows = [
            {
                "worker": r["worker"],
                "rule": r["rule"],
                "detail": r["detail"],
                "at": datetime.fromisoformat(r["at"]),
                "until": datetime.fromisoformat(r["until"]),
            }
            for key, r in self.records.items()
            if key.startswith("ban:")
        ]
        return pl.DataFrame(rows, schema=quality.BANS) if rows else pl.DataFrame(schema=quality.BANS)
