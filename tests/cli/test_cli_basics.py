from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from iris.cli import main


def test_help_lists_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "init" in result.output


def test_init_then_init_again_is_a_one_line_error(tmp_path: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(main, ["init", str(tmp_path / "w")])
    assert first.exit_code == 0, first.output
    assert (tmp_path / "w" / "iris.toml").exists()
    second = runner.invoke(main, ["init", str(tmp_path / "w")])
    assert second.exit_code == 2
    assert second.output.strip().count("\n") == 0
    assert "already exists" in second.output


def test_missing_workdir_is_reported(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--workdir", str(tmp_path / "nowhere"), "init", "--help"])
    assert result.exit_code == 0
