"""Settings: precedence, the declared ranges and choices, and what a bad value says."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import pytest

from iris.config import (
    SECTIONS,
    AnyOf,
    ConfigWarning,
    Interval,
    Settings,
    _hints,
    above,
    at_least,
    between,
    check_settings,
    expected,
    load_settings,
    render_toml,
)
from iris.errors import ConfigError
from iris.workdir import init_workdir


def load_toml(tmp_path: Path, text: str, **kwargs: Any) -> Settings:
    (tmp_path / "iris.toml").write_text(text)
    return load_settings(tmp_path, environ=kwargs.pop("environ", {}), **kwargs)


def refusal(tmp_path: Path, text: str, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load_toml(tmp_path, text, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message.replace(str(tmp_path / "iris.toml"), "iris.toml")


# --- precedence and round trip ----------------------------------------------------------


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


def test_init_writes_a_file_that_reads_back_as_the_defaults(tmp_path: Path) -> None:
    work = init_workdir(tmp_path / "w")
    assert load_settings(work.root, environ={}) == Settings()
    lines = work.config.read_text().splitlines()
    # What a key allows is written beside it, where it says more than the type.
    assert "overlap = 5  # an integer >= 1" in lines
    assert 'kind = "edge"  # one of edge, server' in lines
    assert "use_kmeans = true" in lines and 'api_key = ""' in lines


def test_rendered_settings_round_trip_with_every_kind_of_value(tmp_path: Path) -> None:
    custom = Settings()
    custom = dataclasses.replace(
        custom,
        task=dataclasses.replace(custom.task, positive_name='a "quoted" \\ name'),
        propagate=dataclasses.replace(custom.propagate, ks=(1, 9), weightings=("distance",)),
        pseudolabel=dataclasses.replace(custom.pseudolabel, members=("k5-uniform-euclid",), exact=True),
        crowd=dataclasses.replace(
            custom.crowd, price_per_page=0.125, toloka_url="https://sandbox.toloka.dev"
        ),
    )
    (tmp_path / "iris.toml").write_text(render_toml(custom))
    assert load_settings(tmp_path, environ={}) == custom


def test_a_later_source_can_repair_an_earlier_one(tmp_path: Path) -> None:
    """Ranges are checked on the merged settings, not on each source."""
    settings = load_toml(tmp_path, "[crowd]\noverlap = 0\n", environ={"IRIS_CROWD_OVERLAP": "5"})
    assert settings.crowd.overlap == 5


# --- the declarations ----------------------------------------------------------------------


def test_the_defaults_meet_their_own_declarations() -> None:
    check_settings(Settings())


def test_every_number_declares_its_range() -> None:
    """New numeric settings must say what they allow (an Annotated constraint)."""
    bare = []
    for section in SECTIONS:
        for key, annotation in _hints(section).items():
            base = (
                typing.get_args(annotation)[0] if typing.get_origin(annotation) is typing.Annotated else None
            )
            plain = annotation if base is None else base
            if plain in (int, float) and base is None:
                bare.append(f"{section}.{key}")
    assert bare == []


@pytest.mark.parametrize(
    ("interval", "inside", "outside", "words"),
    [
        (at_least(1), [1, 2, 10**9], [0, -1, 0.999], ">= 1"),
        (above(0), [1e-9, 5.0], [0, -0.1], "> 0"),
        (between(0, 1), [0, 0.5, 1], [-0.01, 1.01], "in [0, 1]"),
        (between(0, 1, "right"), [0.01, 1], [0, 1.5], "in (0, 1]"),
        (between(0, 1, "left"), [0, 0.99], [1, 1.0], "in [0, 1)"),
        (Interval(None, 5, "neither"), [-100, 4.9], [5, 6], "< 5"),
        (AnyOf((Interval(0, 0), at_least(2))), [0, 2, 7], [1, -1], "0 or >= 2"),
    ],
)
def test_intervals_allow_and_say_their_range(
    interval: Interval | AnyOf, inside: list[float], outside: list[float], words: str
) -> None:
    assert all(interval.allows(v) for v in inside)
    assert not any(interval.allows(v) for v in outside)
    assert interval.describe() == words


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("crowd.overlap", "an integer >= 1"),
        ("crowd.exam_pass", "a number in (0, 1]"),
        ("store.kind", "one of edge, server"),
        ("propagate.ks", "a list (not empty), each an integer >= 1"),
        ("propagate.weightings", "a list (not empty), each one of uniform, distance"),
        ("pseudolabel.estimate_folds", "an integer 0 or >= 2"),
        ("task.label_column", "non-empty text"),
        ("train.device", "auto, cpu, mps or cuda[:N]"),
        ("crowd.toloka_url", "empty or an http(s):// URL"),
        ("store.url", "empty, an http(s):// URL, :memory: or local:PATH"),
        ("pseudolabel.use_kmeans", "true or false"),
    ],
)
def test_declarations_read_as_words(key: str, words: str) -> None:
    section, name = key.split(".")
    assert expected(_hints(section)[name]) == words


def choices(section: str, key: str) -> set[str]:
    """The Literal's members inside a declaration (through Annotated and tuple)."""
    annotation = _hints(section)[key]
    while typing.get_origin(annotation) is not typing.Literal:
        annotation = typing.get_args(annotation)[0]
    return set(typing.get_args(annotation))


def test_choices_match_the_registries() -> None:
    """Literals in the settings name exactly what the stages' registries hold."""
    from iris.crowd.aggregation import AGGREGATORS
    from iris.embed.backbones import BACKBONES
    from iris.train.heads import HEADS
    from iris.train.schedule import SCHEDULES

    assert choices("aggregate", "method") == set(AGGREGATORS)
    assert choices("train", "schedule") == set(SCHEDULES)
    assert choices("train", "head") == set(HEADS)
    assert choices("embed", "backbone") == choices("train", "backbone") == set(BACKBONES)


def test_choices_are_what_propagation_votes_with() -> None:
    import importlib

    propagate = importlib.import_module("iris.propagate")
    if not hasattr(propagate, "Weighting"):  # moved to the shared neighbours module
        propagate = importlib.import_module("iris.neighbours")
    assert choices("propagate", "weightings") <= set(typing.get_args(propagate.Weighting))
    assert choices("propagate", "metrics") <= set(typing.get_args(propagate.Metric))


@pytest.mark.parametrize(
    "name",
    [
        "k3-uniform",
        "k15-distance",
        "k5-uniform-euclid",
        "k7-distance-dot",
        "k0-uniform",
        "k00-uniform",
        "k05-uniform",
        " k3-uniform ",
        "k5-gauss",
        "k5",
        "k-1-uniform",
    ],
)
def test_member_names_accepted_as_the_member_parser_reads_them(name: str, tmp_path: Path) -> None:
    from iris.pseudolabel.members import parse_member

    try:
        parse_member(name)
        parses = True
    except ConfigError:
        parses = False
    try:
        load_toml(tmp_path, f"[pseudolabel]\nmembers = ['{name}']\n")
        loads = True
    except ConfigError:
        loads = False
    assert loads == parses


# --- reading values -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "key", "value"),
    [
        ("[crowd]\noverlap = 3.0", "crowd.overlap", 3),
        ("[ingest]\ntimeout_s = 2", "ingest.timeout_s", 2.0),
        ("[task]\npositive = 1", "task.positive", "1"),
        ("[propagate]\nks = [1, 2]", "propagate.ks", (1, 2)),
    ],
)
def test_toml_values_become_the_declared_type(tmp_path: Path, line: str, key: str, value: object) -> None:
    section, name = key.split(".")
    got = getattr(getattr(load_toml(tmp_path, line + "\n"), section), name)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(
    ("variable", "text", "key", "value"),
    [
        ("IRIS_CROWD_OVERLAP", " 4 ", "crowd.overlap", 4),
        ("IRIS_CROWD_OVERLAP", "4.0", "crowd.overlap", 4),
        ("IRIS_INGEST_TIMEOUT_S", "0.5", "ingest.timeout_s", 0.5),
        ("IRIS_SELECT_EXACT", "yes", "select.exact", True),
        ("IRIS_SELECT_EXACT", "OFF", "select.exact", False),
        ("IRIS_PROPAGATE_KS", "3, 5,9", "propagate.ks", (3, 5, 9)),
        (
            "IRIS_PSEUDOLABEL_MEMBERS",
            "k3-uniform,k5-distance",
            "pseudolabel.members",
            ("k3-uniform", "k5-distance"),
        ),
        ("IRIS_STORE_KIND", "server", "store.kind", "server"),
    ],
)
def test_environment_text_becomes_the_declared_type(
    variable: str, text: str, key: str, value: object
) -> None:
    section, name = key.split(".")
    environ = {variable: text, "IRIS_STORE_URL": "http://q:6333"} if "STORE" in variable else {variable: text}
    assert getattr(getattr(load_settings(None, environ=environ), section), name) == value


@pytest.mark.parametrize(
    ("variable", "text", "message"),
    [
        (
            "IRIS_CROWD_OVERLAP",
            "2.9",
            'crowd.overlap = "2.9" (from IRIS_CROWD_OVERLAP): expected an integer >= 1',
        ),
        (
            "IRIS_CROWD_OVERLAP",
            "three",
            'crowd.overlap = "three" (from IRIS_CROWD_OVERLAP): expected an integer',
        ),
        ("IRIS_CROWD_OVERLAP", "0", "crowd.overlap = 0 (from IRIS_CROWD_OVERLAP): expected an integer >= 1"),
        (
            "IRIS_SELECT_EXACT",
            "maybe",
            'select.exact = "maybe" (from IRIS_SELECT_EXACT): expected true or false',
        ),
        (
            "IRIS_INGEST_TIMEOUT_S",
            "nan",
            'ingest.timeout_s = "nan" (from IRIS_INGEST_TIMEOUT_S): expected a number',
        ),
        (
            "IRIS_INGEST_TIMEOUT_S",
            "inf",
            'ingest.timeout_s = "inf" (from IRIS_INGEST_TIMEOUT_S): expected a number',
        ),
        ("IRIS_PROPAGATE_KS", "", "propagate.ks = [] (from IRIS_PROPAGATE_KS): expected a list (not empty)"),
        ("IRIS_QDRANT_URL", "localhost:6333", 'store.url = "localhost:6333" (from IRIS_QDRANT_URL)'),
    ],
)
def test_a_bad_environment_value_names_its_variable(variable: str, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, environ={variable: text})
    assert str(info.value).startswith(message)


# --- one bad value per section, and the issue 11 cases ------------------------------------

BAD_VALUE_PER_SECTION = [
    ("task", "label_column = '  '", 'task.label_column = "  " (from iris.toml): expected non-empty text'),
    ("ingest", "timeout_s = -1", "ingest.timeout_s = -1.0 (from iris.toml): expected a number > 0"),
    (
        "embed",
        "finetune_epochs = -1",
        "embed.finetune_epochs = -1 (from iris.toml): expected an integer >= 0",
    ),
    (
        "store",
        "collection = 'my coll'",
        'store.collection = "my coll" (from iris.toml): expected letters, digits',
    ),
    (
        "pseudolabel",
        "estimate_folds = 1",
        "pseudolabel.estimate_folds = 1 (from iris.toml): expected an integer 0 or",
    ),
    ("select", "neighbours = 0", "select.neighbours = 0 (from iris.toml): expected an integer >= 1"),
    ("crowd", "overlap = 2.9", "crowd.overlap = 2.9 (from iris.toml): expected an integer >= 1"),
    ("rounds", "round_size = 0.0", "rounds.round_size = 0.0 (from iris.toml): expected a number in (0, 1]"),
    (
        "aggregate",
        "method = 'vote'",
        'aggregate.method = "vote" (from iris.toml): expected one of majority-vote',
    ),
    (
        "propagate",
        "weightings = ['gaussian']",
        'propagate.weightings = ["gaussian"] (from iris.toml): item "gaussian": expected one of',
    ),
    ("train", "val_fraction = 1.0", "train.val_fraction = 1.0 (from iris.toml): expected a number in [0, 1)"),
]


def test_the_cases_cover_every_section() -> None:
    assert [case[0] for case in BAD_VALUE_PER_SECTION] == list(SECTIONS)


@pytest.mark.parametrize(("section", "line", "message"), BAD_VALUE_PER_SECTION)
def test_one_bad_value_per_section_is_named(tmp_path: Path, section: str, line: str, message: str) -> None:
    assert refusal(tmp_path, f"[{section}]\n{line}\n").startswith(message)


def test_an_unknown_backbone_is_refused_at_load_not_at_embed(tmp_path: Path) -> None:
    assert refusal(tmp_path, "[train]\nbackbone = 'resnet19'\n") == (
        'train.backbone = "resnet19" (from iris.toml): expected one of resnet18, resnet34, resnet50, '
        "resnet101, resnet152, efficientnet_lite0, efficientnet_lite1, efficientnet_lite2"
    )


def test_overlap_2_9_is_refused_not_truncated(tmp_path: Path) -> None:
    assert refusal(tmp_path, "[crowd]\noverlap = 2.9\n") == (
        "crowd.overlap = 2.9 (from iris.toml): expected an integer >= 1"
    )


def test_a_top_level_scalar_for_a_section_is_one_line(tmp_path: Path) -> None:
    assert refusal(tmp_path, "train = 5\n") == (
        "train = 5 (from iris.toml): expected a [train] table of settings, "
        "e.g. [train] followed by key = value lines"
    )


def test_a_top_level_key_names_its_section(tmp_path: Path) -> None:
    assert refusal(tmp_path, "overlap = 3\n") == (
        "overlap = 3 (from iris.toml) is outside any section; "
        "did you mean crowd.overlap, i.e. overlap = ... under [crowd]?"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[crowd]\noverlp = 3\n", "unknown key crowd.overlp (from iris.toml); did you mean crowd.overlap?"),
        ("[trian]\nepochs = 3\n", "unknown section [trian] (from iris.toml); did you mean [train]?"),
        ("[embed]\nzzz = 1\n", "unknown key embed.zzz (from iris.toml); expected one of backbone, weights,"),
        ("[nosuch]\nx = 1\n", "unknown section [nosuch] (from iris.toml); expected one of task, ingest,"),
        ("[embed\n", "iris.toml: invalid TOML"),
    ],
)
def test_unknown_names_in_the_file_are_refused_with_the_nearest(
    tmp_path: Path, text: str, message: str
) -> None:
    assert refusal(tmp_path, text).startswith(message)


def test_a_misspelt_variable_is_warned_with_the_nearest_key() -> None:
    with pytest.warns(ConfigWarning) as caught:
        settings = load_settings(None, environ={"IRIS_CROWD_OVERLP": "7"})
    assert settings.crowd.overlap == Settings().crowd.overlap != 7  # the misspelt one is not read
    assert [str(w.message) for w in caught] == [
        "IRIS_CROWD_OVERLP is not an iris setting and is ignored; "
        "the nearest is IRIS_CROWD_OVERLAP (crowd.overlap)"
    ]


def test_variables_that_are_not_settings_are_not_warned() -> None:
    lines: list[str] = []
    environ = {"IRIS_WORKDIR": "/w", "IRIS_PROGRESS": "0", "IRIS_QDRANT_API_KEY": "k", "HOME": "/root"}
    load_settings(None, environ=environ, warn=lines.append)
    assert lines == []


@pytest.mark.parametrize(
    ("overrides", "flags", "message"),
    [
        (
            {"ingest": {"concurrency": 0}},
            None,
            "ingest.concurrency = 0 (from --concurrency): expected an integer >= 1",
        ),
        (
            {"pseudolabel": {"estimate_folds": 1}},
            {"folds": "--folds", "seed": "--seed"},
            "pseudolabel.estimate_folds = 1 (from --folds)",
        ),
        (
            {"store": {"url": "ftp://x"}},
            {"qdrant_url": "--qdrant-url"},
            'store.url = "ftp://x" (from --qdrant-url)',
        ),
        ({"crowd": {"overlap": 0}}, {"other": "--other"}, "crowd.overlap = 0 (from a command-line flag)"),
    ],
)
def test_a_bad_flag_is_named(
    overrides: dict[str, dict[str, Any]], flags: dict[str, str] | None, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, environ={}, overrides=overrides, flags=flags)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("ks = [3, 0]", "propagate.ks = [3, 0] (from iris.toml): item 0: expected an integer >= 1"),
        ("ks = []", "propagate.ks = [] (from iris.toml): expected a list (not empty), each an integer >= 1"),
        (
            "metrics = ['cosine', 'l1']",
            'propagate.metrics = ["cosine", "l1"] (from iris.toml): '
            'item "l1": expected one of cosine, dot, euclid',
        ),
        ("ks = 3", "propagate.ks = 3 (from iris.toml): expected a list (not empty), each an integer >= 1"),
    ],
)
def test_a_bad_list_names_the_item(tmp_path: Path, line: str, message: str) -> None:
    assert refusal(tmp_path, f"[propagate]\n{line}\n") == message


def test_a_repeated_member_is_refused(tmp_path: Path) -> None:
    assert refusal(tmp_path, "[pseudolabel]\nmembers = ['k3-uniform', 'k3-uniform']\n").endswith(
        "expected a list (not empty, without repeats), each k<K>-<uniform|distance>[-<cosine|dot|euclid>]"
    )


def test_every_bad_value_is_counted_in_one_line(tmp_path: Path) -> None:
    message = refusal(tmp_path, "[crowd]\noverlap = 0\nexam = 0\n[train]\nepochs = 0\n")
    # In the order the sections and fields are declared.
    assert message.startswith("crowd.exam = 0 (from iris.toml): expected an integer >= 1")
    assert message.endswith("(also invalid: crowd.overlap, train.epochs)")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[ingest]\nmin_side = 64\nmax_side = 32\n",
            "ingest.min_side = 64 (from iris.toml) and ingest.max_side = 32 (from iris.toml): "
            "expected ingest.min_side <= ingest.max_side (otherwise every image is rejected)",
        ),
        (
            "[task]\npositive = 'yes'\nnegative = ' YES'\n",
            'task.positive = "yes" (from iris.toml) and task.negative = " YES" (from iris.toml): '
            "expected two different label cell values (compared case-insensitively)",
        ),
    ],
)
def test_rules_across_fields_name_every_key(tmp_path: Path, text: str, message: str) -> None:
    assert refusal(tmp_path, text) == message


def test_a_value_built_in_code_is_checked_too() -> None:
    settings = dataclasses.replace(Settings(), select=dataclasses.replace(Settings().select, budget=-1))
    with pytest.raises(
        ConfigError, match=r"^select\.budget = -1 \(from default\): expected an integer >= 0$"
    ):
        check_settings(settings)
