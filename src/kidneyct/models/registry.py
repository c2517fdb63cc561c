"""Model registry in the manner of timm: ``create_model(name, ...)``; each model declares its defaults.

A model's spec (the preprocessing it expects: mean/std of the grey input and default image size; its
pretrained and freezing defaults; the layer Grad-CAM should look at) is plain data in SPECS below, so
callers never branch on model names and listing models (`kidneyct models`, the CLI's help) imports no torch.
Each family module registers its builder with ``@register_model(name)``; it is imported, with torch, the
first time one of its models is built.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from kidneyct.records import DictRecord

if TYPE_CHECKING:
    import torch.nn as nn

IMAGENET_GREY_MEAN, IMAGENET_GREY_STD = 0.449, 0.226  # ImageNet RGB statistics averaged over channels


@dataclass(frozen=True)
class ModelSpec:
    name: str
    module: str  # the family module whose @register_model(name) provides the builder
    description: str
    mean: float
    std: float
    image_size: int = 224
    pretrained_default: str = "none"  # "imagenet" or "none"
    frozen_default: bool = False  # the seed's transfer-learning set-up freezes the backbone
    cam_layer: str = ""  # module path of the default Grad-CAM target layer
    fixed_input_size: bool = False  # a Flatten head ties the model to its image size
    min_image_size: int = 1  # smallest input side its layers accept (checked when options are parsed)
    maps: tuple[str, ...] = ()  # names of the probability maps a segmenting model draws beside its slice logits
    extra: dict = field(default_factory=dict)

    @property
    def builder(self) -> Callable[..., nn.Module]:
        if self.name not in _BUILDERS:
            # Imported here, not with the registry, for start-up speed: the family module imports torch.
            importlib.import_module(self.module)
        if self.name not in _BUILDERS:
            raise ValueError(f"{self.module} does not register a builder for model {self.name!r}")
        return _BUILDERS[self.name]


SPECS = (
    ModelSpec(
        name="seed-cnn", module="kidneyct.models.seed_cnn",
        description="the original project's 5-layer CNN, trained from scratch",
        mean=0.0, std=1.0, pretrained_default="none", frozen_default=False, cam_layer="features.12",
        fixed_input_size=True, min_image_size=94,  # five unpadded 3x3 conv + 2x2 pool stages
    ),
    ModelSpec(
        name="resnet50", module="kidneyct.models.resnet",
        description="torchvision ResNet50 (ImageNet, needs internet once) + the seed's head",
        mean=IMAGENET_GREY_MEAN, std=IMAGENET_GREY_STD, pretrained_default="imagenet", frozen_default=True,
        cam_layer="backbone.layer4",
    ),
    ModelSpec(
        name="efficientnet-lite0", module="kidneyct.models.efficientnet",
        description="timm EfficientNet-Lite0 (ImageNet weights, offline) + the seed's head",
        mean=IMAGENET_GREY_MEAN, std=IMAGENET_GREY_STD, pretrained_default="imagenet", frozen_default=True,
        cam_layer="backbone.blocks.5",  # chosen on phantom validation pointing (benchmarks/localisation.py)
    ),
    ModelSpec(
        name="lite0-unet", module="kidneyct.models.unet",
        description="EfficientNet-Lite0 U-Net (ImageNet, offline): kidney and tumor maps and a slice head; looks at "
                    "the body, then zooms on the kidneys it found",
        mean=0.0, std=1.0,  # each crop is normalised by its own body pixels inside the network
        image_size=128, pretrained_default="imagenet", frozen_default=False, min_image_size=32,
        maps=("kidney", "tumor"),
    ),
)

_SPECS: dict[str, ModelSpec] = {spec.name: spec for spec in SPECS}
_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str, **spec_fields):
    """Decorator for a builder ``(num_classes, image_size, pretrained, freeze_backbone, dropout) -> nn.Module``.

    ``@register_model("seed-cnn")`` provides the builder of a spec in SPECS; with spec fields
    (``@register_model("my-net", description=..., mean=..., std=...)``) it also declares a new model, which is
    listed once its module has been imported.
    """

    def wrap(builder):
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} registered twice")
        if spec_fields:
            if name in _SPECS:
                raise ValueError(f"model {name!r} is already declared in SPECS")
            _SPECS[name] = ModelSpec(name=name, module=builder.__module__, **spec_fields)
        elif name not in _SPECS:
            raise ValueError(f"model {name!r} has no spec: add it to SPECS or give its spec fields")
        _BUILDERS[name] = builder
        return builder

    return wrap


def list_models() -> list[ModelSpec]:
    return [_SPECS[name] for name in sorted(_SPECS)]


def get_spec(name: str) -> ModelSpec:
    if name not in _SPECS:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(sorted(_SPECS))}")
    return _SPECS[name]


@dataclass(frozen=True)
class ModelConfig(DictRecord):
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


def create_model(config: ModelConfig, load_pretrained: bool = True) -> nn.Module:
    """Build a model. `load_pretrained=False` skips ImageNet weights (when a checkpoint follows)."""
    config = config.resolved()
    spec = get_spec(config.name)
    return spec.builder(
        num_classes=config.num_classes, image_size=config.image_size,
        pretrained=config.pretrained if load_pretrained else "none",
        freeze_backbone=config.freeze_backbone, dropout=config.dropout,
    )


__all__ = [
    "IMAGENET_GREY_MEAN", "IMAGENET_GREY_STD", "ModelConfig", "ModelSpec", "SPECS", "create_model", "get_spec",
    "list_models", "register_model",
]
