"""Real tumors pasted into other kidneys: the mask follows the pasted pixels, the size follows the receiving
kidney, the grey level follows its kidney, and only chosen crops change."""

import math

import numpy as np
import pytest
import torch

from kidneyct.preprocess.zoom import FULL_VIEW
from kidneyct.training.tumor_paste import LEAST_TUMOR_PX, SIZE_JITTER, TumorBank, paste_tumors
from kidneyct.training.zoom_batches import UNKNOWN, ZoomAugmentation, crop_labels, cut_batch

SIDE = 96


def _slice(kidney_level: int = 190, tumor_radius: float = 0.0, tumor_level: int = 100, seed: int = 0):
    """A body with one kidney (a 30 x 22 ellipse) and, when `tumor_radius` > 0, a round tumor in it."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:SIDE, :SIDE]
    view = np.zeros((SIDE, SIDE), np.uint8)
    mask = np.zeros((SIDE, SIDE), np.uint8)
    view[(rows - 48) ** 2 / 42 ** 2 + (cols - 48) ** 2 / 44 ** 2 < 1] = 60
    kidney = (rows - 50) ** 2 / 15 ** 2 + (cols - 40) ** 2 / 11 ** 2 < 1
    mask[kidney], view[kidney] = 1, kidney_level
    if tumor_radius > 0:
        tumor = (rows - 50) ** 2 + (cols - 40) ** 2 < tumor_radius ** 2
        mask[tumor], view[tumor] = 2, tumor_level
    view[:] = np.clip(view + rng.normal(0, 2, view.shape), 0, 255).astype(np.uint8)
    return view, mask


def _bank(tumor_level: int = 100, kidney_level: int = 190, radius: float = 7.0) -> TumorBank:
    view, mask = _slice(kidney_level, radius, tumor_level)
    return TumorBank.from_views(view[None], mask[None])


def test_the_bank_keeps_each_slices_largest_tumor_with_its_size_and_kidney_level():
    with_tumor = _slice(190, 7.0, 100)
    without = _slice(190)
    tiny = _slice(190, 1.2, 100)  # a few pixels: too coarse to paste
    views, masks = (np.stack(x) for x in zip(with_tumor, without, tiny))
    bank = TumorBank.from_views(views, masks)
    assert len(bank) == 1 and (tiny[1] == 2).sum() < LEAST_TUMOR_PX
    area, organ = (with_tumor[1] == 2).sum(), np.isin(with_tumor[1], (1, 2)).sum()
    assert bank.ratio[0].item() == pytest.approx(math.sqrt(area / organ), rel=1e-6)
    assert bank.kidney_level[0].item() == pytest.approx(190 / 255, abs=0.02)
    stored_area = bank.masks[0].sum().item()
    assert stored_area == pytest.approx(math.pi * bank.radius[0].item() ** 2, rel=0.1)
    assert TumorBank.from_views(without[0][None], without[1][None]) is None


def test_a_pasted_tumor_sits_in_the_receiving_kidney_scaled_to_it_and_grey_matched():
    bank = _bank(tumor_level=100, kidney_level=200)
    views, masks = (np.stack(x) for x in zip(*[_slice(kidney_level=150, seed=s) for s in range(4)]))
    crops = torch.from_numpy(views).float().div(255).unsqueeze(1)
    kidney = torch.from_numpy(masks == 1)
    chosen = torch.tensor([True, True, True, False])
    out, tumor = paste_tumors(crops, kidney, chosen, bank, torch.Generator().manual_seed(0))
    assert torch.equal(out[3], crops[3]) and not tumor[3].any(), "a crop not chosen is left alone"
    kidney_radius = math.sqrt(kidney[0].sum().item() / math.pi)
    for i in range(3):
        assert tumor[i].any() and (tumor[i] & kidney[i]).any(), "the tumor grows from the receiving kidney"
        radius = math.sqrt(tumor[i].sum().item() / math.pi)
        expected = bank.ratio[0].item() * kidney_radius
        assert expected * math.exp(-SIZE_JITTER) * 0.8 <= radius <= expected * math.exp(SIZE_JITTER) * 1.2
        inside = out[i, 0][tumor[i]].median().item()
        assert inside == pytest.approx(100 / 255 * 150 / 200, abs=0.04), "grey levels follow the receiving kidney"
        changed = (out[i, 0] - crops[i, 0]).abs() > 0.02
        assert tumor[i][changed].float().mean() > 0.7, "the image changes where the mask says tumor"


def test_cut_batch_pastes_real_tumors_into_normal_known_kidneys_and_labels_them():
    bank = _bank(tumor_level=40)  # darker than anything the synthetic model draws in this body: tells them apart
    views, masks = (np.stack(x) for x in zip(*[_slice(seed=s) for s in range(4)]))
    masks[2] = UNKNOWN
    plain = dict(rotate_degrees=0, scale=0, shift=0, hflip=0, gamma=0, contrast=0, brightness=0, noise=0, blur=0)
    pasting = ZoomAugmentation(**plain, synthetic_tumors=1.0, pasted_tumors=1.0)
    boxes = np.asarray([FULL_VIEW] * 4, np.float32)
    before, _, _ = cut_batch(views, masks, boxes, 64, ZoomAugmentation(**plain), torch.Generator().manual_seed(0))
    after, after_masks, _ = cut_batch(views, masks, boxes, 64, pasting, torch.Generator().manual_seed(0), bank)
    for i in (0, 1, 3):
        tumor = after_masks[i] == 2
        assert tumor.any()
        assert after[i, 0][tumor].median().item() < 0.3, "the donor's own tumor, not a synthetic one"
    assert torch.equal(after[2], before[2]) and (after_masks[2] == UNKNOWN).all()
    labels, _ = crop_labels(np.array([1, 1, 1, 1]), after_masks, np.zeros(4, bool), 0, 1)
    assert labels.tolist() == [0, 0, 1, 0]


def test_without_pasting_the_random_draws_and_the_crops_are_unchanged():
    """A recipe without pasted tumors trains bit for bit as before, bank or no bank."""
    views, masks = (np.stack(x) for x in zip(*[_slice(seed=s) for s in range(4)]))
    boxes = np.asarray([FULL_VIEW] * 4, np.float32)
    synthetic = ZoomAugmentation(synthetic_tumors=1.0)
    first = cut_batch(views, masks, boxes, 64, synthetic, torch.Generator().manual_seed(3))
    second = cut_batch(views, masks, boxes, 64, synthetic, torch.Generator().manual_seed(3), _bank())
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_a_tumor_kept_inside_never_leaves_its_kidney_grown_by_the_margin():
    """--pasted-inside: a donor larger than the receiving kidney spills into the body as drawn; kept inside, every
    tumor pixel (kidney region to the finder) lies within the kidney grown by the margin."""
    bank = _bank(radius=14.0)  # a tumor nearly the size of its kidney: its paste spills out
    views, masks = (np.stack(x) for x in zip(*[_slice(seed=s) for s in range(6)]))
    crops = torch.from_numpy(views).float().div(255).unsqueeze(1)
    kidney = torch.from_numpy(masks == 1)
    chosen = torch.ones(6, dtype=torch.bool)
    margin = 2
    grown = torch.nn.functional.max_pool2d(kidney.unsqueeze(1).float(), 2 * margin + 1, 1, margin)[:, 0] > 0
    _, drawn = paste_tumors(crops, kidney, chosen, bank, torch.Generator().manual_seed(0))
    out, kept = paste_tumors(crops, kidney, chosen, bank, torch.Generator().manual_seed(0), inside=margin)
    assert (drawn & ~grown).any(), "as drawn, some pasted tumor lies outside the kidney"
    assert kept.any() and not (kept & ~grown).any()
    assert torch.equal(out[:, 0][~grown], crops[:, 0][~grown]), "no pixel outside the grown kidney changes"
    assert (kept <= drawn).all(), "the same draws, cut"
