"""Training batches for a segmenting model: overview and kidney-zoom crops of the cached body views, with their
masks, cut and augmented by one affine per image (so a mask stays aligned with its image through every step).

Each image of a batch is seen either whole (the overview, which teaches the kidney map to find kidneys
anywhere) or zoomed to the square around its kidneys (from its mask where it has one, else from the kidney
map the model itself drew on the overview, refreshed during training). Sampling follows
`kidneyct.preprocess.zoom.cut` exactly, which is what inference uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from kidneyct.preprocess.zoom import FULL_VIEW, Zoom
from kidneyct.records import DictRecord
from kidneyct.synthetic.lesions import LesionModel, render_lesions
from kidneyct.training.tumor_paste import TumorBank, paste_tumors

UNKNOWN = 255  # mask value where a slice has no mask
PASTED_MARGIN = 2  # pixels of the crop a kept-inside pasted tumor may reach beyond its kidney (a bulging contour)
KIDNEY_VALUES = (1, 2, 3)  # kidney, tumor and cyst are all kidney
TUMOR_VALUE = 2


def has_mask(masks: np.ndarray) -> np.ndarray:
    """Per mask [N, H, W]: whether it is known. A mask is known or UNKNOWN as a whole, so its first pixel tells."""
    return masks.reshape(len(masks), -1)[:, 0] != UNKNOWN


# Tumors of KiTS23's size range (small renal masses to large ones), relative to the kidney's equivalent radius;
# the lesion model's defaults were set for the Kaggle tumor scans' 5-12 cm masses.
SEGMENTER_LESIONS = LesionModel(tumor_radius=(0.5, 1.5), small_tumor_radius=(0.2, 0.5), small_tumor_share=0.4)


@dataclass(frozen=True)
class ZoomAugmentation(DictRecord):
    """Random geometry (composed into the crop's affine) and intensity changes of training crops.

    Args:
        rotate_degrees, scale, shift, hflip: geometry; shift is a share of the crop's half side.
        gamma: log-uniform range of x ** g, a change of the window's shape.
        contrast, brightness: x * a + b around nothing (air stays air).
        noise: largest sd of added Gaussian noise; blur: share of crops smoothed by a 3x3 binomial kernel.
        unenhanced: share of masked crops whose kidneys are darkened as on a scan without contrast medium (the
            kidney finder must find them there too); their tumor pixels become kidney, since without contrast a
            tumor is about as grey as the kidney, and the slice head learns nothing from them.
        synthetic_tumors: share of masked crops showing kidney and no tumor that receive a synthetic tumor
            (kidneyct.synthetic.lesions, drawn inside the true kidney mask) with its mask and the tumor label: one
            slice per patient gives few real tumors, and every normal kidney can carry one of any size.
        replacing_tumors: share of those synthetic tumors that replace the kidney on the crop (centred on it, larger
            than it, the kidney outside them painted over as perirenal fat and unlabelled), as a polar or exophytic
            mass shows on the slices beyond the kidney's end, where the kidney map must still find it.
        enhancing_tumors: share of those synthetic tumors, in enhanced crops, that are about as bright as the kidney
            or brighter instead of darker (small clear-cell tumors often are, in the corticomedullary phase).
        pasted_tumors: share of the inserted tumors that are real tumors of other training slices, copied in
            (kidneyct.training.tumor_paste) instead of drawn; needs a tumor bank (cut_batch's `bank`).
        pasted_inside: pasted tumors cut to the receiving kidney grown by PASTED_MARGIN pixels (tumor_paste's
            `inside`), so that the kidney finder never learns kidney region in the fat or the next organ.
    """

    rotate_degrees: float = 15.0
    scale: float = 0.15
    shift: float = 0.08
    hflip: float = 0.5
    gamma: float = 0.35
    contrast: float = 0.2
    brightness: float = 0.08
    noise: float = 0.02
    blur: float = 0.2
    unenhanced: float = 0.0
    synthetic_tumors: float = 0.0
    replacing_tumors: float = 0.0
    enhancing_tumors: float = 0.0
    pasted_tumors: float = 0.0
    pasted_inside: bool = False

    def lesion_model(self) -> LesionModel:
        """The synthetic tumors' model: KiTS23's sizes, with this augmentation's replacing and enhancing shares."""
        return replace(SEGMENTER_LESIONS, replace_share=self.replacing_tumors, enhancing_share=self.enhancing_tumors)


def box_thetas(boxes: torch.Tensor, augmentation: ZoomAugmentation | None,
               generator: torch.Generator | None) -> torch.Tensor:
    """Affines [B, 2, 3] for `affine_grid` that cut `boxes` [B, 3] (centre x, centre y, half side), with the
    augmentation's rotation, scale, shift and flip composed in."""
    count = len(boxes)
    centre_x, centre_y, half = boxes.unbind(1)
    if augmentation is None:
        angle, scale = torch.zeros(count), torch.ones(count)
        shift_x = shift_y = torch.zeros(count)
        flip = torch.ones(count)
    else:
        def uniform(spread: float) -> torch.Tensor:
            return (torch.rand(count, generator=generator) * 2 - 1) * spread

        angle = uniform(math.radians(augmentation.rotate_degrees))
        scale = torch.exp(uniform(augmentation.scale))
        shift_x, shift_y = uniform(augmentation.shift) * half, uniform(augmentation.shift) * half
        flip = torch.where(torch.rand(count, generator=generator) < augmentation.hflip, -1.0, 1.0)
    cos, sin, size = torch.cos(angle), torch.sin(angle), half * scale
    return torch.stack([torch.stack([size * cos * flip, -size * sin, centre_x + shift_x], 1),
                        torch.stack([size * sin * flip, size * cos, centre_y + shift_y], 1)], 1)


def _intensity(unit: torch.Tensor, augmentation: ZoomAugmentation, generator: torch.Generator) -> torch.Tensor:
    count = len(unit)

    def uniform(spread: float) -> torch.Tensor:
        return (torch.rand(count, 1, 1, 1, generator=generator) * 2 - 1) * spread

    body = unit > 0
    out = unit.clamp(0, 1) ** torch.exp(uniform(augmentation.gamma))
    out = (out * (1 + uniform(augmentation.contrast)) + uniform(augmentation.brightness)).clamp(0, 1) * body
    noise_sd = augmentation.noise * torch.rand(count, 1, 1, 1, generator=generator)
    out = out + torch.randn(out.shape, generator=generator) * noise_sd
    smooth = torch.rand(count, generator=generator) < augmentation.blur
    if smooth.any():
        kernel = torch.tensor([1.0, 2.0, 1.0])
        kernel = (kernel[:, None] * kernel[None]).div(16).view(1, 1, 3, 3)
        out[smooth] = F.conv2d(F.pad(out[smooth], (1, 1, 1, 1), mode="replicate"), kernel)
    return out


def cut_batch(views: np.ndarray, masks: np.ndarray, boxes: np.ndarray, size: int,
              augmentation: ZoomAugmentation | None = None, generator: torch.Generator | None = None,
              bank: TumorBank | None = None) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Crops [B, 1, size, size] in [0, 1] and their masks [B, size, size] (uint8, UNKNOWN kept) of uint8 body
    views [B, V, V] and masks [B, V, V] at `boxes` [B, 3], and which crops were made to look unenhanced [B].
    `bank`: the training split's real tumors, for the augmentation's pasted tumors."""
    unit = torch.from_numpy(np.ascontiguousarray(views)).float().div_(255).unsqueeze(1)
    labels = torch.from_numpy(np.ascontiguousarray(masks)).float().unsqueeze(1)
    thetas = box_thetas(torch.as_tensor(boxes, dtype=torch.float32), augmentation, generator)
    grid = F.affine_grid(thetas, [len(unit), 1, size, size], align_corners=False)
    crops = F.grid_sample(unit, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    cut_masks = F.grid_sample(labels, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    cut_masks = cut_masks[:, 0].to(torch.uint8)
    unknown = torch.from_numpy(~has_mask(masks))
    cut_masks[unknown] = UNKNOWN  # a mask that is unknown stays unknown, also where the crop leaves the view
    unenhanced = torch.zeros(len(crops), dtype=torch.bool)
    if augmentation is not None:
        if augmentation.unenhanced > 0:
            crops, cut_masks, unenhanced = _unenhance(crops, cut_masks, augmentation.unenhanced, generator)
        if augmentation.synthetic_tumors > 0:
            crops, cut_masks = _synthetic_tumors(crops, cut_masks, augmentation.synthetic_tumors, ~unenhanced, generator,
                                                 augmentation.lesion_model(), augmentation.pasted_tumors, bank,
                                                 PASTED_MARGIN if augmentation.pasted_inside else None)
        crops = _intensity(crops, augmentation, generator)
    return crops, cut_masks, unenhanced.numpy()


UNENHANCED_RATIO = 0.58  # unenhanced over enhanced parenchyma in an abdomen window: (35 + 160) / (180 + 160) HU
UNENHANCED_TEXTURE = 0.3  # what is left of the cortex/medulla contrast


def _unenhance(crops: torch.Tensor, masks: torch.Tensor, share: float, generator: torch.Generator
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Darken the kidneys of a `share` of the masked crops, blended over a soft edge, as an unenhanced scan
    shows them; their tumor pixels become kidney (see ZoomAugmentation.unenhanced)."""
    kidney = torch.isin(masks, torch.tensor(KIDNEY_VALUES, dtype=masks.dtype)) & (masks != UNKNOWN)
    chosen = (torch.rand(len(crops), generator=generator) < share) & kidney.flatten(1).any(1)
    if not chosen.any():
        return crops, masks, chosen
    crops, masks = crops.clone(), masks.clone()
    weight = F.avg_pool2d(kidney[chosen].unsqueeze(1).float(), 5, 1, 2)  # soft edge: no new sharp border
    inside = crops[chosen]
    mean = (inside * kidney[chosen].unsqueeze(1)).sum((1, 2, 3), keepdim=True) / kidney[chosen].sum((1, 2)).view(-1, 1, 1, 1)
    dark = UNENHANCED_RATIO * mean + UNENHANCED_TEXTURE * (inside - mean)
    crops[chosen] = inside * (1 - weight) + dark * weight
    relabelled = masks[chosen]
    relabelled[relabelled == TUMOR_VALUE] = KIDNEY_VALUES[0]
    masks[chosen] = relabelled
    return crops, masks, chosen


def _synthetic_tumors(crops: torch.Tensor, masks: torch.Tensor, share: float, eligible: torch.Tensor,
                      generator: torch.Generator, model: LesionModel, pasted: float = 0.0,
                      bank: TumorBank | None = None, inside: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Insert a tumor into the kidney of a `share` of the `eligible` crops whose known mask shows kidney and no
    tumor: a `pasted` share of them a real tumor from `bank`, the others a synthetic one (`model`'s). The tumor's
    pixels become tumor in the mask (and so the crop's label), the kidney a replacing tumor painted over
    background."""
    known = masks.flatten(1)[:, 0] != UNKNOWN
    kidney = (masks == KIDNEY_VALUES[0]) & known[:, None, None]
    no_tumor = ~(masks == TUMOR_VALUE).flatten(1).any(1)
    chosen = (torch.rand(len(crops), generator=generator) < share) & eligible & known & no_tumor & kidney.flatten(1).any(1)
    if not chosen.any():
        return crops, masks
    masks = masks.clone()
    if pasted > 0 and bank is not None:  # no draw otherwise: runs without pasting repeat bit for bit
        copied = chosen & (torch.rand(len(crops), generator=generator) < pasted)
        crops, tumor = paste_tumors(crops, kidney, copied, bank, generator, inside)
        masks[tumor] = TUMOR_VALUE
        chosen = chosen & ~copied
        if not chosen.any():
            return crops, masks
    inserted = render_lesions(crops, kidney, chosen, "tumor", generator, model)
    masks[inserted.erased & inserted.applied[:, None, None]] = 0
    masks[inserted.masks & inserted.applied[:, None, None]] = TUMOR_VALUE
    return inserted.images, masks


def mask_boxes(masks: np.ndarray, zoom: Zoom) -> list[list[tuple[tuple[float, float, float], bool]]]:
    """Per mask: the zoom box of each kidney side with whether that side holds tumor pixels; empty for unknown
    masks and masks without kidney."""
    out = []
    for mask, known in zip(masks, has_mask(masks)):
        if not known:
            out.append([])
            continue
        kidney, tumor = np.isin(mask, KIDNEY_VALUES), mask == TUMOR_VALUE
        middle = mask.shape[1] // 2
        holds = (tumor[:, :middle].any(), tumor[:, middle:].any())
        sides = zoom.side_boxes(kidney)
        centres = [box[0] for box in sides]  # < 0: left of the midline
        out.append([(box, bool(holds[0] if centre < 0 else holds[1])) for box, centre in zip(sides, centres)])
    return out


def choose_boxes(rows: np.ndarray, truth: list, predicted: dict, overview_share: float, lesion_bias: float,
                 generator: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the overview with probability `overview_share`, else the zoom on one of its kidneys (from its
    mask, else from the model's last overview of it), the kidney with a tumor with probability `lesion_bias`
    when one has (as nnU-Net oversamples foreground), else one drawn at random; the overview when no kidney is
    known. Returns the boxes [B, 3] and whether each is a zoom [B]."""
    boxes, zoomed = [], []
    for row in rows:
        sides = truth[row] or [(box, False) for box in predicted.get(int(row), [])]
        overview = torch.rand(1, generator=generator).item() < overview_share
        lesion = [box for box, holds in sides if holds]
        if lesion and torch.rand(1, generator=generator).item() < lesion_bias:
            sides = [(box, True) for box in lesion]
        side = int(torch.randint(0, max(len(sides), 1), (1,), generator=generator))
        boxes.append(FULL_VIEW if overview or not sides else sides[side][0])
        zoomed.append(not overview and bool(sides))
    return np.asarray(boxes, np.float32), np.asarray(zoomed)


def crop_labels(labels: np.ndarray, masks: torch.Tensor, zoomed: np.ndarray, tumor_class: int,
                other_class: int) -> tuple[np.ndarray, np.ndarray]:
    """What the slice head learns from each crop, and whether it learns anything: with a mask, tumor when the
    crop holds tumor pixels, else the other class; without one, the slice's class, except for a tumor slice's
    zoom on one kidney, which may be the side without the tumor (not learnt)."""
    known = masks.flatten(1)[:, 0] != UNKNOWN
    has_tumor = (masks == TUMOR_VALUE).flatten(1).any(1).numpy()
    out = np.where(has_tumor, tumor_class, other_class)
    out = np.where(known.numpy(), out, labels)
    learnt = known.numpy() | (labels != tumor_class) | ~zoomed
    return out.astype(np.int64), learnt
