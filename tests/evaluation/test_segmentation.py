"""Tumor and kidney Dice on label maps: medians over the slices that show the structure, unknown pixels and
slices without a mask left out, n/a without a prediction."""

from __future__ import annotations

import math

import numpy as np

from kidneyct.evaluation.segmentation import dice, kidney_dice, tumor_dice


def test_dice_of_overlapping_regions():
    a, b = np.zeros((8, 8), bool), np.zeros((8, 8), bool)
    a[:4], b[2:6] = True, True
    assert dice(a, b) == 0.5 and dice(a, a) == 1.0 and dice(a & False, b & False) == 1.0


def test_median_dice_over_slices_that_show_the_structure():
    true = np.zeros((4, 8, 8), np.uint8)
    true[:, 2:6, 2:6] = 1
    true[0, 3:5, 3:5] = 2  # a tumor on slice 0 only
    true[3] = 255  # no mask
    predicted = true.copy()
    predicted[1, 2:6, 2:4] = 0  # half the kidney missed on slice 1
    predicted[0, 3:5, 3:4] = 1  # half the tumor called kidney
    assert tumor_dice(predicted, true) == (2 / 3, 1)
    value, slices = kidney_dice(predicted, true)  # slices 0, 1, 2: 1.0, 2/3, 1.0
    assert slices == 3 and value == 1.0
    partly = true[2].copy()
    partly[:4] = 255  # unknown pixels count for neither side
    assert kidney_dice(np.ones((1, 8, 8), np.uint8), [partly])[0] == dice(np.ones((4, 8), bool), partly[4:] == 1)
    assert math.isnan(tumor_dice(None, true)[0]) and tumor_dice(predicted[1:3], true[1:3])[1] == 0
