"""Training crops: a mask stays aligned with its image through the zoom and every random geometry."""

import numpy as np
import torch

from kidneyct.preprocess.zoom import FULL_VIEW, Zoom
from kidneyct.training.zoom_batches import UNKNOWN, ZoomAugmentation, choose_boxes, cut_batch, mask_boxes


def _views_with_masks(count: int = 6, side: int = 96):
    rng = np.random.default_rng(1)
    views = np.zeros((count, side, side), np.uint8)
    masks = np.zeros((count, side, side), np.uint8)
    for view, mask in zip(views, masks):
        top, left = rng.integers(20, 50, 2)
        mask[top:top + 20, left:left + 24] = 1
        mask[top + 5:top + 12, left + 6:left + 14] = 2
        view[mask > 0] = 200  # the image's bright region is exactly its mask
    return views, masks


def test_mask_follows_image_through_zoom_and_augmentation():
    views, masks = _views_with_masks()
    boxes = np.asarray(mask_boxes(masks, Zoom()), np.float32)
    geometry_only = ZoomAugmentation(gamma=0, contrast=0, brightness=0, noise=0, blur=0)
    crops, cut_masks = cut_batch(views, masks, boxes, 64, geometry_only, torch.Generator().manual_seed(0))
    bright = crops[:, 0] > 0.4
    agreement = (bright == (cut_masks > 0)).float().mean().item()
    assert agreement > 0.99  # only edge pixels may differ (bilinear image, nearest mask)
    assert (cut_masks == 2).any() and set(torch.unique(cut_masks).tolist()) <= {0, 1, 2}


def test_unknown_masks_stay_unknown_everywhere():
    views, masks = _views_with_masks(2)
    masks[1] = UNKNOWN
    boxes = np.asarray([FULL_VIEW, (0.5, 0.5, 0.8)], np.float32)  # the second crop leaves the view
    _, cut_masks = cut_batch(views, masks, boxes, 32)
    assert (cut_masks[1] == UNKNOWN).all() and not (cut_masks[0] == UNKNOWN).any()


def test_boxes_come_from_masks_then_the_models_overview_then_the_whole_view():
    truth = [(0.1, 0.1, 0.4), None, None]
    predicted = {1: (0.2, 0.0, 0.5)}
    boxes = choose_boxes(np.arange(3), truth, predicted, 0.0, torch.Generator().manual_seed(0))
    assert np.allclose(boxes, [truth[0], predicted[1], FULL_VIEW])
    assert np.allclose(choose_boxes(np.arange(3), truth, predicted, 1.0, torch.Generator()), [FULL_VIEW] * 3)
