"""A mask stays aligned with its image through every geometric step of the cached form (body crop, kidney
crop, pad to square, resize) and of training augmentation (flips, rotations, scales, shifts, field of view):
an image whose brightest square is exactly its mask is thresholded back to the moved mask, up to the
one-pixel rim that bilinear resampling blurs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from kidneyct.io.slices import CTSlice
from kidneyct.preprocess import Augmentation, Preprocessing, apply_window
from kidneyct.preprocess.acquisition import AcquisitionAugmentation
from kidneyct.preprocess.geometry import slice_geometry
from kidneyct.preprocess.label_warp import UNKNOWN
from kidneyct.synthetic.phantom import render_slice, sample_patient

TUMOR = 2


def _phantom_with_marker(size: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """A phantom slice (display [0, 1], at most 0.8) with a bright square (1.0) in its left kidney, and the
    mask of that square (label 2), off-square so that the pad to square has work to do."""
    hu, _ = render_slice(sample_patient(np.random.default_rng(4), size), 0.0)
    unit = np.minimum(apply_window(hu, 40, 400), 0.8)[:, 6:]  # taller than wide
    kidney = sample_patient(np.random.default_rng(4), size).kidneys[0]
    row, col = int(kidney.cy), int(kidney.cx) - 6
    labels = np.zeros(unit.shape, np.uint8)
    labels[row - 6:row + 7, col - 5:col + 6] = TUMOR
    unit[labels == TUMOR] = 1.0
    return unit, labels


def _aligned(bright: np.ndarray, mask: np.ndarray) -> None:
    """The thresholded image equals the mask but on the mask's one-pixel rim."""
    inside = mask == TUMOR
    assert inside.sum() >= 6, "the marker must survive the transform"
    rim = ndimage.binary_dilation(inside) & ~ndimage.binary_erosion(inside)
    assert not ((bright != inside) & ~rim).any()


@pytest.mark.parametrize("crop", [{}, {"body_crop": True}, {"kidney_crop": True, "body_crop": True}])
@pytest.mark.parametrize("size", [64, 96])
def test_masks_follow_every_crop_pad_and_resize(crop, size):
    unit, labels = _phantom_with_marker()
    prep = Preprocessing(image_size=size, **crop)
    image, mask = prep.to_uint8_with_mask(CTSlice(unit, hu=False, source="phantom"), labels)
    assert np.array_equal(image, prep.to_uint8(CTSlice(unit, hu=False, source="phantom")))
    _aligned(image > 0.9 * 255, mask)
    top, bottom, left, right = slice_geometry(unit, size, **crop).box
    if crop:  # the crop did cut
        assert (bottom - top) * (right - left) < unit.size * 0.8


def _batch(size: int = 64, count: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(0)
    images, masks = torch.zeros(count, 1, size, size), torch.zeros(count, size, size, dtype=torch.uint8)
    for i in range(count):
        top, left = rng.integers(10, 34, 2)
        masks[i, top:top + 14, left:left + 9] = TUMOR
        images[i, 0] = 0.2 + 0.8 * (masks[i] == TUMOR)
    masks[-1] = UNKNOWN  # an image without a mask
    return images, masks


def test_augmentation_moves_masks_with_their_images():
    images, masks = _batch()
    policy = Augmentation(hflip=0.5, rotate_degrees=30.0, translate=0.1, scale=(0.8, 1.2), brightness=0.0,
                          contrast=0.0)
    params = policy.sample(len(images), torch.Generator().manual_seed(1))
    moved, moved_masks = Augmentation.apply(images, params), Augmentation.apply_masks(masks, params)
    assert (params[:, 2] < 0).any() and (params[:, 2] > 0).any()  # flipped and not flipped rows
    for image, mask in zip(moved[:-1, 0].numpy(), moved_masks[:-1].numpy()):
        _aligned(image > 0.6, mask)
    assert (moved_masks[-1] == UNKNOWN).all()


def test_field_of_view_changes_move_masks_and_other_families_leave_them():
    images, masks = _batch()
    policy = AcquisitionAugmentation(fov_p=1.0, fov_scale=(0.7, 1.3), fov_shift=0.08, blur_p=1.0)
    params = policy.sample(len(images), torch.Generator().manual_seed(2))
    moved, moved_masks = policy.apply(images, params), policy.apply_masks(masks, params)
    assert not torch.equal(moved_masks[0], masks[0])
    for image, mask in zip(moved[:-1, 0].numpy(), moved_masks[:-1].numpy()):
        _aligned(image > 0.6, mask)
    untouched = AcquisitionAugmentation(blur_p=1.0, noise_p=1.0)
    assert torch.equal(untouched.apply_masks(masks, untouched.sample(len(masks), torch.Generator())), masks)
