"""Batch size and learning rate scale together, so a large GPU batch trains the recipe a small CPU batch does."""

import numpy as np
import pytest

from kidneyct.config import TrainConfig
from kidneyct.training.settings import learning_rate
from kidneyct.training.train import train


def test_learning_rate_follows_the_square_root_of_the_batch_ratio():
    assert learning_rate(TrainConfig(data="d", lr=1e-3, batch_size=32)) == pytest.approx(1e-3)
    assert learning_rate(TrainConfig(data="d", lr=1e-3, batch_size=128)) == pytest.approx(2e-3)
    assert learning_rate(TrainConfig(data="d", lr=1e-3, batch_size=8, lr_batch=8)) == pytest.approx(1e-3)


def test_a_sixteen_times_larger_batch_trains_to_the_same_accuracy(tmp_path):
    from kidneyct.synthetic.phantom import generate_dataset

    data = tmp_path / "data"
    generate_dataset(data, n=480, seed=7, size=96, classes=["Tumor", "Normal"], slices_per_series=(1, 2),
                     progress=False)
    runs = {}
    for batch in (8, 128):  # frozen EfficientNet-Lite0: the head trains on cached features, seconds per run
        config = TrainConfig(data=str(data), out=str(tmp_path / f"batch-{batch}"), model="efficientnet-lite0",
                             image_size=96, epochs=20, patience=20, batch_size=batch, seed=1, device="cpu",
                             progress=False, workers=1, body_crop=False, label_smoothing=0.0, sampler="shuffle",
                             cache_dir=str(tmp_path / "cache"), feature_views=1)
        runs[batch] = train(config).history
    small, large = ([h.val_accuracy for h in runs[b][-5:]] for b in (8, 128))
    assert np.mean(small) >= 0.65, "the small batch should learn the phantoms"
    assert abs(np.mean(large) - np.mean(small)) <= 0.08, f"batch 128 {np.mean(large):.3f} vs 8 {np.mean(small):.3f}"
    ratios = [big.lr / little.lr for big, little in zip(runs[128], runs[8]) if little.lr > 1e-6]
    assert ratios == pytest.approx([4.0] * len(ratios), rel=0.02), "rates at the same point of the schedule"
