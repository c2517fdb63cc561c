"""The original student project's CNN, layer for layer (Keras semantics: 'valid' 3x3 convolutions)."""

from __future__ import annotations

import torch
import torch.nn as nn

from kidneyct.models.registry import get_spec, register_model

SEED_FILTERS = (32, 64, 64, 64, 128)


class SeedCNN(nn.Module):
    """Five Conv2D 3x3 (32, 64, 64, 64, 128) each with ReLU and 2x2 max-pooling; Flatten; Dropout 0.5;
    Dense 128 ReLU; Dense N. The final softmax is applied by the predictor; the module returns logits."""

    def __init__(self, num_classes: int = 2, image_size: int = 224, in_chans: int = 1, dropout: float = 0.5):
        super().__init__()
        layers, channels, side = [], in_chans, image_size
        for filters in SEED_FILTERS:
            # Out-of-place ReLUs: an in-place one overwrites the conv output that Grad-CAM's hooks hold.
            layers += [nn.Conv2d(channels, filters, 3), nn.ReLU(), nn.MaxPool2d(2)]
            channels, side = filters, (side - 2) // 2
        if side < 1:
            raise ValueError(f"seed-cnn needs images of at least {get_spec('seed-cnn').min_image_size} px, "
                             f"got {image_size}")
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels * side * side, 128), nn.ReLU(),
            nn.Linear(128, num_classes),
        )
        # He initialisation: with PyTorch's or Keras' default init this BN-free stack of ReLU layers
        # starts with vanishing activations and stayed at chance level on phantoms in our runs.
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model("seed-cnn")
def build_seed_cnn(num_classes, image_size, pretrained, freeze_backbone, dropout):
    if pretrained != "none":
        raise ValueError("seed-cnn has no pretrained weights; use --pretrained none")
    return SeedCNN(num_classes=num_classes, image_size=image_size, dropout=dropout)
