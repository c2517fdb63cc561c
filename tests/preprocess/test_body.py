"""The body crop of issue 17 crops exactly as the one it replaced (kept in benchmarks/body_crop_agreement.py):
on phantoms always, on a sample of the real slices when they are present. The full comparison over every
real slice is the benchmark's."""

import numpy as np

from kidneyct.io import read_slices
from kidneyct.preprocess import Preprocessing, body_mask, crop_box
from kidneyct.synthetic.phantom import generate_dataset


def _assert_same_as_reference(paths, reference_body_mask):
    prep = Preprocessing(96)
    found = 0
    for path in paths:
        unit = prep.to_unit(read_slices(path)[0])
        new, old = body_mask(unit), reference_body_mask(unit)
        assert (new is None) == (old is None), path
        if new is not None:
            np.testing.assert_array_equal(new, old, err_msg=str(path))
            found += 1
    return found


def test_body_mask_equals_the_former_one_on_phantoms(tmp_path, benchmark_script):
    generate_dataset(tmp_path, n=12, seed=5, size=160, classes=["Tumor", "Normal"], progress=False)
    paths = sorted(p for p in tmp_path.rglob("*.png") if ".mask" not in p.name)
    reference = benchmark_script("body_crop_agreement").reference_body_mask
    assert _assert_same_as_reference(paths, reference) >= len(paths) // 2


def test_body_mask_equals_the_former_one_on_real_slices(real_data, real_data_512, benchmark_script):
    reference = benchmark_script("body_crop_agreement").reference_body_mask
    sample = sorted(real_data.rglob("*.jpg"))[::400] + sorted(real_data_512.rglob("*.jpg"))[::40]
    assert _assert_same_as_reference(sample, reference) == len(sample)


def test_the_agreement_benchmark_reports_boxes_images_and_timings(real_data_512, benchmark_script):
    report = benchmark_script("body_crop_agreement").main(["--data", str(real_data_512), "--step", "50"])
    folder = report["folders"][0]
    assert folder["slices"] == 4 and folder["side_px"] == [512]
    assert folder["reads_identical"] == folder["boxes_within_2px"] == folder["masks_identical"] == 4
    assert folder["cached_images_identical"] == 4
    assert folder["ms_per_slice"]["new"] > 0 and folder["ms_per_slice"]["reference"] > 0


def test_crop_box_is_the_bounding_box_plus_the_margin_within_the_slice():
    mask = np.zeros((100, 200), bool)
    mask[10:20, 150:199] = True
    assert crop_box(mask) == (6, 24, 146, 200)  # margin round(0.02 * 200) = 4, cut at the right edge


def test_slices_over_body_side_are_masked_on_a_shrunk_copy_with_the_crop_scaled_back():
    from kidneyct.preprocess.body import BODY_SIDE, body_crop_geometry
    from kidneyct.preprocess.window import apply_window
    from kidneyct.synthetic.phantom import render_slice, sample_patient

    hu, _ = render_slice(sample_patient(np.random.default_rng(3), 256, None), 0.0)
    unit = apply_window(hu, 40, 400)
    large = np.kron(unit, np.ones((8, 8), np.float32))  # the same slice at 8x the pixels, over BODY_SIDE
    assert max(large.shape) > BODY_SIDE
    (small_box, small_keep), (large_box, large_keep) = body_crop_geometry(unit), body_crop_geometry(large)
    assert np.allclose(np.array(large_box) / 8, small_box, atol=2)
    assert large_keep.shape == (large_box[1] - large_box[0], large_box[3] - large_box[2])
    # the kept body agrees with the small slice's, up to the shrink's rounding at its rim
    assert abs(large_keep.mean() - small_keep.mean()) < 0.02
