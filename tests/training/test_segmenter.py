"""A segmenting model trains end to end through `train` on a masked source and stores how it looks."""

import numpy as np
import pytest

from kidneyct.checkpoint import read_checkpoint
from kidneyct.config import recipe_config
from kidneyct.training.train import train


@pytest.fixture(scope="module")
def masked_phantoms(tmp_path_factory):
    from kidneyct.synthetic.phantom import generate_dataset

    root = tmp_path_factory.mktemp("masked")
    generate_dataset(root, n=32, seed=2, size=128, classes=["Tumor", "Normal"], slices_per_series=(1, 1),
                     progress=False, masks=True)
    return root


def test_the_segmenting_recipe_trains_and_records_its_looks(masked_phantoms, tmp_path):
    config = recipe_config("lite0-unet-zoom", str(masked_phantoms), str(tmp_path / "run"), image_size=64, epochs=2,
                           batch_size=8, classes="tumor,normal", device="cpu", progress=False, workers=1)
    result = train(config)
    stored = read_checkpoint(result.best_checkpoint)
    assert stored.outputs.maps == ("kidney", "tumor") and stored.outputs.kidney_finder == "kidney map"
    assert stored.outputs.segmentation.work_size == 64 and stored.preprocessing.image_size == 128  # the body view
    assert stored.preprocessing.body_crop and not stored.preprocessing.kidney_crop
    assert stored.study.features is None  # its kidney map is its scope gate
    assert stored.progress.epoch == 2 and np.isfinite(stored.progress.history[-1].train_loss)
    assert stored.sources[0].masked > 0
    assert np.isfinite(stored.calibration.temperature)


def test_segmenting_models_refuse_what_does_not_apply(masked_phantoms, tmp_path):
    config = recipe_config("lite0-unet-zoom", str(masked_phantoms), str(tmp_path / "run"), kidney_crop=True,
                           synthetic_lesions=0.5, device="cpu", progress=False)
    with pytest.raises(ValueError, match="--kidney-crop, --synthetic-lesions do not apply"):
        train(config)
