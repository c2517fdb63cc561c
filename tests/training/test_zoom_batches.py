"""Training crops: a mask stays aligned with its image through the zoom and every random geometry."""

import numpy as np
import torch

from kidneyct.preprocess.zoom import FULL_VIEW, Zoom
from kidneyct.training.zoom_batches import (UNKNOWN, ZoomAugmentation, choose_boxes, crop_labels, cut_batch,
                                            mask_boxes)


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
    boxes = np.asarray([sides[0][0] for sides in mask_boxes(masks, Zoom())], np.float32)
    geometry_only = ZoomAugmentation(gamma=0, contrast=0, brightness=0, noise=0, blur=0)
    crops, cut_masks, _ = cut_batch(views, masks, boxes, 64, geometry_only, torch.Generator().manual_seed(0))
    bright = crops[:, 0] > 0.4
    agreement = (bright == (cut_masks > 0)).float().mean().item()
    assert agreement > 0.99  # only edge pixels may differ (bilinear image, nearest mask)
    assert (cut_masks == 2).any() and set(torch.unique(cut_masks).tolist()) <= {0, 1, 2}


def test_unknown_masks_stay_unknown_everywhere():
    views, masks = _views_with_masks(2)
    masks[1] = UNKNOWN
    boxes = np.asarray([FULL_VIEW, (0.5, 0.5, 0.8)], np.float32)  # the second crop leaves the view
    _, cut_masks, _ = cut_batch(views, masks, boxes, 32)
    assert (cut_masks[1] == UNKNOWN).all() and not (cut_masks[0] == UNKNOWN).any()


def test_boxes_come_from_masks_then_the_models_overview_then_the_whole_view():
    truth = [[((0.1, 0.1, 0.4), False)], [], []]
    predicted = {1: [(0.2, 0.0, 0.5)]}
    boxes, zoomed = choose_boxes(np.arange(3), truth, predicted, 0.0, 0.0, torch.Generator().manual_seed(0))
    assert np.allclose(boxes, [truth[0][0][0], predicted[1][0], FULL_VIEW]) and zoomed.tolist() == [True, True, False]
    boxes, zoomed = choose_boxes(np.arange(3), truth, predicted, 1.0, 0.0, torch.Generator())
    assert np.allclose(boxes, [FULL_VIEW] * 3) and not zoomed.any()


def test_the_head_learns_what_the_crop_shows():
    """A masked tumor slice's zoom on the kidney without the tumor is a normal crop; an unmasked tumor slice's
    zoom on one kidney teaches the head nothing (the tumor may be on the other side)."""
    masks = torch.zeros(4, 8, 8, dtype=torch.uint8)
    masks[0, 2, 2] = 2
    masks[2:] = UNKNOWN
    labels = np.array([0, 0, 0, 1])  # classes tumor (0) and normal (1)
    out, learnt = crop_labels(labels, masks, np.array([True, True, True, True]), 0, 1)
    assert out.tolist() == [0, 1, 0, 1] and learnt.tolist() == [True, True, False, True]


def test_unenhanced_kidneys_are_darker_and_their_tumor_is_kidney():
    views, masks = _views_with_masks(4)
    boxes = np.asarray([sides[0][0] for sides in mask_boxes(masks, Zoom())], np.float32)
    plain = ZoomAugmentation(rotate_degrees=0, scale=0, shift=0, hflip=0, gamma=0, contrast=0, brightness=0,
                             noise=0, blur=0)
    before, _, none = cut_batch(views, masks, boxes, 64, plain, torch.Generator().manual_seed(0))
    after, cut_masks, unenhanced = cut_batch(views, masks, boxes, 64, ZoomAugmentation(**{**plain.to_dict(), "unenhanced": 1.0}),
                                             torch.Generator().manual_seed(0))
    assert unenhanced.all() and not none.any()
    kidney = cut_masks > 0
    assert after[:, 0][kidney].mean() < 0.7 * before[:, 0][kidney].mean()
    assert not (cut_masks == 2).any() and kidney.any()


def test_zooms_favour_the_kidney_with_the_tumor():
    masks = np.zeros((1, 64, 64), np.uint8)
    masks[0, 30:40, 8:20] = masks[0, 30:40, 44:56] = 1
    masks[0, 33:36, 48:52] = 2  # the tumor is on the right of the midline
    sides = mask_boxes(masks, Zoom())
    assert [holds for _, holds in sides[0]] == [False, True]
    generator = torch.Generator().manual_seed(0)
    picks = [choose_boxes(np.zeros(1, int), sides, {}, 0.0, 1.0, generator)[0][0, 0] for _ in range(20)]
    assert all(x > 0 for x in picks)


def _body_with_kidneys(count: int = 4, side: int = 96):
    """Slices of a soft-tissue body (fat around it) with one bright kidney and its mask, no tumor."""
    rng = np.random.default_rng(2)
    rows, cols = np.mgrid[:side, :side]
    views = np.zeros((count, side, side), np.uint8)
    masks = np.zeros((count, side, side), np.uint8)
    for view, mask in zip(views, masks):
        body = (rows - side / 2) ** 2 / 40 ** 2 + (cols - side / 2) ** 2 / 44 ** 2 < 1
        view[body] = 70  # fat
        view[body & ((rows - side / 2) ** 2 + (cols - side / 2) ** 2 < 30 ** 2)] = 120  # soft tissue
        top, left = rng.integers(30, 45, 2)
        mask[top:top + 22, left:left + 16] = 1
        view[mask == 1] = 190
        view[:] = np.clip(view + rng.normal(0, 3, view.shape), 0, 255).astype(np.uint8)
    return views, masks


def test_synthetic_tumors_carry_their_mask_and_only_enter_normal_known_kidneys():
    views, masks = _body_with_kidneys(4)
    masks[2] = UNKNOWN  # no mask: nowhere to put a tumor that the loss could check
    masks[3][masks[3] == 1] = 2  # already a tumor slice: left alone
    plain = ZoomAugmentation(rotate_degrees=0, scale=0, shift=0, hflip=0, gamma=0, contrast=0, brightness=0,
                             noise=0, blur=0)
    with_tumors = ZoomAugmentation(**{**plain.to_dict(), "synthetic_tumors": 1.0})
    boxes = np.asarray([FULL_VIEW] * 4, np.float32)
    before, before_masks, _ = cut_batch(views, masks, boxes, 64, plain, torch.Generator().manual_seed(0))
    after, after_masks, _ = cut_batch(views, masks, boxes, 64, with_tumors, torch.Generator().manual_seed(0))
    for i in range(2):
        tumor = after_masks[i] == 2
        assert tumor.any(), "a normal kidney with a known mask receives a tumor"
        assert (tumor & (before_masks[i] == 1)).any(), "the tumor grows from the kidney"
        changed = (after[i, 0] - before[i, 0]).abs() > 0.02
        assert tumor[changed].float().mean() > 0.5, "the image changes where the mask says tumor"
    assert torch.equal(after[2:], before[2:]) and torch.equal(after_masks[2:], before_masks[2:])
    labels, _ = crop_labels(np.array([1, 1, 1, 0]), after_masks, np.zeros(4, bool), 0, 1)
    assert labels.tolist() == [0, 0, 1, 0], "the inserted tumor makes the crop a tumor crop"


def test_replacing_tumors_take_the_kidneys_place_and_what_is_left_is_unlabelled():
    """A replacing tumor (a polar mass beyond the kidney's end) leaves little labelled kidney; the kidney it
    painted over is background in the mask and no longer bright in the image."""
    views, masks = _body_with_kidneys(2)
    replacing = ZoomAugmentation(rotate_degrees=0, scale=0, shift=0, hflip=0, gamma=0, contrast=0, brightness=0,
                                 noise=0, blur=0, synthetic_tumors=1.0, replacing_tumors=1.0)
    boxes = np.asarray([FULL_VIEW] * 2, np.float32)
    before, before_masks, _ = cut_batch(views, masks, boxes, 64, None)
    after, after_masks, _ = cut_batch(views, masks, boxes, 64, replacing, torch.Generator().manual_seed(0))
    for i in range(2):
        kidney = before_masks[i] == 1
        left = (after_masks[i] == 1) & kidney
        assert (after_masks[i] == 2).any()
        assert left.sum() < 0.1 * kidney.sum(), "the mass takes the kidney's place"
        painted = kidney & (after_masks[i] == 0)
        if painted.any():
            assert after[i, 0][painted].mean() < before[i, 0][painted].mean() - 0.1, "the kidney is painted over"
    labels, _ = crop_labels(np.array([1, 1]), after_masks, np.zeros(2, bool), 0, 1)
    assert labels.tolist() == [0, 0]


def test_the_synthetic_tumors_model_carries_the_augmentations_shares():
    augmentation = ZoomAugmentation(synthetic_tumors=0.5, replacing_tumors=0.25, enhancing_tumors=0.3)
    model = augmentation.lesion_model()
    assert (model.replace_share, model.enhancing_share) == (0.25, 0.3)
    assert model.small_tumor_share == 0.4, "KiTS23's sizes, not the Kaggle masses'"
