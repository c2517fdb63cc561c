"""Model registry in the manner of timm: ``create_model(name, ...)``; each model declares its defaults.

A model family registers a builder with the preprocessing it expects (mean/std of the grey input,
default image size) and the layer Grad-CAM should look at, so callers never branch on model names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch.nn as nn


class PretrainedWeightsUnavailable(RuntimeError):
    """ImageNet weights could not be obtained (typically: no internet)."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., nn.Module]
    description: str
    mean: float
    std: float
    image_size: int = 224
    pretrained_default: str = "none"  # "imagenet" or "none"
    frozen_default: bool = False  # the seed's transfer-learning set-up freezes the backbone
    cam_layer: str = ""  # module path of the default Grad-CAM target layer
    fixed_input_size: bool = False  # a Flatten head ties the model to its image size
    extra: dict = field(default_factory=dict)


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(**spec_fields):
    """Decorator: ``@register_model(name="seed-cnn", description=..., mean=..., std=...)``."""

    def wrap(builder):
        spec = ModelSpec(builder=builder, **spec_fields)
        if spec.name in _REGISTRY:
            raise ValueError(f"model {spec.name!r} registered twice")
        _REGISTRY[spec.name] = spec
        return builder

    return wrap


def _ensure_loaded() -> None:
    # Importing the family modules runs their @register_model decorators.
    from kidneyct.models import efficientnet, resnet, seed_cnn  # noqa: F401


def list_models() -> list[ModelSpec]:
    _ensure_loaded()
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def get_spec(name: str) -> ModelSpec:
    _ensure_loaded()
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model's architecture (stored in checkpoints)."""

    name: str
    num_classes: int
    image_size: int = 224
    pretrained: str | None = None  # None: the model's default
    freeze_backbone: bool | None = None  # None: the model's default
    dropout: float = 0.5

    def resolved(self) -> "ModelConfig":
        spec = get_spec(self.name)
        pretrained = spec.pretrained_default if self.pretrained is None else self.pretrained
        freeze = spec.frozen_default if self.freeze_backbone is None else self.freeze_backbone
        if pretrained not in ("imagenet", "none"):
            raise ValueError(f"--pretrained must be 'imagenet' or 'none', got {pretrained!r}")
        return ModelConfig(self.name, self.num_classes, self.image_size, pretrained, freeze, self.dropout)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def create_model(config: ModelConfig, load_pretrained: bool = True) -> nn.Module:
    """Build a model. `load_pretrained=False` skips ImageNet weights (when a checkpoint follows)."""
    config = config.resolved()
    spec = get_spec(config.name)
    return spec.builder(
        num_classes=config.num_classes, image_size=config.image_size,
        pretrained=config.pretrained if load_pretrained else "none",
        freeze_backbone=config.freeze_backbone, dropout=config.dropout,
    )
