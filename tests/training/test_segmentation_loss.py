"""The segmenting model's loss rewards the right maps wherever supervision exists, and only there."""

import torch

from kidneyct.training.segmentation_loss import SegmentationLoss
from kidneyct.training.zoom_batches import UNKNOWN

TUMOR = 0  # classes ["tumor", "normal"]


def _mask():
    mask = torch.zeros(1, 16, 16, dtype=torch.uint8)
    mask[0, 4:12, 4:12] = 1
    mask[0, 6:9, 6:9] = 2
    return mask


def _maps_for(mask: torch.Tensor, sign: float = 1.0) -> torch.Tensor:
    kidney = (mask > 0).float() * 2 - 1
    tumor = (mask == 2).float() * 2 - 1
    return torch.stack([kidney, tumor], 1) * 8 * sign


def test_right_maps_cost_less_than_wrong_ones():
    loss, mask, logits, label = SegmentationLoss(), _mask(), torch.tensor([[4.0, -4.0]]), torch.tensor([TUMOR])
    assert loss(logits, _maps_for(mask), mask, label, TUMOR) < loss(logits, _maps_for(mask, -1), mask, label, TUMOR)


def test_a_normal_slice_without_mask_teaches_no_tumor_anywhere():
    unknown = torch.full((1, 16, 16), UNKNOWN, dtype=torch.uint8)
    logits, normal = torch.tensor([[-4.0, 4.0]]), torch.tensor([1])
    quiet = torch.full((1, 2, 16, 16), -8.0)
    firing = quiet.clone()
    firing[:, 1, 5:9, 5:9] = 8.0
    loss = SegmentationLoss()
    assert loss(logits, firing, unknown, normal, TUMOR) > loss(logits, quiet, unknown, normal, TUMOR) + 0.1
    # with both weak terms off, the unmasked slice's maps are not supervised at all
    off = SegmentationLoss(negative_weight=0.0, instance_weight=0.0)
    assert off(logits, firing, unknown, normal, TUMOR) == off(logits, quiet, unknown, normal, TUMOR)
