"""Learning-rate schedules by name.

Every schedule is a function of the optimizer step (1-based) returning the learning rate
itself; :func:`make_scheduler` wraps one in a ``torch.optim.lr_scheduler.LambdaLR`` over an
optimizer whose base learning rate is 1.0, so the lambda's value *is* the rate.

All schedules share one peak, the Noam peak ``factor * model_size^-0.5 * warmup^-0.5``, so
``lr_factor`` is the only knob to turn when switching between them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from iris.errors import ConfigError


@dataclass(frozen=True)
class ScheduleParams:
    """What a schedule may use.

    Attributes:
        factor: overall scale (``train.lr_factor``).
        model_size: the width the rate is normalised by (``train.model_size``, 256 by default).
        warmup: warmup steps (``train.warmup_steps``).
        total: total optimizer steps planned (cosine decays to 0 there).
    """

    factor: float = 1.0
    model_size: int = 256
    warmup: int = 200
    total: int = 1000

    def __post_init__(self) -> None:
        # Settings are checked when loaded (iris.config); these guard the arithmetic below
        # against a caller's bad plan (a warmup of 0 is read as 1 step).
        if self.total < 1 or self.warmup < 0 or self.model_size < 1 or not self.factor > 0:
            raise ValueError(
                f"schedule: factor={self.factor}, model_size={self.model_size}, warmup={self.warmup}, "
                f"total={self.total}; expected factor > 0, model_size >= 1, warmup >= 0, total >= 1"
            )

    def peak(self) -> float:
        return self.factor * self.model_size**-0.5 * max(self.warmup, 1) ** -0.5


Schedule = Callable[[int, ScheduleParams], float]


def noam(step: int, p: ScheduleParams) -> float:
    """``factor * model_size^-0.5 * min(step^-0.5, step * warmup^-1.5)``: linear warmup, then 1/sqrt decay."""
    step = max(step, 1)  # step 0 would divide by zero; LambdaLR starts counting at 0
    warmup = max(p.warmup, 1)
    return p.factor * p.model_size**-0.5 * min(step**-0.5, step * warmup**-1.5)


def cosine(step: int, p: ScheduleParams) -> float:
    """Linear warmup to the Noam peak, then half a cosine down to 0 at ``total`` steps."""
    step = max(step, 1)
    if step <= p.warmup:
        return p.peak() * step / max(p.warmup, 1)
    span = max(p.total - p.warmup, 1)
    progress = min((step - p.warmup) / span, 1.0)
    return p.peak() * 0.5 * (1.0 + math.cos(math.pi * progress))


def constant(step: int, p: ScheduleParams) -> float:
    """Linear warmup to the Noam peak, then constant."""
    step = max(step, 1)
    return p.peak() * min(1.0, step / max(p.warmup, 1))


SCHEDULES: dict[str, Schedule] = {"noam": noam, "cosine": cosine, "constant": constant}


def get_schedule(name: str) -> Schedule:
    """The schedule registered as ``name``.

    Raises:
        ConfigError: unknown name, listing the known ones.
    """
    try:
        return SCHEDULES[name]
    except KeyError:
        raise ConfigError(
            f"train.schedule: got {name!r}, expected one of {', '.join(sorted(SCHEDULES))}"
        ) from None


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str,
    params: ScheduleParams,
    *,
    scales: Sequence[float] | None = None,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` following schedule ``name``; it sets every group's base lr to 1.0.

    Args:
        scales: one multiplier per parameter group (e.g. a smaller rate for a pretrained
            backbone than for a fresh head); 1.0 for every group when omitted.

    ``LambdaLR`` calls the lambda with the number of ``scheduler.step()`` calls so far
    (0 before the first optimizer step), so the first update uses step 1.
    """
    schedule = get_schedule(name)
    groups = optimizer.param_groups
    factors = [1.0] * len(groups) if scales is None else list(scales)
    if len(factors) != len(groups):
        raise ValueError(f"{len(factors)} scales for {len(groups)} parameter groups")
    for group in groups:
        group["lr"] = 1.0
        group["initial_lr"] = 1.0

    def scaled(factor: float) -> Callable[[int], float]:
        return lambda i: factor * schedule(i + 1, params)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, [scaled(f) for f in factors])
