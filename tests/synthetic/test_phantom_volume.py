"""Pelvis-to-liver phantom volumes: kidney truth per slice, inferior first, written and read back."""

import numpy as np
import pytest

from kidneyct.io import expand_inputs, read_item
from kidneyct.synthetic.phantom_volume import KIDNEY_LENGTH_MM, render_level, render_volume, write_volume
from kidneyct.synthetic.phantom import sample_patient


def test_kidneys_show_between_their_poles_only_and_taper_towards_them():
    patient = sample_patient(np.random.default_rng(0), 96, None)
    half = KIDNEY_LENGTH_MM / 2
    assert render_level(patient, 0.0)[2] and render_level(patient, half - 5)[2]
    assert not render_level(patient, half + 5)[2] and not render_level(patient, -half - 5)[2]
    liver, pelvis = render_level(patient, half + 30)[0], render_level(patient, -half - 30)[0]
    centre = render_level(patient, 0.0)[0]
    # Above the kidneys the liver fills more of the slice; below them the iliac bones appear beside the spine.
    assert ((liver > 40) & (liver < 90)).sum() > ((centre > 40) & (centre < 90)).sum()
    assert (pelvis > 500).sum() > (centre > 500).sum()


def test_a_volume_runs_from_the_pelvis_to_the_liver_with_the_tumor_inside_the_kidney_slices():
    slices, truth, heights = render_volume(1, 96, "Tumor")
    assert np.all(np.diff(heights) > 0) and heights[0] < -KIDNEY_LENGTH_MM / 2 < KIDNEY_LENGTH_MM / 2 < heights[-1]
    shown = np.flatnonzero(truth)
    assert len(shown) == shown[-1] - shown[0] + 1  # one contiguous block
    lesion = [i for i, (_, mask) in enumerate(slices) if mask.any()]
    assert lesion and set(lesion) <= set(shown)


@pytest.mark.parametrize("fmt", ["dicom", "nifti"])
def test_written_volumes_read_back_inferior_first_with_their_spacing(tmp_path, fmt):
    volume = write_volume(tmp_path, fmt, seed=2, size=64, below_mm=70, above_mm=70)
    items, skipped = expand_inputs([volume.path])
    assert not skipped and len(items) == 1 and items[0].is_study
    slices, lost = read_item(items[0])
    assert not lost and len(slices) == len(volume.kidney) == len(volume.heights_mm)
    assert np.allclose(np.diff([s.position for s in slices]), 5.0)
    rendered, _, _ = render_volume(2, 64, None, volume.heights_mm)
    for read, (hu, _) in zip(slices, rendered):  # each slice comes back where it was rendered
        assert np.abs(read.pixels - np.clip(np.rint(hu), -1024, None)).max() <= 1.0
