"""Pieces shared by the ImageNet backbones: the seed's head, grey stems and backbone freezing."""

from __future__ import annotations

import torch
import torch.nn as nn


def seed_head(in_features: int, num_classes: int, dropout: float) -> nn.Sequential:
    """Global-average-pooled features -> Dropout -> Dense 128 ReLU -> Dense N (as the seed project)."""
    # Out-of-place ReLU, so that backward hooks (Grad-CAM) can sit on any layer.
    return nn.Sequential(
        nn.Dropout(dropout), nn.Linear(in_features, 128), nn.ReLU(), nn.Linear(128, num_classes)
    )


def grey_stem_weight(rgb_weight: torch.Tensor) -> torch.Tensor:
    """An RGB first-layer kernel for grey input: summing over colour channels gives the same response
    to a grey image replicated into R, G and B."""
    return rgb_weight.sum(dim=1, keepdim=True)


class BackboneClassifier(nn.Module):
    """A feature extractor (image -> pooled vector) plus the seed head, optionally with a frozen backbone.

    A frozen backbone also keeps its BatchNorm statistics frozen (eval mode even while training),
    which is what Keras' ``trainable=False`` does and what makes cached features valid.
    """

    def __init__(self, backbone: nn.Module, num_features: int, num_classes: int, dropout: float,
                 freeze_backbone: bool):
        super().__init__()
        self.backbone = backbone
        self.head = seed_head(num_features, num_classes, dropout)
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            for parameter in self.backbone.parameters():
                parameter.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))
