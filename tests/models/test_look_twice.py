"""The two looks of a segmenting model, with a stand-in network: the midline rule and the mirror TTA."""

import numpy as np

from kidneyct.models.look_twice import look_twice, mirrored
from kidneyct.preprocess.zoom import Zoom

SIZE = 64


def _disc(shape, row, col, radius):
    rows, cols = np.ogrid[:shape[0], :shape[1]]
    return (rows - row) ** 2 + (cols - col) ** 2 <= radius ** 2


def _bright_is_kidney(crops):
    """A stand-in network: kidney logit high where the crop is bright, tumor logit high on the brightest pixels;
    the slice logits favour tumor by the crop's brightest value."""
    unit = crops[:, 0]
    maps = np.stack([np.where(unit > 0.4, 8.0, -8.0), np.where(unit > 0.9, 8.0, -8.0)], 1).astype(np.float32)
    peak = unit.reshape(len(unit), -1).max(1)
    return np.stack([peak * 4, -peak * 4], 1).astype(np.float32), maps


def test_the_midline_rule_takes_a_vertebral_body_out_of_the_kidney_share_and_the_tumor_peak():
    view = np.zeros((128, 128), np.uint8)
    view[_disc(view.shape, 80, 64, 10)] = 255  # bright and on the midline: a vertebral body
    kept = look_twice(_bright_is_kidney, view[None], Zoom(), SIZE, 0)
    ruled = look_twice(_bright_is_kidney, view[None], Zoom(midline=0.2), SIZE, 0)
    assert kept.kidney_fraction[0] > 0.01 and kept.tumor_peak[0] > 0.9
    assert ruled.kidney_fraction[0] == 0 and ruled.tumor_peak[0] == 0 and not ruled.found[0]


def test_a_lateral_kidney_is_left_alone_by_the_midline_rule():
    view = np.zeros((128, 128), np.uint8)
    view[_disc(view.shape, 70, 30, 10)] = 150
    kept = look_twice(_bright_is_kidney, view[None], Zoom(), SIZE, 0)
    ruled = look_twice(_bright_is_kidney, view[None], Zoom(midline=0.2), SIZE, 0)
    assert ruled.kidney_fraction[0] == kept.kidney_fraction[0] > 0.01


def test_mirror_averages_a_crop_with_its_mirror_image_and_flips_the_maps_back():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(SIZE,)).astype(np.float32)

    def lopsided(crops):  # left and right differ: a mirrored input gives another answer
        maps = np.stack([crops[:, 0] * weights, crops[:, 0] * weights[::-1]], 1)
        return (crops[:, 0] * weights).sum((1, 2))[:, None].repeat(2, 1), maps

    crops = rng.random((3, 1, SIZE, SIZE)).astype(np.float32)
    logits, maps = mirrored(lopsided)(crops)
    plain_logits, plain_maps = lopsided(crops)
    flipped_logits, flipped_maps = lopsided(crops[..., ::-1])
    np.testing.assert_allclose(logits, (plain_logits + flipped_logits) / 2, rtol=1e-5)
    np.testing.assert_allclose(maps, (plain_maps + flipped_maps[..., ::-1]) / 2, rtol=1e-5)
    # what a mirrored slice gets is the mirror image of what the slice gets
    _, maps_of_mirror = mirrored(lopsided)(np.ascontiguousarray(crops[..., ::-1]))
    np.testing.assert_allclose(maps_of_mirror, maps[..., ::-1], rtol=1e-5, atol=1e-6)


def test_look_twice_with_mirror_runs_each_crop_twice():
    calls = []

    def counting(crops):
        calls.append(len(crops))
        return _bright_is_kidney(crops)

    view = np.zeros((128, 128), np.uint8)
    view[_disc(view.shape, 70, 30, 10)] = 150
    look_twice(counting, view[None], Zoom(), SIZE, 0, mirror=True)
    assert calls == [1, 1, 1, 1]  # overview and zoom, each seen plainly and mirrored


def test_the_looks_run_numpy_blas_on_one_thread_and_give_it_back():
    """The crops' and pastes' matrix products spin-wait on a busy CPU when BLAS has several threads."""
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads():
        return {lib["filepath"]: lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}

    seen = []

    def recording(crops):
        seen.append(blas_threads())
        return _bright_is_kidney(crops)

    view = np.zeros((128, 128), np.uint8)
    view[_disc(view.shape, 70, 30, 10)] = 150
    with threadpool_limits(2, user_api="blas"):
        before = blas_threads()
        look_twice(recording, view[None], Zoom(), SIZE, 0, with_maps=True)
        assert blas_threads() == before
    assert seen and all(set(threads.values()) == {1} for threads in seen)
