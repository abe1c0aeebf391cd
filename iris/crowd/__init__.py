"""The crowd campaign: one declarative spec, carried out the same way by every backend.

* :mod:`iris.crowd.spec` — the campaign spec (from ``[crowd]`` settings) and the split of
  the ground truth into training, exam and honeypots;
* :mod:`iris.crowd.pages` — pages of real tasks plus honeypots;
* :mod:`iris.crowd.quality` — the quality-control rules as pure functions over answers;
* :mod:`iris.crowd.difficulty` — how hard each image is for simulated people (a cross-fitted
  pixel model of the answer key, never iris's own doubt);
* :mod:`iris.crowd.instructions` — the workers' instructions from an HTML template;
* :mod:`iris.crowd.backends` — the backend interface and registry: ``simulated``, ``toloka``,
  ``web``;
* :mod:`iris.crowd.web_server` — the web labeler served by uvicorn;
* :mod:`iris.crowd.web_load` — scripted people over HTTP, for the labeler's load tests;
* :mod:`iris.crowd.campaign` — plan / launch / status / collect / stop with state in ``WORK/crowd``;
* :mod:`iris.crowd.stage` — the crowd stage of ``iris run`` (launch, then collect).
"""

from iris.crowd.spec import CampaignSpec, split_ground_truth

__all__ = ["CampaignSpec", "split_ground_truth"]
