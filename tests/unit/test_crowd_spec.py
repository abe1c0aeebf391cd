"""The campaign spec: defaults that match the original campaign, validation, the GT split."""

from __future__ import annotations

import polars as pl
import pytest

from iris import tables
from iris.config import load_settings
from iris.crowd.instructions import render_instructions
from iris.crowd.spec import CampaignSpec, split_ground_truth
from iris.errors import CrowdError


def spec(**crowd: object) -> CampaignSpec:
    environ = {f"IRIS_CROWD_{k.upper()}": str(v) for k, v in crowd.items()}
    return CampaignSpec.from_settings(load_settings(None, environ=environ))


def images(n_gt: int, *, positives: int | None = None) -> pl.DataFrame:
    positives = n_gt // 2 if positives is None else positives
    return pl.DataFrame(
        {
            "id": list(range(1, n_gt + 6)),
            "source": [f"s{i}" for i in range(1, n_gt + 6)],
            "path": "",
            "split": ["gt"] * n_gt + ["pool"] * 5,
            "label": [1] * positives + [0] * (n_gt - positives) + [None] * 5,
            "width": 1,
            "height": 1,
            "sha256": "",
        }
    ).cast(tables.IMAGES)  # type: ignore[arg-type]


def test_defaults_match_the_original_campaign_but_for_the_overlap() -> None:
    s = spec()
    # The seed's campaign bought 3 answers a task; the rounds buy the least certain images
    # and take 5 (crowd.overlap's docstring, benchmarks/README.md).
    assert (s.training, s.exam, s.overlap, s.page_size, s.honeypots_per_page) == (30, 20, 5, 50, 1)
    assert s.real_per_page == 49
    assert s.pages_for(3000) == 307  # ceil(15000 / 49)
    assert s.cost_for(3000) == pytest.approx(307 * 0.05)
    assert s.rules.majority.min_others == 4  # overlap − 1
    assert s.rules.fast.page_size == 50


@pytest.mark.parametrize("honeypots", [50, 51])
def test_honeypots_must_leave_room_on_the_page(honeypots: int) -> None:
    # One field's range is checked with the settings (tests/unit/test_config.py); the spec
    # keeps the rules across fields.
    message = rf"crowd.honeypots_per_page = {honeypots}, expected < crowd.page_size \(50\)"
    with pytest.raises(CrowdError, match=message):
        spec(honeypots_per_page=honeypots)


def test_same_class_names_are_refused() -> None:
    settings = load_settings(
        None, environ={"IRIS_TASK_POSITIVE_NAME": "tree", "IRIS_TASK_NEGATIVE_NAME": "Tree"}
    )
    with pytest.raises(CrowdError, match="both classes are named"):
        CampaignSpec.from_settings(settings)


def test_too_little_ground_truth_says_how_much_is_needed() -> None:
    with pytest.raises(CrowdError, match=r"40 labeled ground-truth images.*need 51"):
        split_ground_truth(images(40), spec())


def test_split_sizes_roles_and_balance() -> None:
    split = split_ground_truth(images(200), spec())
    counts = dict(split.group_by("role").len().iter_rows())
    assert counts == {"training": 30, "exam": 20, "honeypot": 150}
    training = split.filter(pl.col("role") == "training")
    assert training["label"].sum() == 15  # classes alternate
    assert split["id"].n_unique() == 200
    assert split.schema["label"] == pl.Int8


def test_split_is_deterministic_by_seed() -> None:
    a = split_ground_truth(images(100), spec(seed=1))
    b = split_ground_truth(images(100), spec(seed=1))
    c = split_ground_truth(images(100), spec(seed=2))
    assert a.equals(b)
    assert not a.equals(c)


def test_split_with_one_class_short() -> None:
    split = split_ground_truth(images(60, positives=5), spec())
    assert split.filter(pl.col("role") == "training").height == 30
    assert split.filter(pl.col("role") == "exam").height == 20


def test_instructions_name_the_classes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    html = render_instructions(spec(), positive_examples=["https://x/a.png"], negative_examples=[])
    assert "conifer" in html and "deciduous" in html and 'src="https://x/a.png"' in html
    assert "80%" in html
    bad = tmp_path / "bad.html"
    bad.write_text("<p>$nope</p>")
    with pytest.raises(CrowdError, match="bad placeholder"):
        render_instructions(spec(instructions=str(bad)))
    with pytest.raises(CrowdError, match="is not a file"):
        render_instructions(spec(instructions=str(tmp_path / "missing.html")))
