import numpy as np
import pytest

import kidneyct
from kidneyct.synthetic.phantom import generate_dataset


def test_load_predict_on_png_array_and_volume(trained_run, phantom_png, tmp_path):
    predictor = kidneyct.load(trained_run.best_checkpoint)
    image = next((phantom_png / "Tumor").glob("*[0-9]).png"))
    result = predictor.predict(image)
    probs = result.slices[0].probabilities
    assert result.kind == "image" and set(probs) == {"Tumor", "Normal"} and sum(probs.values()) == pytest.approx(1)
    from PIL import Image

    by_array = predictor.predict(np.asarray(Image.open(image))).slices[0]
    assert by_array.probabilities == pytest.approx(probs, abs=1e-6)  # same preprocessing either way
    assert (by_array.call, by_array.in_scope) == (result.slices[0].call, result.slices[0].in_scope)
    generate_dataset(tmp_path, n=6, seed=0, size=64, classes=["Tumor", "Normal"], fmt="nifti",
                     slices_per_series=(3, 3), progress=False)
    volume = predictor.predict(next((tmp_path / "Tumor").glob("*[0-9].nii.gz")))
    assert volume.kind == "volume" and volume.n_slices == 3 and volume.rule
    assert volume.to_dict()["slices"][0]["index"] == 0 and volume.to_json().startswith("{")
    with pytest.raises(ValueError, match="use Predictor.run"):
        predictor.predict(phantom_png / "Tumor")
