"""Learning-rate schedules: Noam matches its formula; the registry; LambdaLR wiring."""

from __future__ import annotations

import pytest
import torch

from iris.errors import ConfigError
from iris.train.schedule import SCHEDULES, ScheduleParams, get_schedule, make_scheduler, noam

P = ScheduleParams(factor=2.0, model_size=256, warmup=100, total=1000)


@pytest.mark.parametrize("step", [1, 7, 50, 99, 100, 101, 400, 10_000])
def test_noam_equals_its_formula(step: int) -> None:
    expected = 2.0 * 256**-0.5 * min(step**-0.5, step * 100**-1.5)
    assert noam(step, P) == pytest.approx(expected, rel=1e-12)


def test_noam_peaks_at_warmup() -> None:
    rates = [noam(s, P) for s in range(1, 1001)]
    assert max(range(len(rates)), key=rates.__getitem__) + 1 == 100
    assert rates[99] == pytest.approx(P.peak())
    assert rates[0] < rates[49] < rates[99] > rates[199] > rates[999]


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_every_schedule_warms_up_to_the_same_peak(name: str) -> None:
    schedule = get_schedule(name)
    assert schedule(100, P) == pytest.approx(P.peak())
    assert schedule(1, P) < schedule(50, P) < schedule(100, P)


def test_cosine_reaches_zero_and_constant_stays() -> None:
    assert get_schedule("cosine")(1000, P) == pytest.approx(0.0, abs=1e-12)
    assert get_schedule("constant")(1000, P) == pytest.approx(P.peak())


def test_unknown_schedule_lists_known_ones() -> None:
    expected = r"train\.schedule: got 'linear', expected one of constant, cosine, noam"
    with pytest.raises(ConfigError, match=expected):
        get_schedule("linear")


def test_lambda_lr_sets_the_formula_rate_per_step_and_group() -> None:
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.5)
    scheduler = make_scheduler(optimizer, "noam", P, scales=[0.1, 1.0])
    for step in range(1, 6):
        assert optimizer.param_groups[1]["lr"] == pytest.approx(noam(step, P))
        assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * noam(step, P))
        optimizer.step()
        scheduler.step()


@pytest.mark.parametrize(
    "params",
    [{"total": 0}, {"warmup": -1}, {"model_size": 0}, {"factor": 0.0}, {"factor": float("nan")}],
)
def test_schedule_params_refuse_a_plan_that_cannot_run(params: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="expected factor > 0"):
        ScheduleParams(**params)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(SCHEDULES))
@pytest.mark.parametrize(("warmup", "total"), [(0, 1), (1, 1), (1, 2), (3, 3), (200, 5)])
def test_tiny_runs_give_finite_positive_rates(name: str, warmup: int, total: int) -> None:
    p = ScheduleParams(warmup=warmup, total=total)
    rates = [get_schedule(name)(step, p) for step in range(1, total + 1)]
    assert all(0.0 <= r <= p.peak() * (1 + 1e-12) for r in rates)
