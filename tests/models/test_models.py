import urllib.error

import pytest
import torch
import torch.nn as nn

from kidneyct.models import ModelConfig, PretrainedWeightsUnavailable, create_model, get_spec, list_models


@pytest.mark.parametrize("name", [spec.name for spec in list_models()])
def test_every_registered_model_trains_a_step(name):
    # resnet50's ImageNet weights need the internet: its architecture is tested without them.
    pretrained = "none" if name == "resnet50" else None
    model = create_model(ModelConfig(name, num_classes=3, image_size=96, pretrained=pretrained))
    x = torch.rand(2, 1, 96, 96)
    logits = model(x)
    assert logits.shape == (2, 3)
    loss = nn.functional.cross_entropy(logits, torch.tensor([0, 2]))
    if get_spec(name).maps:  # a segmenting model also draws a map per name, at the input's size
        logits, maps = model.segment(x)
        assert maps.shape == (2, len(get_spec(name).maps), 96, 96)
        loss = loss + maps.mean()
    loss.backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for p in trainable)
    assert get_spec(name).cam_layer in dict(model.named_modules())


def test_seed_cnn_is_the_original_architecture():
    model = create_model(ModelConfig("seed-cnn", num_classes=2, image_size=224))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 64, 64, 128]
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 5
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [l.out_features for l in linears] == [128, 2]
    assert linears[0].in_features == 128 * 5 * 5  # 224 -> 5x5 after five valid conv + pool stages
    assert any(isinstance(m, nn.Dropout) and m.p == 0.5 for m in model.modules())


def test_frozen_backbone_only_trains_the_head_and_keeps_bn_stats():
    model = create_model(ModelConfig("efficientnet-lite0", num_classes=2, image_size=96))
    assert all(not p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    model.train()
    assert not model.backbone.training and model.head.training
    finetune = create_model(ModelConfig("efficientnet-lite0", 2, 96, freeze_backbone=False))
    assert all(p.requires_grad for p in finetune.backbone.parameters())


def test_efficientnet_imagenet_weights_load_offline_into_a_grey_stem():
    pretrained = create_model(ModelConfig("efficientnet-lite0", 2, 96, pretrained="imagenet"))
    scratch = create_model(ModelConfig("efficientnet-lite0", 2, 96, pretrained="none"))
    assert pretrained.backbone.conv_stem.weight.shape[1] == 1
    assert not torch.equal(pretrained.backbone.conv_stem.weight, scratch.backbone.conv_stem.weight)
    # BatchNorm running statistics from ImageNet, not the fresh-init ones.
    assert not torch.allclose(pretrained.backbone.bn1.running_var, torch.ones_like(pretrained.backbone.bn1.running_var))


def test_resnet50_without_internet_gives_a_clear_error(monkeypatch):
    from torchvision.models import ResNet50_Weights

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(type(ResNet50_Weights.IMAGENET1K_V2), "get_state_dict", offline)
    with pytest.raises(PretrainedWeightsUnavailable, match="--pretrained none"):
        create_model(ModelConfig("resnet50", 2, 96))


def test_unknown_model_lists_the_registry():
    with pytest.raises(KeyError, match="seed-cnn"):
        get_spec("vgg-nonexistent")


def test_a_model_declared_in_code_is_listed_and_built_like_the_shipped_ones(monkeypatch):
    from kidneyct.models import registry

    # A private registry: what this test registers must not leak into other tests.
    monkeypatch.setattr(registry, "_SPECS", dict(registry._SPECS))
    monkeypatch.setattr(registry, "_BUILDERS", dict(registry._BUILDERS))

    @registry.register_model("tiny-test", description="one linear layer", mean=0.5, std=0.25, image_size=16)
    def build_tiny(num_classes, image_size, pretrained, freeze_backbone, dropout):
        return nn.Sequential(nn.Flatten(), nn.Linear(image_size * image_size, num_classes))

    assert "tiny-test" in [spec.name for spec in list_models()] and get_spec("tiny-test").mean == 0.5
    assert create_model(ModelConfig("tiny-test", num_classes=2, image_size=16))(torch.rand(3, 1, 16, 16)).shape == (3, 2)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register_model("tiny-test")(build_tiny)
    with pytest.raises(ValueError, match="no spec"):
        registry.register_model("no-such-spec")(build_tiny)
