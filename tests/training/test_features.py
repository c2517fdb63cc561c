"""Frozen backbones train their head on cached features; checkpoints still hold the whole model."""

import numpy as np
import pytest
import torch

from kidneyct.config import TrainConfig
from kidneyct.data.rows import Rows
from kidneyct.experiments.evaluate import evaluate
from kidneyct.models import ModelConfig, create_model
from kidneyct.checkpoint import read_checkpoint
from kidneyct.checkpoint.model import load_model
from kidneyct.preprocess import Augmentation, Preprocessing
from kidneyct.training.distributed import DistContext
from kidneyct.training.engine import ImageStore
from kidneyct.training.features import extract_features, uses_feature_cache
from kidneyct.training.train import train

CONFIG = dict(model="efficientnet-lite0", image_size=64, epochs=2, batch_size=16, seed=2, device="cpu",
              workers=1, progress=False)


def test_only_frozen_backbones_use_the_feature_cache():
    frozen = create_model(ModelConfig("efficientnet-lite0", 2, 64, pretrained="none"))
    assert uses_feature_cache(frozen) and not uses_feature_cache(frozen, enabled=False)
    assert not uses_feature_cache(create_model(ModelConfig("efficientnet-lite0", 2, 64, "none", False)))
    assert not uses_feature_cache(create_model(ModelConfig("seed-cnn", 2, 96)))


def test_features_are_plain_then_augmented_views_of_the_backbone():
    model = create_model(ModelConfig("efficientnet-lite0", 2, 64, pretrained="none")).train()
    prep = Preprocessing(64, mean=0.449, std=0.226)
    images = np.random.default_rng(0).integers(0, 255, (5, 64, 64), dtype=np.uint8)
    store = ImageStore(Rows(images), torch.device("cpu"), resident=False)
    features = extract_features(model, prep, store, 2, Augmentation(), 0, DistContext(), batch_size=2)
    assert features.shape == (3, 5, model.head[1].in_features)
    with torch.no_grad():
        plain = model.features(prep.batch_to_tensor(images))
    torch.testing.assert_close(features[0], plain, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(features[1], features[0]) and not torch.allclose(features[2], features[1])
    assert model.training and not model.backbone.training  # the caller's mode is restored
    again = extract_features(model, prep, store, 2, Augmentation(), 0, DistContext(), batch_size=5)
    torch.testing.assert_close(again, features, atol=1e-5, rtol=1e-4)  # batching does not change a view


@pytest.mark.slow
def test_head_on_cached_features_trains_like_the_full_model_and_round_trips(phantom_png, tmp_path):
    # Without augmentation the cached features are exactly what the frozen backbone computes each step,
    # so the head must end where full forward passes take it.
    cached = train(TrainConfig(data=str(phantom_png), out=str(tmp_path / "cached"), augment=False, **CONFIG))
    full = train(TrainConfig(data=str(phantom_png), out=str(tmp_path / "full"), augment=False,
                             feature_cache=False, **CONFIG))
    assert cached.feature_seconds is not None and full.feature_seconds is None
    a, b = read_checkpoint(cached.last_checkpoint), read_checkpoint(full.last_checkpoint)
    assert set(a.state_dict) == set(b.state_dict)  # backbone and head
    for key, value in b.state_dict.items():
        torch.testing.assert_close(a.state_dict[key], value, atol=1e-4, rtol=1e-3)
    for mine, theirs in zip(a.progress.history, b.progress.history):
        assert mine.val_macro_f1 == theirs.val_macro_f1

    # The checkpoint is the whole model: the frozen ImageNet backbone unchanged, a trained head.
    fresh = create_model(ModelConfig("efficientnet-lite0", 2, 64))
    loaded = load_model(cached.best_checkpoint).model
    for key, value in fresh.backbone.state_dict().items():
        assert torch.equal(loaded.backbone.state_dict()[key], value), key
    assert not torch.equal(loaded.head[1].weight, fresh.head[1].weight)
    report = evaluate(cached.best_checkpoint, device="cpu", n_boot=20, progress=False)
    assert 0.0 <= report.metrics["accuracy"]["value"] <= 1.0
