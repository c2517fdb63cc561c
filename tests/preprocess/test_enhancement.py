"""Contrast enhancement in HU inside the kidney map: the unenhanced real scan is told apart from enhanced kidneys."""

import numpy as np
import pytest

from kidneyct.preprocess.enhancement import ENHANCED_KIDNEY_HU, kidney_hu, study_enhanced
from kidneyct.preprocess.window import window_to_uint8


@pytest.mark.parametrize("kidney_hu_value, enhanced", [(30.0, False), (180.0, True)])
def test_kidney_hu_is_read_back_through_the_window(kidney_hu_value, enhanced):
    hu = np.full((64, 64), -100.0)
    hu[20:40, 20:30] = kidney_hu_value
    view = window_to_uint8(hu)
    probability = np.zeros((64, 64))
    probability[20:40, 20:30] = 0.9
    measured = kidney_hu(view, probability, 40.0, 400.0)
    assert measured == pytest.approx(kidney_hu_value, abs=2.0)
    assert study_enhanced([measured, None]) is enhanced
    assert kidney_hu(view, np.zeros((64, 64)), 40.0, 400.0) is None and study_enhanced([None]) is None


def test_the_real_unenhanced_scan_measures_unenhanced(real_examples):
    import nibabel as nib

    volume = np.asarray(nib.load(real_examples / "abdomen-ct-30slices.nii.gz").dataobj, np.float32)
    organs = np.asarray(nib.load(real_examples / "abdomen-ct-30slices.organs.nii.gz").dataobj)
    medians = [kidney_hu(window_to_uint8(volume[:, :, z]), np.isin(organs[:, :, z], (2, 3)).astype(float), 40, 400)
               for z in range(volume.shape[2])]
    assert study_enhanced(medians) is False
    assert max(m for m in medians if m is not None) < ENHANCED_KIDNEY_HU
