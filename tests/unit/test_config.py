from __future__ import annotations

from pathlib import Path

import pytest

from iris.config import load_settings
from iris.errors import ConfigError
from iris.workdir import init_workdir


def test_precedence_flag_over_env_over_file(tmp_path: Path) -> None:
    work = init_workdir(tmp_path / "w")
    text = work.config.read_text().replace("finetune_epochs = 8", "finetune_epochs = 3")
    work.config.write_text(text)
    assert load_settings(work.root, environ={}).embed.finetune_epochs == 3
    env = {"IRIS_EMBED_FINETUNE_EPOCHS": "5"}
    assert load_settings(work.root, environ=env).embed.finetune_epochs == 5
    flags = {"embed": {"finetune_epochs": 7}}
    assert load_settings(work.root, environ=env, overrides=flags).embed.finetune_epochs == 7


def test_qdrant_url_alias_selects_server(tmp_path: Path) -> None:
    settings = load_settings(None, environ={"IRIS_QDRANT_URL": "http://127.0.0.1:6333"})
    assert settings.store.kind == "server"
    assert settings.store.url == "http://127.0.0.1:6333"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[embed]\nfinetune_epochs = 'many'\n", "embed.finetune_epochs: got 'many', expected int"),
        ("[nosuch]\nx = 1\n", "unknown section [nosuch]"),
        ("[embed]\nnosuch = 1\n", "unknown key embed.nosuch"),
        ("[store]\nkind = 'redis'\n", "expected one of edge, server"),
        ("[embed\n", "invalid TOML"),
    ],
)
def test_bad_settings_are_named(tmp_path: Path, toml: str, message: str) -> None:
    (tmp_path / "iris.toml").write_text(toml)
    with pytest.raises(ConfigError, match=None) as info:
        load_settings(tmp_path, environ={})
    assert message in str(info.value)
