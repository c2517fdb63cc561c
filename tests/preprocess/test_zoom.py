"""The kidney zoom's geometry: numpy crops equal torch's affine sampling, paste inverts cut, boxes hold kidneys."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kidneyct.preprocess.zoom import FULL_VIEW, Zoom, cut, paste


@pytest.mark.parametrize("box", [(0.1, 0.3, 0.45), FULL_VIEW, (-0.8, 0.7, 0.5)])
def test_cut_equals_torch_affine_sampling(box):
    """Inference cuts in numpy what training cut in torch: the same pixels, including beyond the view's edge."""
    image = np.random.default_rng(0).random((96, 96)).astype(np.float32)
    theta = torch.tensor([[[box[2], 0, box[0]], [0, box[2], box[1]]]], dtype=torch.float32)
    grid = F.affine_grid(theta, [1, 1, 64, 64], align_corners=False)
    expected = F.grid_sample(torch.from_numpy(image)[None, None], grid, align_corners=False)[0, 0].numpy()
    assert np.abs(cut(image, box, 64) - expected).max() < 1e-4


def test_box_holds_both_kidneys_and_paste_inverts_cut():
    kidneys = np.zeros((128, 128), bool)
    kidneys[60:80, 30:45] = kidneys[58:75, 90:105] = True
    box = Zoom().box(kidneys)
    inside = paste(np.ones((1, 64, 64), np.float32), box, kidneys.shape)[0] > 0.5
    assert inside[kidneys].all() and box[2] < 1  # every kidney pixel inside, and a real zoom
    crop = cut(kidneys.astype(np.float32), box, 64)
    back = paste(crop[None], box, kidneys.shape)[0] > 0.5
    assert (back == kidneys).mean() > 0.995


def test_each_kidney_gets_its_own_box_and_none_gets_the_prior():
    zoom = Zoom(least=0.3)
    kidneys = np.zeros((100, 100), bool)
    kidneys[50:60, 20:30] = kidneys[52:58, 70:76] = True
    left, right = zoom.side_boxes(kidneys)
    assert left[0] < 0 < right[0] and left[2] == pytest.approx(0.3)  # a small kidney gets the least side
    assert zoom.boxes_or_prior(kidneys.astype(float)) == ([left, right], True)
    kidneys[52:58, 70:76] = False
    kidneys[55, 75] = True  # a stray pixel is no kidney
    assert len(zoom.side_boxes(kidneys)) == 1
    assert zoom.boxes_or_prior(np.zeros((100, 100))) == ([zoom.prior], False)
    assert Zoom.from_dict(zoom.to_dict()) == zoom


def _blob(mask, row, col, radius):
    rows, cols = np.ogrid[:mask.shape[0], :mask.shape[1]]
    mask |= (rows - row) ** 2 + (cols - col) ** 2 <= radius ** 2


def test_midline_rule_drops_only_components_wholly_on_the_midline():
    kidney = np.zeros((128, 128), bool)
    _blob(kidney, 80, 64, 8)  # a vertebral body: on the midline
    _blob(kidney, 70, 30, 10)  # a kidney on each side
    _blob(kidney, 70, 98, 10)
    horseshoe = np.zeros_like(kidney)
    horseshoe[50:58, 30:100] = True  # one component from side to side, across the midline
    dropped = Zoom(midline=0.2).on_midline(kidney | horseshoe)
    spine = np.zeros_like(kidney)
    _blob(spine, 80, 64, 8)
    assert np.array_equal(dropped, spine)
    assert not Zoom().on_midline(kidney).any()  # off by default: checkpoints before the rule infer as they did


def test_midline_centre_also_drops_a_spine_with_a_strip_of_psoas_but_keeps_kidneys_and_horseshoes():
    spine = np.zeros((128, 128), bool)
    _blob(spine, 80, 64, 9)
    spine[78:84, 64:86] = True  # a strip of psoas beside it, reaching out of the band on one side
    kidneys = np.zeros_like(spine)
    _blob(kidneys, 70, 30, 10)
    _blob(kidneys, 70, 98, 10)
    horseshoe = np.zeros_like(spine)
    _blob(horseshoe, 40, 30, 9)
    _blob(horseshoe, 40, 98, 9)
    horseshoe[38:43, 30:98] = True  # the isthmus across the midline: centred on it, a mass on each side
    both = spine | kidneys | horseshoe
    assert not Zoom(midline=0.2).on_midline(both).any(), "the band alone keeps what reaches out of it"
    assert np.array_equal(Zoom(midline=0.2, midline_centre=True).on_midline(both), spine)
    assert not Zoom(midline=0.0, midline_centre=True).on_midline(both).any(), "no band, no rule"


def test_checkpoints_before_midline_centre_read_without_it():
    stored = Zoom(midline=0.2).to_dict()
    del stored["midline_centre"]
    assert Zoom.from_dict(stored) == Zoom(midline=0.2)


def test_midline_rule_in_a_zoom_crop_measures_the_band_on_the_view():
    kidney = np.zeros((64, 64), bool)
    _blob(kidney, 32, 6, 4)  # near the crop's left edge
    zoom = Zoom(midline=0.2)
    # the crop of the view's right half: its left edge is the view's midline, so that blob sits on it
    assert zoom.on_midline(kidney, (0.5, 0.0, 0.5)).sum() == kidney.sum()
    # the crop of the view's far right: the same blob is a kidney
    assert not zoom.on_midline(kidney, (0.75, 0.0, 0.25)).any()


def test_clear_midline_takes_the_tumor_on_a_dropped_component_with_it():
    maps = np.zeros((2, 128, 128), np.float32)
    spine, kidney = np.zeros((128, 128), bool), np.zeros((128, 128), bool)
    _blob(spine, 80, 64, 8)
    _blob(kidney, 70, 30, 10)
    maps[0][spine | kidney] = 0.9
    maps[1][spine] = 0.8
    maps[1][70, 30] = 0.7  # a tumor pixel in the kidney stays
    cleared = Zoom(midline=0.2).clear_midline(maps)
    assert cleared[0][spine].max() == 0 and cleared[1][spine].max() == 0
    assert np.array_equal(cleared[0][kidney], maps[0][kidney]) and cleared[1][70, 30] == np.float32(0.7)
    assert maps[0][spine].min() == np.float32(0.9)  # the input is left as it was
