"""Label maps through the affine warps of augmentation: the very sampling grid of the image's warp, read by
nearest neighbour so that labels stay labels. Imports only torch, like the augmentations."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kidneyct.labels import MASK_UNKNOWN as UNKNOWN  # a mask that is all UNKNOWN is no mask


def warp_labels(labels: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """`labels` [B, H, W] (integers) moved by the affine maps `theta` [B, 2, 3] as `F.affine_grid` +
    `F.grid_sample` move an image (align_corners=False): nearest neighbour, background (0) where the image
    is padded black (air); a row that is all UNKNOWN (no mask) stays so."""
    batch, height, width = labels.shape
    grid = F.affine_grid(theta.float(), [batch, 1, height, width], align_corners=False)
    moved = F.grid_sample(labels[:, None].float(), grid.to(labels.device), mode="nearest", padding_mode="zeros",
                          align_corners=False)[:, 0]
    out = moved.round_().to(labels.dtype)
    out[(labels == UNKNOWN).flatten(1).all(1)] = UNKNOWN
    return out
