"""A U-Net on timm's EfficientNet-Lite0 (ImageNet weights, offline): kidney and tumor maps and a slice head.

The encoder's deepest features also feed the slice head, so the slice call and the maps share what the encoder
learned from the masks. Each input is normalised by its own body pixels (mean and spread of the pixels above
air), which removes an export's window and contrast stretch: sources rendered with different windows meet the
network at one intensity scale. Everything here is plain tensor arithmetic, so the network exports to ONNX.
"""

from __future__ import annotations

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

from kidneyct.models.efficientnet import load_packaged_weights
from kidneyct.models.heads import grey_stem_weight
from kidneyct.models.registry import register_model

MAPS = ("kidney", "tumor")  # the map channels: the whole kidney (tumor and cysts included) and the tumor
AIR_LEVEL = 0.03  # [0, 1] display intensity below which a pixel is air (the body crop's threshold)
AIR_VALUE = -3.0  # where air lands after normalisation: below every body pixel of an ordinary slice
DECODER = (96, 64, 48, 32, 16)
# With ImageNet weights, the stem and the first two stages (stride 2 and 4: edge and texture filters) stay as
# trained on ImageNet. They are the costliest layers to train on a CPU (the largest maps) and the least specific.
FROZEN_STAGES = 2


def normalise_body(unit: torch.Tensor) -> torch.Tensor:
    """[B, 1, H, W] in [0, 1] -> each image's body pixels standardised by their own mean and sd, air at
    AIR_VALUE, clamped to +-6 sd."""
    body = (unit > AIR_LEVEL).to(unit.dtype)
    count = body.sum((1, 2, 3), keepdim=True).clamp_min(1.0)
    mean = (unit * body).sum((1, 2, 3), keepdim=True) / count
    var = (((unit - mean) * body) ** 2).sum((1, 2, 3), keepdim=True) / count
    scaled = (unit - mean) / var.sqrt().clamp_min(1e-3)
    return torch.where(body > 0, scaled, torch.full_like(unit, AIR_VALUE)).clamp(-6.0, 6.0)


def _decoder_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(),
    )


class LesionUNet(nn.Module):
    """Grey image [B, 1, H, W] in [0, 1] -> slice logits [B, K] (`forward`) and, with `segment`, also kidney and
    tumor logit maps [B, 2, H, W]. H and W must be multiples of 32 (the encoder's stride)."""

    maps = MAPS

    def __init__(self, num_classes: int, pretrained: bool, dropout: float, decoder=DECODER):
        super().__init__()
        self.encoder = timm.create_model("efficientnet_lite0", features_only=True, pretrained=False)
        if pretrained:
            load_packaged_weights(self.encoder)
        stem = self.encoder.conv_stem
        grey = nn.Conv2d(1, stem.out_channels, stem.kernel_size, stem.stride, stem.padding, bias=False)
        grey.weight.data.copy_(grey_stem_weight(stem.weight.data))
        self.encoder.conv_stem = grey
        if pretrained:
            for module in (self.encoder.conv_stem, self.encoder.bn1, *self.encoder.blocks[:FROZEN_STAGES]):
                module.requires_grad_(False)
        channels = self.encoder.feature_info.channels()
        blocks, previous = [], channels[-1]
        for skip, width in zip(reversed(channels[:-1]), decoder):
            blocks.append(_decoder_block(previous + skip, width))
            previous = width
        self.decoder = nn.ModuleList(blocks)
        self.map_head = nn.Sequential(nn.Conv2d(previous, decoder[-1], 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(decoder[-1], len(MAPS), 1))
        # Mean- and max-pooled deepest features: the max keeps a small lesion's evidence from being averaged away.
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * channels[-1], num_classes))

    def segment(self, unit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.encoder(normalise_body(unit))
        deepest = features[-1]
        y = deepest
        for block, skip in zip(self.decoder, reversed(features[:-1])):
            y = block(torch.cat([F.interpolate(y, size=skip.shape[-2:], mode="nearest"), skip], 1))
        maps = F.interpolate(self.map_head(y), size=unit.shape[-2:], mode="bilinear", align_corners=False)
        logits = self.head(torch.cat([deepest.mean((2, 3)), deepest.amax((2, 3))], 1))
        return logits, maps

    def forward(self, unit: torch.Tensor) -> torch.Tensor:
        return self.segment(unit)[0]


@register_model("lite0-unet")
def build_lite0_unet(num_classes, image_size, pretrained, freeze_backbone, dropout):
    if freeze_backbone:
        raise ValueError("lite0-unet trains its encoder with the masks: a frozen encoder is not supported")
    return LesionUNet(num_classes, pretrained == "imagenet", dropout)
