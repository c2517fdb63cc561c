"""The fast disk morphology gives exactly the sets of scipy's distance-transform and iterated definitions."""

import numpy as np
import pytest
from scipy import ndimage

from kidneyct.preprocess.morphology import (disk_closing, disk_dilation, disk_erosion, disk_opening, fill_holes,
                                            largest_component)


def _edt_dilation(mask, radius):
    if not mask.any():  # the EDT then has no pixel to measure from (scipy answers a corner's distance)
        return mask.copy()
    return ndimage.distance_transform_edt(~mask) <= radius


def _edt_erosion(mask, radius):
    border = int(np.ceil(radius)) + 1
    inside = ndimage.distance_transform_edt(np.pad(mask, border)) > radius
    return inside[border:-border, border:-border]


def _masks(seed, count=12):
    """Sparse specks, dense noise, blobs touching the edges, thin lines: shapes where rounding shows."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        shape = tuple(rng.integers(20, 70, 2))
        mask = rng.random(shape) < rng.choice([0.01, 0.2, 0.6])
        mask = ndimage.binary_closing(mask) if rng.random() < 0.5 else mask
        mask[rng.integers(shape[0]), :] = True  # a line across, to the edge
        yield mask, float(rng.choice([rng.uniform(0.5, 9), rng.integers(1, 9)]))


@pytest.mark.parametrize("seed", range(4))
def test_dilation_and_erosion_equal_the_distance_transform_definitions(seed):
    for mask, radius in _masks(seed):
        np.testing.assert_array_equal(disk_dilation(mask, radius), _edt_dilation(mask, radius))
        np.testing.assert_array_equal(disk_erosion(mask, radius), _edt_erosion(mask, radius))
        np.testing.assert_array_equal(disk_opening(mask, radius), _edt_dilation(_edt_erosion(mask, radius), radius))


@pytest.mark.parametrize("seed", range(3))
def test_closing_is_computed_as_if_the_image_went_on_as_background(seed):
    for mask, radius in _masks(seed):
        pad = 3 * int(np.ceil(radius)) + 5  # far more room than needed: the definition, not the shortcut
        wide = _edt_erosion(_edt_dilation(np.pad(mask, pad), radius), radius)[pad:-pad, pad:-pad]
        np.testing.assert_array_equal(disk_closing(mask, radius), wide)


def test_disk_dilation_matches_scipy_with_a_disk_structuring_element():
    mask = np.zeros((40, 40), bool)
    mask[20, 20] = mask[3, 37] = True
    yy, xx = np.mgrid[-5:6, -5:6]
    expected = ndimage.binary_dilation(mask, yy ** 2 + xx ** 2 <= 25)
    np.testing.assert_array_equal(disk_dilation(mask, 5), expected)
    assert disk_dilation(mask, 5)[:, :30].sum() == 81  # the digital disk of radius 5, whole


@pytest.mark.parametrize("seed", range(3))
def test_fill_holes_equals_scipy(seed):
    for mask, _ in _masks(seed):
        np.testing.assert_array_equal(fill_holes(mask), ndimage.binary_fill_holes(mask))
    ring = np.zeros((9, 9), bool)
    ring[2:7, 2:7], ring[3:6, 3:6] = True, False
    assert fill_holes(ring)[4, 4] and fill_holes(ring).sum() == 25
    assert not fill_holes(np.zeros((5, 5), bool)).any() and fill_holes(np.ones((5, 5), bool)).all()


def test_largest_component_picks_the_biggest_and_none_when_empty():
    mask = np.zeros((10, 10), bool)
    mask[0:2, 0:2], mask[5:9, 5:9] = True, True
    assert largest_component(mask).sum() == 16 and largest_component(mask)[6, 6]
    assert largest_component(np.zeros((4, 4), bool)) is None
