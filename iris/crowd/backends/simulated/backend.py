"""Backend ``simulated``: the campaign runs to completion inside ``launch``.

A campaign's rounds (``WORK/crowd`` then ``WORK/crowd/rounds/N``) are one crowd: the people
examined in an earlier round keep their exam's result and are not paid for it again, and the
people banned in an earlier round are not let back in, as on a platform whose skills and
bans outlive a pool.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from iris.config import Settings
from iris.crowd.backends.base import ROUNDS_DIR, CampaignInputs, CampaignStatus, Collected, Plan, tasks_done
from iris.crowd.backends.simulated.engine import SimulationResult, simulate
from iris.crowd.backends.simulated.log import PurchaseLog
from iris.crowd.backends.simulated.truth import load_difficulty, load_truth


class SimulatedBackend:
    """Backend ``simulated``: the campaign runs to completion inside ``launch``."""

    name = "simulated"

    def __init__(self, *, settings: Settings, state_dir: Path) -> None:
        self.settings = settings
        self.state_dir = state_dir

    @property
    def log_path(self) -> Path:
        return self.state_dir / "pages.jsonl"

    @property
    def difficulty_path(self) -> Path:
        """The people's per-image difficulty, fitted once on the answer key (see ``truth``)."""
        return self.state_dir / "difficulty.parquet"

    def earlier_rounds(self) -> list[PurchaseLog]:
        """The purchase logs of the campaign's rounds before this one (none for round 0)."""
        round_dir = self.state_dir.parent
        if round_dir.parent.name != ROUNDS_DIR or not round_dir.name.isdigit():
            return []
        crowd = round_dir.parent.parent
        dirs = [crowd, *(round_dir.parent / str(i) for i in range(1, int(round_dir.name)))]
        return [PurchaseLog(d / self.name / "pages.jsonl") for d in dirs]

    def _population(self) -> dict[str, float | int]:
        c = self.settings.crowd
        return {
            "workers": c.workers,
            "spammers": c.spammers,
            "fast_clickers": c.fast_clickers,
            "pages_per_worker": c.pages_per_worker,
            "pace_s": c.pace_s,
            "seed": c.seed,
        }

    def plan(self, inputs: CampaignInputs) -> Plan:
        load_truth(inputs, self.settings)  # fails early when the virtual people lack the truth
        spec = inputs.spec
        n = inputs.tasks.height
        c = self.settings.crowd
        return Plan.of(
            self.name,
            inputs,
            pages_per_worker=c.pages_per_worker,
            objects=[
                f"population of {c.workers} virtual people per cohort "
                f"({c.spammers:.0%} spammers, {c.fast_clickers:.0%} fast clickers)",
                f"training of {inputs.role('training').height} tasks with hints",
                f"exam of {inputs.role('exam').height} tasks granting skill {spec.skill_name!r} "
                f"at {spec.exam_pass:.0%}",
                f"{spec.pages_for(n)} pages of {spec.real_per_page} tasks + {spec.honeypots_per_page} "
                f"honeypot(s), overlap {spec.overlap}",
            ],
        )

    def run(self, inputs: CampaignInputs) -> SimulationResult:
        truth = load_truth(inputs, self.settings)
        ids = [*inputs.tasks["id"].to_list(), *inputs.ground_truth["id"].to_list()]
        difficulty = load_difficulty(
            inputs, ids, seed=self.settings.crowd.seed, settings=self.settings, cache=self.difficulty_path
        )
        earlier = [key for log in self.earlier_rounds() for key in log.records]
        return simulate(
            inputs,
            truth=truth,
            difficulty=difficulty,
            population=self._population(),
            log=PurchaseLog(self.log_path),
            examined={k.removeprefix("exam:") for k in earlier if k.startswith("exam:")},
            banned={k.removeprefix("ban:") for k in earlier if k.startswith("ban:")},
        )

    def launch(self, inputs: CampaignInputs) -> CampaignStatus:
        log = PurchaseLog(self.log_path)
        if not log.meta.get("done"):
            self.run(inputs)
        return self.status(inputs)

    def status(self, inputs: CampaignInputs) -> CampaignStatus:
        log = PurchaseLog(self.log_path)
        if not log.records and not log.meta:
            return CampaignStatus(backend=self.name, state="not-launched", tasks_total=inputs.tasks.height)
        answers = log.answers(reject_banned=self.settings.crowd.reject_banned)
        done = tasks_done(answers, overlap=inputs.spec.overlap)
        bans = log.bans()
        state = "stopped" if log.meta.get("stopped") else "complete" if log.meta.get("done") else "running"
        return CampaignStatus(
            backend=self.name,
            state=state,  # type: ignore[arg-type]
            pages=int(answers["page"].n_unique()),
            answers=answers.height,
            tasks_total=inputs.tasks.height,
            tasks_done=done,
            workers=int(answers["worker"].n_unique()),
            banned=bans.height,
            cost=float(log.meta.get("cost", sum(r.get("price", 0.0) for r in log.records.values()))),
            detail={"complete": bool(log.meta.get("complete", False))},
        )

    def collect(self, inputs: CampaignInputs) -> Collected:
        log = PurchaseLog(self.log_path)
        answers = log.answers(reject_banned=self.settings.crowd.reject_banned)
        bans = log.bans()
        if inputs.spec.rules.reject_banned and bans.height:
            answers = answers.filter(~pl.col("worker").is_in(bans["worker"].to_list()))
        return Collected(answers=answers, bans=bans)

    def stop(self, inputs: CampaignInputs) -> CampaignStatus:
        PurchaseLog(self.log_path).append({"stopped": True})
        return self.status(inputs)
