"""Real tumors copied into other patients' normal kidneys, with their masks (TumorCP: Yang J. et al., "TumorCP: a
simple but effective object-level data augmentation for tumor segmentation", MICCAI 2021, on KiTS19).

A synthetic tumor is a model's idea of a tumor; a pasted one is a real tumor's shape, margin and texture, seen
in another kidney, at another place, size, angle and grey level. With one slice per KiTS23 patient a fold trains
on about 45 real tumors: pasting lets each of them teach inside every normal kidney of the training split.

The bank holds each training tumor slice's largest tumor as a square patch around it (its image and its tumor
mask), its size relative to its own kidney and its kidney's grey level. A paste scales the tumor to the same
size relative to the receiving kidney, rotates and mirrors it at random, centres it on a pixel of that kidney,
maps its grey levels by the ratio of the two kidneys' levels (the KiTS23 renders are contrast-stretched per
slice) and blends it in over a soft edge; its pixels become tumor in the mask. Only the training split's
slices are donors, so no tumor of a validation or test patient is ever seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

PATCH = 64  # side of a stored tumor patch, in pixels
MARGIN = 1.4  # the patch's side over the tumor's longer side: room for the soft edge and the rim around it
LEAST_TUMOR_PX = 12  # smaller tumors (a few render pixels) are too coarse to paste
SIZE_JITTER = 0.25  # log-uniform spread of the pasted tumor's size around its donor's relative size
LEVEL_RATIO = (0.6, 1.6)  # how far the grey-level mapping may scale a donor (guards against odd renders)


@dataclass(frozen=True)
class TumorBank:
    """Donor tumors of the training split.

    Args:
        images: [D, 1, P, P] the patch around each donor tumor, display intensity in [0, 1].
        masks: [D, 1, P, P] 1 on the tumor's pixels, 0 elsewhere.
        radius: [D] the tumor's equivalent radius (sqrt(area / pi)) in patch pixels.
        ratio: [D] the tumor's equivalent radius over its kidney's (the kidney, tumor and cyst pixels connected
            to it).
        kidney_level: [D] median intensity of the donor's kidney pixels (label kidney) around the tumor.
    """

    images: torch.Tensor
    masks: torch.Tensor
    radius: torch.Tensor
    ratio: torch.Tensor
    kidney_level: torch.Tensor

    def __len__(self) -> int:
        return len(self.radius)

    @classmethod
    def from_views(cls, views: np.ndarray, masks: np.ndarray, kidney_values=(1, 2, 3), tumor_value: int = 2,
                   kidney_value: int = 1) -> "TumorBank | None":
        """The bank of uint8 body views [N, V, V] and their masks [N, V, V] (rows without tumor pixels, or with
        an unknown mask, give none); None when no row has a tumor to give."""
        entries = [entry for view, mask in zip(views, masks)
                   if (entry := _donor(view, mask, kidney_values, tumor_value, kidney_value)) is not None]
        if not entries:
            return None
        images, tumors, radius, ratio, level = zip(*entries)
        return cls(torch.from_numpy(np.stack(images)).unsqueeze(1), torch.from_numpy(np.stack(tumors)).unsqueeze(1),
                   torch.tensor(radius, dtype=torch.float32), torch.tensor(ratio, dtype=torch.float32),
                   torch.tensor(level, dtype=torch.float32))


def _donor(view: np.ndarray, mask: np.ndarray, kidney_values, tumor_value: int, kidney_value: int):
    """(image patch, tumor patch, radius in patch px, tumor/kidney radius ratio, kidney level) of a slice's
    largest tumor, or None."""
    tumor = mask == tumor_value
    if tumor.sum() < LEAST_TUMOR_PX:
        return None
    parts, count = ndimage.label(tumor)
    largest = 1 + int(np.argmax(ndimage.sum(tumor, parts, range(1, count + 1))))
    tumor = parts == largest
    if tumor.sum() < LEAST_TUMOR_PX:
        return None
    organ_parts, _ = ndimage.label(np.isin(mask, kidney_values))
    organ = organ_parts == np.bincount(organ_parts[tumor]).argmax()
    kidney = organ & (mask == kidney_value)
    if not kidney.any():  # the tumor has taken its whole kidney: the slice's other kidney gives the level
        kidney = mask == kidney_value
    if not kidney.any():
        return None
    rows, cols = np.nonzero(tumor)
    centre = ((rows.min() + rows.max() + 1) / 2, (cols.min() + cols.max() + 1) / 2)
    side = MARGIN * max(rows.max() + 1 - rows.min(), cols.max() + 1 - cols.min())
    # Outside the tumor the patch holds the tumor's own median: blending its soft edge then mixes tumor grey with
    # the receiving kidney, never the donor's surroundings (a dark rim of fat would mark every pasted tumor).
    # Its outermost pixel ring, half fat in the render, is filled too.
    interior = ndimage.binary_erosion(tumor)
    interior = interior if interior.sum() >= tumor.sum() / 2 else tumor
    filled = np.where(interior, view, np.median(view[interior])).astype(np.float32) / 255.0
    image_patch = _cut(filled, centre, side)
    tumor_patch = _cut(tumor.astype(np.float32), centre, side)
    scale = PATCH / side
    radius = math.sqrt(tumor.sum() / math.pi) * scale
    ratio = math.sqrt(tumor.sum() / organ.sum())
    level = float(np.median(view[kidney])) / 255.0
    return image_patch, (tumor_patch > 0.5).astype(np.float32), radius, ratio, level


def _cut(image: np.ndarray, centre: tuple[float, float], side: float) -> np.ndarray:
    """The square of `side` pixels around `centre` (row, col) of `image`, resampled to PATCH x PATCH (zeros
    outside the image)."""
    height, width = image.shape
    half = side / 2
    # affine_grid's normalised coordinates of the square within the image (align_corners=False).
    theta = torch.tensor([[[half * 2 / width, 0.0, centre[1] * 2 / width - 1.0],
                           [0.0, half * 2 / height, centre[0] * 2 / height - 1.0]]], dtype=torch.float32)
    grid = F.affine_grid(theta, [1, 1, PATCH, PATCH], align_corners=False)
    tensor = torch.from_numpy(np.ascontiguousarray(image)).view(1, 1, height, width)
    return F.grid_sample(tensor, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0, 0].numpy()


def paste_tumors(crops: torch.Tensor, kidney: torch.Tensor, chosen: torch.Tensor, bank: TumorBank,
                 generator: torch.Generator, inside: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste a donor tumor into the kidney of each `chosen` crop.

    Args:
        crops: [B, 1, S, S] crops in [0, 1].
        kidney: [B, S, S] boolean kidney masks of the crops (label kidney only).
        chosen: [B] which crops receive a tumor (each must show kidney).
        bank: the donors.
        generator: the draws (donor, centre, size, angle, mirror).
        inside: when given, each pasted tumor is cut to the crop's kidney grown by this many pixels: no tumor pixel
            (kidney region to the kidney finder) lands in the fat or a neighbouring organ. None: as drawn (a
            median 9% of a paste's pixels fall outside its kidney on KiTS23's normal kidneys).

    Returns:
        The crops with the tumors blended in, and [B, S, S] booleans of the pasted tumors' pixels (False for
        crops not chosen).
    """
    out, tumor = crops.clone(), torch.zeros(kidney.shape, dtype=torch.bool)
    rows = torch.nonzero(chosen).flatten().tolist()
    if not rows:
        return out, tumor
    size = crops.shape[-1]
    donors = torch.randint(0, len(bank), (len(rows),), generator=generator)
    draws = torch.rand(len(rows), 4, generator=generator)  # centre pick, size, angle, mirror
    thetas, levels = [], []
    for i, (row, donor) in enumerate(zip(rows, donors.tolist())):
        centre, kidney_radius, level = _receiving_kidney(crops[row, 0], kidney[row], draws[i, 0].item())
        jitter = math.exp((2 * draws[i, 1].item() - 1) * SIZE_JITTER)
        radius = max(float(bank.ratio[donor]) * kidney_radius * jitter, 2.0)  # crop pixels
        scale = radius / float(bank.radius[donor])  # crop pixels per patch pixel
        angle = 2 * math.pi * draws[i, 2].item()
        mirror = -1.0 if draws[i, 3].item() < 0.5 else 1.0
        # Output (crop) coordinates -> input (patch) coordinates, both normalised to [-1, 1].
        k = size / (scale * PATCH)
        cos, sin = math.cos(angle) * k, math.sin(angle) * k
        linear = torch.tensor([[cos * mirror, -sin], [sin * mirror, cos]])
        cx, cy = (2 * (centre[1] + 0.5) / size - 1.0, 2 * (centre[0] + 0.5) / size - 1.0)
        offset = -linear @ torch.tensor([cx, cy])
        thetas.append(torch.cat([linear, offset[:, None]], 1))
        ratio = level / max(float(bank.kidney_level[donor]), 1e-3)
        levels.append(min(max(ratio, LEVEL_RATIO[0]), LEVEL_RATIO[1]))
    grid = F.affine_grid(torch.stack(thetas), [len(rows), 1, size, size], align_corners=False)
    images = F.grid_sample(bank.images[donors], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    alpha = F.grid_sample(bank.masks[donors], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    index = torch.tensor(rows)
    if inside is not None:
        footprint = F.max_pool2d(kidney[index].unsqueeze(1).float(), 2 * inside + 1, stride=1, padding=inside)
        alpha = alpha * footprint
    pasted = (images * torch.tensor(levels).view(-1, 1, 1, 1)).clamp(0, 1)
    out[index] = crops[index] * (1 - alpha) + pasted * alpha
    tumor[index] = alpha[:, 0] >= 0.5
    return out, tumor


def _receiving_kidney(crop: torch.Tensor, kidney: torch.Tensor, pick: float) -> tuple[tuple[int, int], float, float]:
    """A kidney pixel (row, col) drawn by `pick` in [0, 1), the equivalent radius of the kidney around it (crop
    pixels) and that kidney's median intensity."""
    pixels = torch.nonzero(kidney)
    row, col = pixels[min(int(pick * len(pixels)), len(pixels) - 1)].tolist()
    parts, _ = ndimage.label(kidney.numpy())
    own = torch.from_numpy(parts == parts[row, col])
    radius = math.sqrt(float(own.sum()) / math.pi)
    return (row, col), radius, float(crop[own].median())
