"""The anatomical kidney locator: on phantoms with true kidney masks and, when present, on real scans
with organ labels (kidney-level and kidney-free slices)."""

from pathlib import Path

import numpy as np
import pytest

from kidneyct.synthetic.phantom import render_slice, sample_patient
from kidneyct.preprocess.window import apply_window
from kidneyct.preprocess.kidney import locate_batch, locate_kidneys

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real-ct-examples"
NIFTI = REAL / "abdomen-ct-30slices.nii.gz"
NO_KIDNEY_DICOM = REAL / "upper-abdomen-dicom-no-kidney"


def _phantom(seed: int, size: int = 128):
    patient = sample_patient(np.random.default_rng(seed), size, None)
    hu, _ = render_slice(patient, 0.0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    truth = [kidney.r2(xx, yy) <= 1.0 for kidney in patient.kidneys]  # z = 0: kidneys at full size
    return apply_window(hu, 40, 400), truth


def test_found_kidneys_are_kidneys_on_phantoms():
    found = inside = 0
    dices = []
    for seed in range(30):
        unit, truth = _phantom(seed)
        location = locate_kidneys(unit)
        for kidney in location.kidneys:
            found += 1
            row, col = (int(round(v)) for v in kidney.centroid)
            hits = [t for t in truth if t[row, col]]
            inside += bool(hits)
            if hits:
                blob = location.mask & hits[0]
                dices.append(2 * blob.sum() / (location.mask[hits[0]].size + hits[0].sum()))
    assert found >= 30, f"only {found} kidneys found on 30 phantom slices with 60 kidneys"
    assert inside == found, f"{found - inside} of {found} located kidneys lie outside every true kidney"
    assert np.median(dices) >= 0.6, f"median Dice {np.median(dices):.2f}"


def test_no_kidneys_without_an_axial_body():
    assert not locate_kidneys(np.zeros((96, 96), np.float32)).found
    unit, _ = _phantom(3)
    tall = np.pad(unit[:, 40:88], ((0, 0), (40, 40)))  # the body cut to be taller than wide (coronal-like)
    location = locate_kidneys(tall)
    assert not location.axial and not location.found


def test_batch_matches_single_slices():
    images = np.stack([np.rint(_phantom(seed)[0] * 255).astype(np.uint8) for seed in range(4)])
    masks, scores = locate_batch(images)
    for image, mask, score in zip(images, masks, scores):
        single = locate_kidneys(image / 255.0)
        assert np.array_equal(mask, single.mask) and score == pytest.approx(single.score)


@pytest.mark.skipif(not NIFTI.exists(), reason=f"real scan not present: {NIFTI}")
def test_real_scan_kidney_level_and_liver_level_slices():
    import nibabel as nib

    from kidneyct.io import read_slices
    from kidneyct.io.nifti import to_display

    labels = np.asarray(nib.as_closest_canonical(nib.load(str(NIFTI).replace(".nii.gz", ".organs.nii.gz"))).dataobj)
    hits = false_calls = 0
    for ct_slice in read_slices(NIFTI):
        kidney = to_display(np.isin(labels[:, :, ct_slice.index], [2, 3]))  # TotalSegmentator: 2, 3 = kidneys
        location = locate_kidneys(apply_window(ct_slice.pixels, 40, 400))
        if kidney.sum() > 50:  # a located blob mostly inside the labelled kidneys
            hits += location.found and (location.mask & kidney).sum() > 0.5 * location.mask.sum()
        elif not kidney.any():
            false_calls += location.found
    assert hits >= 15, f"kidneys located on {hits} of 21 kidney-level slices"
    assert false_calls == 0, f"kidneys called on {false_calls} liver-level slices without kidney"


@pytest.mark.skipif(not NO_KIDNEY_DICOM.exists(), reason=f"real series not present: {NO_KIDNEY_DICOM}")
def test_real_series_without_kidneys():
    from kidneyct.io import read_series

    calls = [locate_kidneys(apply_window(s.pixels, 40, 400)).found for s in read_series(NO_KIDNEY_DICOM)]
    assert sum(calls) <= 2, f"kidneys called on {sum(calls)} of {len(calls)} slices of a scan without kidneys"


def test_kidney_region_covers_both_kidneys_and_little_else():
    from kidneyct.preprocess.kidney import kidney_region

    covered = []
    for seed in range(10):
        unit, truth = _phantom(seed)
        location = locate_kidneys(unit)
        region = kidney_region(location)
        if location.spine is None:
            assert not region.any()
            continue
        covered += [(region & t).sum() / t.sum() for t in truth]
        assert region.sum() < 0.25 * (unit > 0.03).sum()  # a small part of the body
    assert np.median(covered) >= 0.9, f"median kidney coverage {np.median(covered):.2f}"


def test_locator_finds_exactly_what_the_former_one_found(benchmark_script):
    """The faster locator of issue 17 against the frozen former one (benchmarks/kidney_reference.py): same
    masks, scores, centroids and flags on phantoms at the sizes that change its radii (128, 160, 256 px)."""
    bench = benchmark_script("kidney_locator_speed")
    units = [_phantom(seed)[0] for seed in range(6)] + [_phantom(seed, 160)[0] for seed in (6, 7)]
    units += [_phantom(8, 256)[0], np.zeros((96, 96), np.float32)]
    found = 0
    for unit in units:
        old, new = bench.kidney_reference.locate_kidneys(unit), locate_kidneys(unit)
        assert bench.differences(old, new) == [], unit.shape
        found += old.found
    assert found >= 5  # the comparison covers slices with located kidneys, not only empty ones
