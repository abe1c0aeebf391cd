"""One writer per work directory: an OS file lock on ``WORK/.lock``.

Every command that writes to a work directory (``iris run``, ``demo``, ``ingest``, the
stages, ``crowd launch`` …; the list is :data:`iris.cli._common.LOCKING_COMMANDS`) holds
``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``WORK/.lock`` for as long as it runs. A second
writer does not wait: it is refused at once with one line naming the holder's PID and
command line, which the holder wrote into the lock file. The kernel drops the lock when
the holder's process ends, however it ends (``kill -9`` included; a child it forked without
exec, such as a worker process, shares the lock until it ends too), so there is never a stale
lock to delete: a left-over ``.lock`` file with an old PID in it locks nothing.

Within one process the lock is re-entrant (a nested acquisition of a path this process
already holds only counts), because ``flock`` locks belong to an open file, and a second
``open`` + ``flock`` of the same file in the same process would refuse its own holder.

Read-only commands (``similar``, ``crowd status``, ``data stats``) take no lock, and
neither does ``crowd serve``: the labeler writes only its SQLite database, where every
write is its own transaction, and it must keep serving while ``iris run`` or ``crowd
collect`` read what it has saved.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from iris.errors import WorkdirLockedError

LOCK_FILE = ".lock"

_held: dict[Path, tuple[int, int]] = {}
"""Locks this process holds: resolved path → (file descriptor, nesting depth)."""


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as its lock file says."""

    pid: int | None
    command: str
    since: str

    def describe(self) -> str:
        if self.pid is None:
            return "another process (it has not written its PID yet)"
        started = f", since {self.since}" if self.since else ""
        return f"PID {self.pid} ({self.command or 'command unknown'}{started})"


def read_holder(path: Path) -> Holder:
    """What the lock file at ``path`` says about its holder (empty fields when it says nothing)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Holder(None, "", "")
    if not isinstance(record, dict):
        return Holder(None, "", "")
    pid = record.get("pid")
    return Holder(
        pid if isinstance(pid, int) else None, str(record.get("command", "")), str(record.get("since", ""))
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


class WorkdirLock:
    """``WORK/.lock``, held exclusively while a writing command runs.

    Use it as ``with WorkdirLock(root, command="iris run"):``; or :meth:`acquire` and
    :meth:`release`.

    Args:
        root: the work directory (created if missing).
        command: the command line written into the lock file for a refused writer to see.
    """

    def __init__(self, root: Path, *, command: str) -> None:
        self.path = (root / LOCK_FILE).resolve()
        self.command = command
        self._acquired = False

    def acquire(self) -> WorkdirLock:
        """Take the lock, or raise at once if another process holds it.

        Raises:
            WorkdirLockedError: another process holds it; the message names its PID and command.
        """
        import fcntl

        if self._acquired:
            return self
        if self.path in _held:
            fd, depth = _held[self.path]
            _held[self.path] = (fd, depth + 1)
            self._acquired = True
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # O_RDWR without O_TRUNC: the holder's record must survive a refused writer's open.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise WorkdirLockedError(
                f"{self.path.parent} is in use by {self._holder().describe()}; "
                "wait for it to finish or stop it, then run this again"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        since = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        record = json.dumps({"pid": os.getpid(), "command": self.command, "since": since}) + "\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode("utf-8"), 0)
        _held[self.path] = (fd, 1)
        self._acquired = True
        return self

    def _holder(self) -> Holder:
        """The holder's record; it may lag the lock by a moment (taken, not yet written) or name a
        process that died holding an older lock, so wait briefly for a live PID."""
        holder = read_holder(self.path)
        for _ in range(20):
            if holder.pid is not None and _alive(holder.pid):
                break
            time.sleep(0.05)
            holder = read_holder(self.path)
        return holder

    def release(self) -> None:
        """Give the lock back (the last release of a nested one unlocks the file)."""
        import fcntl

        if not self._acquired:
            return
        self._acquired = False
        fd, depth = _held[self.path]
        if depth > 1:
            _held[self.path] = (fd, depth - 1)
            return
        del _held[self.path]
        # Forget the holder first: an empty lock file names nobody.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> WorkdirLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
