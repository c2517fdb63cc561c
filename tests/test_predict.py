import numpy as np
import pytest

import kidneyct
from kidneyct.data.phantom import generate_dataset


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


def test_checkpoint_needing_arbitrary_unpickling_is_refused(tmp_path):
    import pickle

    from kidneyct.checkpoint import CheckpointError, read_checkpoint

    class Exploit:
        def __reduce__(self):
            return (print, ("this would run code",))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"format": "kidneyct-checkpoint", "x": Exploit()}))
    with pytest.raises(CheckpointError, match="refused"):
        read_checkpoint(path)
