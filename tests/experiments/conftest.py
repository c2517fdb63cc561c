"""Fixtures of the experiment tests: a finished cross-validation of a tiny segmenting model on phantoms."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def segmenting_cv(tmp_path_factory):
    """A two-fold `kidneyct cv` folder of lite0-unet-zoom (one epoch at 64 px on 24 masked phantom slices)."""
    from kidneyct.config import recipe_config
    from kidneyct.experiments.cv import CVConfig, cross_validate
    from kidneyct.synthetic.phantom import generate_dataset

    root = tmp_path_factory.mktemp("segmenting_cv")
    generate_dataset(root / "masked", n=24, seed=5, size=128, classes=["Tumor", "Normal"], slices_per_series=(1, 1),
                     progress=False, masks=True)
    config = recipe_config("lite0-unet-zoom", str(root / "masked"), str(root / "cv"), image_size=64, epochs=1,
                           batch_size=8, classes="tumor,normal", device="cpu", progress=False, workers=1)
    return cross_validate(CVConfig(config, folds=2, bootstrap=50)).out
