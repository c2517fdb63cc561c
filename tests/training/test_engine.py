"""Training batches with masks: the masks come out moved like their images, and asking for them changes no
image (masks take no random draw)."""

from __future__ import annotations

import numpy as np
import torch

from kidneyct.data.rows import Rows
from kidneyct.preprocess import Augmentation, Preprocessing
from kidneyct.preprocess.acquisition import AcquisitionAugmentation
from kidneyct.training.engine import ImageInputs, ImageStore


def _rows(count: int = 8, size: int = 48) -> tuple[Rows, Rows]:
    rng = np.random.default_rng(3)
    images, masks = np.full((count, size, size), 40, np.uint8), np.zeros((count, size, size), np.uint8)
    for i in range(count):
        top, left = rng.integers(8, 28, 2)
        masks[i, top:top + 12, left:left + 9] = 2
    images[masks == 2] = 250
    return Rows(images), Rows(masks)


def test_batches_carry_masks_moved_with_their_images():
    images, masks = _rows()
    prep = Preprocessing(image_size=48)
    policy = Augmentation(rotate_degrees=25.0, translate=0.1, brightness=0.0, contrast=0.0)
    acquisition = AcquisitionAugmentation(fov_p=1.0)
    cpu = torch.device("cpu")
    plain = ImageInputs(ImageStore(images, cpu, False), prep, policy, acquisition)
    masked = ImageInputs(ImageStore(images, cpu, False), prep, policy, acquisition, masks=ImageStore(masks, cpu, False))
    index, local, labels = torch.arange(8), torch.arange(8), torch.zeros(8, dtype=torch.long)
    alone, _ = plain(index, local, torch.Generator().manual_seed(5), labels)
    batch, _, moved = masked.batch(index, local, torch.Generator().manual_seed(5), labels)
    assert torch.equal(alone, batch)
    bright = batch[:, 0] > 0.5
    inside = moved == 2
    assert not torch.equal(moved, torch.from_numpy(np.asarray(masks)))  # they did move
    assert (bright != inside).float().mean() < 0.02 and inside.sum() > 300  # edges aside, the same pixels
