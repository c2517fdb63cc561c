"""The kidney crop: square, inside the slice, holding the kidneys, and a preprocessing option."""

import numpy as np

from kidneyct.io.slices import CTSlice
from kidneyct.preprocess.body import body_mask, crop_box, crop_to_body
from kidneyct.preprocess.geometry import crop_to_kidneys
from kidneyct.preprocess.kidney_crop import kidney_box, square_box
from kidneyct.preprocess.preprocessing import Preprocessing
from kidneyct.preprocess.window import apply_window
from kidneyct.synthetic.phantom import render_slice, sample_patient


def test_square_box_holds_the_region_and_stays_inside_the_image():
    region = np.zeros((60, 100), bool)
    region[20:30, 5:55] = True
    top, bottom, left, right = square_box(region, margin=3)
    assert bottom - top == right - left == 56
    assert top >= 0 and bottom <= 60 and left == 2 and right == 58
    assert region[top:bottom, left:right].sum() == region.sum()
    near_edge = np.zeros((60, 100), bool)
    near_edge[55:60, 0:40] = True  # the square would reach below the image: it moves up instead
    top, bottom, _, _ = square_box(near_edge, margin=0)
    assert (top, bottom) == (20, 60)
    assert square_box(np.zeros((8, 8), bool), margin=1) is None


def test_kidney_crop_zooms_in_on_both_kidneys_of_phantoms():
    held, kidneys, zoom = 0, 0, []
    for seed in range(12):
        size = 128
        patient = sample_patient(np.random.default_rng(seed), size, None)
        hu, _ = render_slice(patient, 0.0)
        unit = apply_window(hu, 40, 400)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        top, bottom, left, right = crop_box(body_mask(unit))
        body = crop_to_body(unit)
        box = kidney_box(body)
        assert box is not None, f"phantom {seed}: no spine found"
        t, b, l, r = box
        assert b - t == r - l or b - t == body.shape[0] or r - l == body.shape[1], "square unless the body is smaller"
        for kidney in patient.kidneys:
            truth = (kidney.r2(xx, yy) <= 1.0)[top:bottom, left:right]
            kidneys += 1
            held += truth[t:b, l:r].sum() >= 0.95 * truth.sum()
        zoom.append(max(body.shape) / (b - t))
    assert held >= 0.9 * kidneys, f"only {held} of {kidneys} kidneys inside the crop"
    assert np.median(zoom) >= 1.3, f"the crop is barely smaller than the body (median zoom {np.median(zoom):.2f})"


def test_kidney_crop_is_a_cached_preprocessing_option():
    patient = sample_patient(np.random.default_rng(1), 128, None)
    hu, _ = render_slice(patient, 0.0)
    ct_slice = CTSlice(pixels=hu.astype(np.float32), hu=True, source="phantom")
    prep = Preprocessing(image_size=64, kidney_crop=True)
    assert prep.cached_form()["kidney_crop"] is True
    expected = crop_to_kidneys(apply_window(hu, 40, 400))
    image = prep.to_uint8(ct_slice)
    assert image.shape == (64, 64)
    assert not np.array_equal(image, Preprocessing(image_size=64, body_crop=True).to_uint8(ct_slice))
    assert expected.shape[0] == expected.shape[1]
    assert Preprocessing.from_dict(prep.to_dict()).kidney_crop


def test_large_slices_are_located_on_a_shrunk_copy_with_the_box_scaled_back():
    patient = sample_patient(np.random.default_rng(2), 128, None)
    hu, _ = render_slice(patient, 0.0)
    body = crop_to_body(apply_window(hu, 40, 400))
    large = np.kron(body, np.ones((8, 8), np.float32))  # the same slice at 8x the pixels (over LOCATE_SIDE)
    small_box, large_box = kidney_box(body), kidney_box(large)
    assert small_box is not None and large_box is not None
    assert np.allclose(np.array(large_box) / 8, small_box, atol=2)
