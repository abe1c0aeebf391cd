"""``iris embed --executor ray`` on a local Ray instance: the local path's vectors, resumably."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from test_embed_stage import small_settings, write_digits_workdir

from iris.embed.stage import embed
from iris.store import open_store
from iris.workdir import Workdir

ray = pytest.importorskip("ray", reason="needs Ray (pip install 'iris-labeling[ray]')")

pytestmark = pytest.mark.slow  # starting Ray takes several seconds

N = 48


@pytest.fixture(scope="module")
def local_ray() -> Any:
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield ray
    ray.shutdown()


class Killed(Exception):
    """Stands for the process dying in the middle of a run."""


def test_ray_gives_the_local_vectors_and_resumes_after_a_kill(workdir: Workdir, local_ray: Any) -> None:
    frame = write_digits_workdir(workdir, n=N)
    local = small_settings(workdir)
    with open_store(workdir, local, collection="local") as store:
        local_report = embed(workdir, local, store)
        expected = store.export()
    assert local_report.embedded == N

    on_ray = small_settings(workdir, executor="ray")
    with open_store(workdir, on_ray, collection="ray") as store:
        writes = 0
        upsert = store.upsert

        def dies_after_two_batches(*args: Any) -> None:
            nonlocal writes
            if writes == 2:
                raise Killed
            writes += 1
            upsert(*args)

        store.upsert = dies_after_two_batches  # type: ignore[method-assign]
        with pytest.raises(Killed):
            embed(workdir, on_ray, store)
        written = store.count()
    assert 0 < written < N  # what the first run wrote before it died stays

    with open_store(workdir, on_ray, collection="ray") as store:
        report = embed(workdir, on_ray, store)
        got = store.export()
    assert report.model_reused  # the executor does not change the model
    assert (report.already_embedded, report.embedded, report.total) == (written, N - written, N)
    assert got.ids.tolist() == expected.ids.tolist() == sorted(frame["id"].to_list())
    assert np.abs(got.vectors - expected.vectors).max() <= 1e-5
    assert got.payloads == expected.payloads


def test_ray_executor_without_images_to_embed_starts_nothing(workdir: Workdir, local_ray: Any) -> None:
    from iris.embed.ray_executor import ray_vectors

    frame = write_digits_workdir(workdir, n=4).head(0)
    assert (
        list(ray_vectors(workdir.root / "none.onnx", frame, root=workdir.root, image_size=32, batch_size=8))
        == []
    )
