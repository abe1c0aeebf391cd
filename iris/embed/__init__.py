"""Embeddings: backbones by name, fine-tune on the ground truth, ONNX export, ONNX Runtime encoder.

The public entry points::

    from iris.embed import BACKBONES, build_features, load_encoder, embed

``embed`` is the stage (:mod:`iris.embed.stage`); ``load_encoder(workdir).encode(images)``
turns PIL images into L2-normalised vectors for ad-hoc queries.
"""

from iris.embed.backbones import BACKBONES, Backbone, PixelNet, build_features, build_pixel_net, get_backbone
from iris.embed.encoder import Encoder, load_encoder
from iris.embed.stage import EmbedReport, embed

__all__ = [
    "BACKBONES",
    "Backbone",
    "EmbedReport",
    "Encoder",
    "PixelNet",
    "build_features",
    "build_pixel_net",
    "embed",
    "get_backbone",
    "load_encoder",
]
