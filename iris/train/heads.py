"""Classification heads by name and the final classifier (backbone + head).

The backbone comes from :mod:`iris.embed.backbones` (a :class:`PixelNet`: uint8 pixels in,
features out); a head maps features (n, dim) to one logit per image (n,). One logit and
a sigmoid suit a binary task and export to ONNX as a probability directly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from iris.embed.backbones import PixelNet, build_pixel_net
from iris.errors import ConfigError


def linear_head(dim: int, *, hidden: int) -> nn.Module:
    """One linear layer (``hidden`` is unused)."""
    return nn.Linear(dim, 1)


def mlp_head(dim: int, *, hidden: int) -> nn.Module:
    """Linear → ReLU → dropout → linear; ``hidden`` is ``train.model_size`` (Noam's width)."""
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(0.2), nn.Linear(hidden, 1))


HEADS: dict[str, Callable[..., nn.Module]] = {"linear": linear_head, "mlp": mlp_head}


def build_head(name: str, dim: int, *, hidden: int) -> nn.Module:
    """The head registered as ``name``.

    Raises:
        ConfigError: unknown name, listing the known ones.
    """
    try:
        factory = HEADS[name]
    except KeyError:
        raise ConfigError(f"train.head: got {name!r}, expected one of {', '.join(HEADS)}") from None
    return factory(dim, hidden=hidden)


class Classifier(nn.Module):
    """uint8 pixels (n, s, s, 3) → logit of the positive class (n,)."""

    def __init__(self, net: PixelNet, head: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.head = head

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net(pixels)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.net(pixels)).squeeze(-1)  # type: ignore[no-any-return]


class HeadOnly(nn.Module):
    """A classifier's head applied to precomputed features (n, dim) → logits (n,)."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features).squeeze(-1)  # type: ignore[no-any-return]


class Probability(nn.Module):
    """A classifier with a sigmoid: uint8 pixels → probability of the positive class (n,)."""

    def __init__(self, classifier: Classifier) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.classifier(pixels))


def model_config(
    *, backbone: str, weights: str, head: str, image_size: int, model_size: int
) -> dict[str, Any]:
    """What is needed to rebuild a classifier's architecture (stored in every checkpoint)."""
    return {
        "backbone": backbone,
        "weights": weights,
        "head": head,
        "image_size": image_size,
        "model_size": model_size,
    }


def build_classifier(config: dict[str, Any], *, pretrained: bool = True) -> Classifier:
    """A classifier from :func:`model_config`'s dict.

    Args:
        pretrained: load the configured backbone weights; False builds the bare
            architecture (to load a checkpoint into, without needing the weights file).
    """
    net = build_pixel_net(
        config["backbone"],
        weights=config["weights"] if pretrained else "none",
        image_size=config["image_size"],
    )
    return Classifier(net, build_head(config["head"], net.dim, hidden=config["model_size"]))
