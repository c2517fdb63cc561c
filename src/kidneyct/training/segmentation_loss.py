"""The loss of a segmenting model: supervision wherever it exists.

- Masked slices: binary cross-entropy + soft Dice on the kidney map (kidney, tumor and cyst pixels) and the
  tumor map.
- Slices without a mask but with a slice label: a normal slice has no tumor pixel anywhere, which supervises
  the whole tumor map (pixel-wise, weight `negative_weight`); and the mean of the tumor map's top-k logits, a
  multiple-instance score, should say whether the slice has a tumor (weight `instance_weight`; tumor-labelled
  slices without a mask count `weak_tumor_weight` times, since their label does not say where the tumor is).
- Every slice: cross-entropy of the slice head with the slice's class.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss

from kidneyct.records import DictRecord
from kidneyct.training.zoom_batches import KIDNEY_VALUES, TUMOR_VALUE, UNKNOWN


@dataclass(frozen=True)
class SegmentationLoss(DictRecord):
    """Weights of the loss terms (see the module's docstring)."""

    negative_weight: float = 0.1
    instance_weight: float = 0.25
    weak_tumor_weight: float = 0.0
    top_k: int = 32
    label_smoothing: float = 0.0

    def __call__(self, logits: torch.Tensor, maps: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor,
                 tumor_class: int, learnt: torch.Tensor | None = None) -> torch.Tensor:
        """Mean loss of a batch: slice logits [B, K], map logits [B, 2, H, W] (kidney, tumor), masks [B, H, W]
        uint8 (UNKNOWN where a slice has none), class labels [B] and whether the head learns each label [B]."""
        learnt = torch.ones_like(labels, dtype=torch.bool) if learnt is None else learnt
        loss = logits.new_zeros((), dtype=torch.float32)
        if learnt.any():
            loss = loss + F.cross_entropy(logits[learnt].float(), labels[learnt], label_smoothing=self.label_smoothing)
        known = masks.flatten(1)[:, 0] != UNKNOWN
        if known.any():
            truth = masks[known]
            kidney = torch.isin(truth, torch.tensor(KIDNEY_VALUES, dtype=truth.dtype)).float()
            tumor = (truth == TUMOR_VALUE).float()
            for channel, target in ((0, kidney), (1, tumor)):
                loss = loss + _DICE_BCE(maps[known, channel:channel + 1].float(), target.unsqueeze(1))
        if (~known).any():
            loss = loss + self._weak(maps[~known, 1].float().flatten(1), labels[~known] == tumor_class)
        return loss

    def _weak(self, tumor_logits: torch.Tensor, is_tumor: torch.Tensor) -> torch.Tensor:
        """Terms for slices with a label but no mask: tumor logits [N, P], tumor labels [N]."""
        loss = tumor_logits.new_zeros(())
        normal = ~is_tumor
        if normal.any() and self.negative_weight > 0:
            pixels = tumor_logits[normal]
            loss = loss + self.negative_weight * F.binary_cross_entropy_with_logits(pixels, torch.zeros_like(pixels))
        if self.instance_weight > 0:
            score = tumor_logits.topk(min(self.top_k, tumor_logits.shape[1]), dim=1).values.mean(1)
            weight = torch.where(is_tumor, self.weak_tumor_weight, 1.0)
            terms = F.binary_cross_entropy_with_logits(score, is_tumor.float(), reduction="none")
            loss = loss + self.instance_weight * (weight * terms).mean()
        return loss


# One map at a time ([B, 1, H, W]): MONAI then pairs the Dice loss with binary cross-entropy. A batch Dice, so
# slices without the structure still count their false positives; smoothing 1 keeps an empty batch at loss 0.
_DICE_BCE = DiceCELoss(sigmoid=True, batch=True, smooth_nr=1.0, smooth_dr=1.0)
