"""The campaign spec: one declarative description every crowd backend carries out the same way.

A :class:`CampaignSpec` is built from the ``[crowd]`` and ``[task]`` settings and validated
before anything is bought. :func:`split_ground_truth` divides the ground truth into
training tasks (shown with a hint), the exam that grants the skill, and honeypots (control
tasks mixed into the pages), deterministically by seed.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import polars as pl

from iris.config import Settings
from iris.errors import CrowdError
from iris.tables import GROUND_TRUTH_SPLIT

Role = Literal["training", "exam", "honeypot"]


@dataclass(frozen=True)
class FastRule:
    """Ban a worker who submits a page faster than ``min_seconds``.

    A shorter page (the last ones of a campaign) gets a pro-rated threshold:
    ``min_seconds · tasks on the page / page_size``.
    """

    min_seconds: float
    ban_days: int
    page_size: int = 0
    """Tasks on a full page; 0 applies ``min_seconds`` to every page as it is."""


@dataclass(frozen=True)
class HoneypotRule:
    """Ban a worker whose accuracy on the last ``window`` honeypots is below ``min_accuracy``."""

    min_accuracy: float
    window: int
    ban_days: int


@dataclass(frozen=True)
class MajorityRule:
    """Ban a worker who agrees with the others' majority on fewer than ``min_agreement`` of the
    last ``window`` tasks where the others reached a majority."""

    min_agreement: float
    window: int
    ban_days: int
    min_others: int = 2
    """Other workers' answers a task needs before it counts (Toloka's ``answer_threshold``)."""


@dataclass(frozen=True)
class SkillRule:
    """Ban a worker whose skill, estimated from their Dawid-Skene confusion matrix, is surely
    below ``min_skill``: once they have ``min_answers`` answers counted, when the skill plus
    ``confidence`` standard errors is still below it (see :class:`iris.crowd.quality.SkillState`).

    The skill is sensitivity + specificity − 1: about 0 for random or one-sided answers, 1 for
    always right, positive for an honest worker on however hard a shortlist.
    """

    min_skill: float
    """0 turns the rule off."""
    min_answers: int
    confidence: float
    """Standard errors the estimate must be below ``min_skill`` by (one-sided)."""
    ban_days: int

    @property
    def on(self) -> bool:
        return self.min_skill > 0


SKILL_OFF = SkillRule(min_skill=0.0, min_answers=0, confidence=0.0, ban_days=0)


@dataclass(frozen=True)
class QualityRules:
    fast: FastRule
    honeypot: HoneypotRule
    majority: MajorityRule
    skill: SkillRule = SKILL_OFF
    reject_banned: bool = False
    """Banned workers' answers are rejected: not paid for and dropped from the answers."""
    reissue_banned: bool = True
    """Tasks a banned worker answered get one more answer from someone else."""


@dataclass(frozen=True)
class CampaignSpec:
    """Everything a backend needs to know to run the campaign.

    Built from settings that :func:`iris.config.load_settings` has checked field by field;
    construction checks the rules across fields.
    """

    positive_name: str
    negative_name: str
    instructions: str
    """Path to an HTML template, or empty for the built-in one."""
    training: int
    exam: int
    exam_pass: float
    skill_name: str
    overlap: int
    page_size: int
    honeypots_per_page: int
    price_per_page: float
    exam_price: float
    rules: QualityRules
    seed: int = 0

    def __post_init__(self) -> None:
        # Each field's own range is declared and checked with the settings (iris.config);
        # only the rules that tie fields together are checked here.
        if self.honeypots_per_page >= self.page_size:
            raise CrowdError(
                f"campaign spec: crowd.honeypots_per_page = {self.honeypots_per_page!r}, "
                f"expected < crowd.page_size ({self.page_size})"
            )
        if self.positive_name.strip().lower() == self.negative_name.strip().lower():
            raise CrowdError(f"campaign spec: both classes are named {self.positive_name!r}")

    @property
    def real_per_page(self) -> int:
        """Real tasks on a full page."""
        return self.page_size - self.honeypots_per_page

    @property
    def ground_truth_needed(self) -> int:
        """Ground-truth images needed: training + exam + enough honeypots for one page."""
        return self.training + self.exam + self.honeypots_per_page

    def pages_for(self, n_tasks: int) -> int:
        """Pages (assignments) needed to give ``n_tasks`` tasks ``overlap`` answers each."""
        return math.ceil(n_tasks * self.overlap / self.real_per_page) if n_tasks else 0

    def cost_for(self, n_tasks: int) -> float:
        return round(self.pages_for(n_tasks) * self.price_per_page, 4)

    def fingerprint(self) -> str:
        """A short hash of every field: a resumed campaign must run under the same spec."""
        blob = json.dumps(asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @classmethod
    def from_settings(cls, settings: Settings) -> CampaignSpec:
        c = settings.crowd
        rules = QualityRules(
            fast=FastRule(
                min_seconds=c.min_seconds_per_page, ban_days=c.fast_ban_days, page_size=c.page_size
            ),
            honeypot=HoneypotRule(
                min_accuracy=c.min_honeypot_accuracy, window=c.honeypot_window, ban_days=c.ban_days
            ),
            majority=MajorityRule(
                min_agreement=c.min_majority_agreement,
                window=c.majority_window,
                ban_days=c.ban_days,
                min_others=max(c.overlap - 1, 1),
            ),
            skill=SkillRule(
                min_skill=c.min_skill,
                min_answers=c.skill_min_answers,
                confidence=c.skill_confidence,
                ban_days=c.ban_days,
            ),
            reject_banned=c.reject_banned,
            reissue_banned=c.reissue_banned,
        )
        return cls(
            positive_name=settings.task.positive_name,
            negative_name=settings.task.negative_name,
            instructions=c.instructions,
            training=c.training,
            exam=c.exam,
            exam_pass=c.exam_pass,
            skill_name=c.skill_name,
            overlap=c.overlap,
            page_size=c.page_size,
            honeypots_per_page=c.honeypots_per_page,
            price_per_page=c.price_per_page,
            exam_price=c.exam_price,
            rules=rules,
            seed=c.seed,
        )


def _interleave(pos: list[int], neg: list[int], n: int) -> list[int]:
    """Take ``n`` items alternating classes (so training and exam are balanced when possible)."""
    out: list[int] = []
    i = j = 0
    while len(out) < n and (i < len(pos) or j < len(neg)):
        take_pos = (len(out) % 2 == 0 and i < len(pos)) or j >= len(neg)
        if take_pos:
            out.append(pos[i])
            i += 1
        else:
            out.append(neg[j])
            j += 1
    return out


def split_ground_truth(images: pl.DataFrame, spec: CampaignSpec) -> pl.DataFrame:
    """Divide the ground truth into training, exam and honeypot images, deterministic by seed.

    Training and exam alternate the two classes as far as each class allows.

    Args:
        images: the IMAGES table; rows with split "gt" and a label are used.
        spec: the campaign spec (sizes and seed).

    Returns:
        GROUND_TRUTH_SPLIT table: id, source, path, label, role.

    Raises:
        CrowdError: fewer ground-truth images than training + exam + one page of honeypots.
    """
    gt = images.filter((pl.col("split") == "gt") & pl.col("label").is_not_null()).sort("id")
    needed = spec.ground_truth_needed
    if gt.height < needed:
        raise CrowdError(
            f"campaign spec: {gt.height} labeled ground-truth images, but training ({spec.training}) + "
            f"exam ({spec.exam}) + honeypots per page ({spec.honeypots_per_page}) need {needed}; "
            "lower crowd.training / crowd.exam or add ground truth"
        )
    rng = np.random.default_rng(spec.seed)
    order = rng.permutation(gt.height)
    ids = gt["id"].to_numpy()[order].tolist()
    labels = dict(zip(gt["id"].to_list(), gt["label"].to_list(), strict=True))
    pos = [i for i in ids if labels[i] == 1]
    neg = [i for i in ids if labels[i] == 0]
    training = _interleave(pos, neg, spec.training)
    used = set(training)
    pos = [i for i in pos if i not in used]
    neg = [i for i in neg if i not in used]
    exam = _interleave(pos, neg, spec.exam)
    used |= set(exam)
    roles = {i: "training" for i in training} | {i: "exam" for i in exam}
    roles |= {i: "honeypot" for i in ids if i not in used}
    rank = {i: n for n, i in enumerate(training + exam + [i for i in ids if i not in used])}
    out = gt.select("id", "source", "path", "label").with_columns(
        role=pl.col("id").replace_strict(roles, return_dtype=pl.String),
        _rank=pl.col("id").replace_strict(rank, return_dtype=pl.Int64),
    )
    return out.sort("_rank").drop("_rank").cast(GROUND_TRUTH_SPLIT)  # type: ignore[arg-type]
