import numpy as np
import pytest

import kidneyct
from kidneyct.synthetic.phantom import generate_dataset


def test_load_predict_on_png_array_and_volume(trained_run, phantom_png, tmp_path):
    predictor = kidneyct.load(trained_run.best_checkpoint)
    image = next((phantom_png / "Tumor").glob("*[0-9]).png"))
    probs = predictor.predict(image)
    assert set(probs) == {"Tumor", "Normal"} and sum(probs.values()) == pytest.approx(1, abs=1e-5)
    from PIL import Image

    array = np.asarray(Image.open(image))
    assert predictor.predict(array) == pytest.approx(probs, abs=1e-5)  # same preprocessing either way
    generate_dataset(tmp_path, n=6, seed=0, size=64, classes=["Tumor", "Normal"], fmt="nifti",
                     slices_per_series=(3, 3), progress=False)
    volume = next((tmp_path / "Tumor").glob("*[0-9].nii.gz"))
    per_slice = predictor.predict(volume)
    assert isinstance(per_slice, list) and len(per_slice) == 3
