"""The work directory's lock: one writer, the holder named, released however the holder ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from iris.cli import main
from iris.cli._common import LOCKING_COMMANDS, UNLOCKED_COMMANDS
from iris.errors import WorkdirError, WorkdirLockedError
from iris.lock import LOCK_FILE, WorkdirLock, read_holder
from iris.workdir import init_workdir

HOLD = """
import sys
from pathlib import Path
from iris.lock import WorkdirLock
lock = WorkdirLock(Path(sys.argv[1]), command=sys.argv[2]).acquire()
print("held", flush=True)
sys.stdin.read()
"""


@contextmanager
def held_elsewhere(root: Path, command: str = "iris run --until crowd") -> Iterator[subprocess.Popen[str]]:
    """Another process holding ``root``'s lock until the block ends."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root), command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_the_holder_writes_its_pid_and_command_and_forgets_them_on_release(tmp_path: Path) -> None:
    with WorkdirLock(tmp_path, command="iris ingest --pool p.tsv"):
        record = json.loads((tmp_path / LOCK_FILE).read_text())
        assert record["pid"] == os.getpid()
        assert record["command"] == "iris ingest --pool p.tsv"
    assert (tmp_path / LOCK_FILE).read_text() == ""
    assert read_holder(tmp_path / LOCK_FILE).pid is None


def test_a_second_writer_is_refused_with_one_line_naming_the_holder(tmp_path: Path) -> None:
    with held_elsewhere(tmp_path) as holder:
        with pytest.raises(WorkdirLockedError) as refused:
            WorkdirLock(tmp_path, command="iris embed").acquire()
        message = str(refused.value)
        assert message.startswith(
            f"{tmp_path.resolve()} is in use by PID {holder.pid} (iris run --until crowd, since "
        )
        assert message.endswith("UTC); wait for it to finish or stop it, then run this again")
        assert "\n" not in message
        assert isinstance(refused.value, WorkdirError)
        # the refused writer's open did not wipe the holder's record
        assert read_holder(tmp_path / LOCK_FILE).pid == holder.pid


def test_the_lock_goes_with_a_killed_holder(tmp_path: Path) -> None:
    with held_elsewhere(tmp_path) as holder:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        # the dead holder's record is still in the file; it locks nothing
        assert read_holder(tmp_path / LOCK_FILE).pid == holder.pid
        with WorkdirLock(tmp_path, command="iris run") as lock:
            assert read_holder(lock.path).pid == os.getpid()


def test_the_lock_is_reentrant_within_a_process(tmp_path: Path) -> None:
    outer = WorkdirLock(tmp_path, command="iris demo").acquire()
    with WorkdirLock(tmp_path, command="iris run"):
        assert read_holder(outer.path).command == "iris demo"
    assert read_holder(outer.path).pid == os.getpid()  # still held by the outer one
    assert _try_elsewhere(tmp_path) == "WorkdirLockedError"
    outer.release()
    assert _try_elsewhere(tmp_path) == "acquired"
    with WorkdirLock(tmp_path, command="iris run"):
        pass


def _try_elsewhere(root: Path) -> str:
    """Another process tries the lock: ``"acquired"`` or the error's class name."""
    code = "import sys; from pathlib import Path; from iris.lock import WorkdirLock\n"
    code += "try:\n    WorkdirLock(Path(sys.argv[1]), command='x').acquire()\nexcept Exception as e:\n"
    code += "    print(type(e).__name__)\nelse:\n    print('acquired')\n"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run(
        [sys.executable, "-c", code, str(root)], capture_output=True, text=True, env=env, check=True
    )
    return out.stdout.strip()


def _leaf_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> set[str]:
    names: set[str] = set()
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            names |= _leaf_commands(command, (*prefix, name))
        else:
            names.add(" ".join((*prefix, name)))
    return names


def test_every_command_is_either_locking_or_not() -> None:
    assert not LOCKING_COMMANDS & UNLOCKED_COMMANDS
    assert _leaf_commands(main) == LOCKING_COMMANDS | UNLOCKED_COMMANDS


@pytest.mark.parametrize(
    ("args", "refused"),
    [
        (["embed"], True),
        (["run"], True),
        (["crowd", "collect"], True),
        (["crowd", "launch"], True),
        (["crowd", "status"], False),
        (["data", "stats"], False),
        (["similar", "1"], False),
    ],
)
def test_writing_commands_are_refused_while_another_writes(
    tmp_path: Path, args: list[str], refused: bool
) -> None:
    workdir = init_workdir(tmp_path / "work")
    with held_elsewhere(workdir.root, "iris run") as holder:
        result = CliRunner().invoke(main, ["--workdir", str(workdir.root), *args])
    assert result.exit_code == 2
    line = result.output.strip()
    assert "\n" not in line
    in_use = f"iris: error: {workdir.root} is in use by PID {holder.pid} (iris run, since "
    # a read-only command gets past the lock and fails for its own reason: nothing is ingested
    assert line.startswith(in_use) is refused, line


def test_the_lock_records_the_command_line_and_is_released_after_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from iris import pipeline

    workdir = init_workdir(tmp_path / "work")
    (workdir.root / "state.json").write_text("{")  # makes `iris run` stop right after the lock
    seen: list[str] = []
    original = pipeline._read_state

    def spy(path: Path) -> dict[str, object]:
        seen.append(read_holder(workdir.root / LOCK_FILE).command)
        return original(path)

    monkeypatch.setattr(pipeline, "_read_state", spy)
    result = CliRunner().invoke(main, ["--workdir", str(workdir.root), "run", "--until", "embed"])
    assert result.exit_code == 2
    assert seen == [f"iris --workdir {workdir.root} run --until embed"]
    assert (workdir.root / LOCK_FILE).read_text() == ""  # released when the command ended
    assert _try_elsewhere(workdir.root) == "acquired"


def test_init_force_and_demo_lock_the_directory_they_make(tmp_path: Path) -> None:
    workdir = init_workdir(tmp_path / "demo" / "work")
    with held_elsewhere(workdir.root, "iris demo") as holder:
        for args in (["init", "--force", str(workdir.root)], ["demo", "--dir", str(tmp_path / "demo")]):
            result = CliRunner().invoke(main, args)
            assert result.exit_code == 2
            assert result.output.startswith(
                f"iris: error: {workdir.root} is in use by PID {holder.pid} (iris demo, since "
            )
    assert not (tmp_path / "demo" / "data").exists()  # the demo built nothing
