"""Render the worker instructions from an HTML template (``string.Template`` placeholders).

Placeholders: ``$positive_name``, ``$negative_name``, ``$positive_examples``,
``$negative_examples`` (``<img>`` tags of training images), ``$page_size``, ``$exam``,
``$exam_pass_percent``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from string import Template

from iris.crowd.spec import CampaignSpec
from iris.errors import CrowdError


def default_template() -> str:
    return resources.files("iris.crowd").joinpath("instructions.html").read_text(encoding="utf-8")


def _images(urls: Sequence[str]) -> str:
    return "".join(f'<img src="{html.escape(u, quote=True)}" width="128" alt="example">' for u in urls)


def render_instructions(
    spec: CampaignSpec,
    *,
    positive_examples: Sequence[str] = (),
    negative_examples: Sequence[str] = (),
) -> str:
    """Fill the template named by ``spec.instructions`` (or the built-in one).

    Raises:
        CrowdError: the template file is missing or uses an unknown placeholder.
    """
    if spec.instructions:
        path = Path(spec.instructions)
        if not path.is_file():
            raise CrowdError(f"crowd.instructions: {path} is not a file; expected an HTML template")
        text = path.read_text(encoding="utf-8")
    else:
        text = default_template()
    values = {
        "positive_name": html.escape(spec.positive_name),
        "negative_name": html.escape(spec.negative_name),
        "positive_examples": _images(positive_examples),
        "negative_examples": _images(negative_examples),
        "page_size": str(spec.page_size),
        "exam": str(spec.exam),
        "exam_pass_percent": f"{spec.exam_pass * 100:g}",
    }
    try:
        return Template(text).substitute(values)
    except (KeyError, ValueError) as exc:
        known = ", ".join("$" + k for k in values)
        raise CrowdError(
            f"{spec.instructions or 'built-in instructions'}: bad placeholder {exc}; known: {known}"
        ) from None
