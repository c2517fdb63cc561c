"""torchvision ResNet50 with ImageNet weights (downloaded when online) and the seed's head."""

from __future__ import annotations

import torch.nn as nn
from torchvision.models import ResNet50_Weights, resnet50

from kidneyct.errors import PretrainedWeightsUnavailable
from kidneyct.models.heads import BackboneClassifier, grey_stem_weight
from kidneyct.models.registry import register_model


def _imagenet_state_dict():
    weights = ResNet50_Weights.IMAGENET1K_V2
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as error:  # URLError, socket errors, HTTP errors: all mean "not obtainable here"
        raise PretrainedWeightsUnavailable(
            f"could not download torchvision's ResNet50 ImageNet weights from {weights.url} "
            f"({type(error).__name__}: {error}). Connect to the internet once (they are then cached under "
            "$TORCH_HOME/hub/checkpoints), or train from scratch with --pretrained none."
        ) from None


@register_model("resnet50")
def build_resnet50(num_classes, image_size, pretrained, freeze_backbone, dropout):
    backbone = resnet50(weights=None)
    if pretrained == "imagenet":
        backbone.load_state_dict(_imagenet_state_dict())
    conv1 = backbone.conv1
    grey = nn.Conv2d(1, conv1.out_channels, conv1.kernel_size, conv1.stride, conv1.padding, bias=False)
    grey.weight.data.copy_(grey_stem_weight(conv1.weight.data))
    backbone.conv1 = grey
    num_features = backbone.fc.in_features
    backbone.fc = nn.Identity()  # torchvision's ResNet already ends in global average pooling
    return BackboneClassifier(backbone, num_features, num_classes, dropout, freeze_backbone)
