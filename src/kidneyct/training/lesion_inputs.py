"""Synthetic lesions in the training batches: every acquisition in the training set appears with and
without a tumor, so a model cannot tell the class by the scanner.

A share of each batch's images with a located kidney receives a lesion drawn by
kidneyct.synthetic.lesions inside that kidney, and its label becomes the lesion's class: a tumor makes any
slice Tumor; in a task with a Cyst class, Normal and Cyst slices may receive a cyst instead (a cyst in a
tumor or stone slice would not change what the slice is called, so those always get a tumor).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kidneyct.data.masks import CYST, TUMOR
from kidneyct.synthetic.lesions import LesionModel, render_lesions

CYST_SHARE = 0.5  # of lesions in Normal/Cyst slices, when the task has a Cyst class


@dataclass
class LesionPlan:
    """Which training images may receive a lesion and what each becomes.

    Args:
        kidney_masks: bool [N, S, S], the located kidneys of the training rows (on the training device).
        share: the probability that an image with a located kidney receives a lesion, per draw.
        tumor: the Tumor class index.
        cyst: the Cyst class index, or None (then every lesion is a tumor).
        cyst_hosts: bool [K]: classes whose slices may receive a cyst (Normal, Cyst).
        model: what the lesions look like.
    """

    kidney_masks: torch.Tensor
    share: float
    tumor: int
    cyst: int | None
    cyst_hosts: torch.Tensor
    model: LesionModel = LesionModel()

    @classmethod
    def for_classes(cls, kidney_masks: torch.Tensor, share: float, classes: list[str],
                    model: LesionModel = LesionModel()) -> "LesionPlan":
        lowered = [c.lower() for c in classes]
        if "tumor" not in lowered:
            raise ValueError(f"synthetic lesions need a Tumor class to label them; classes are {classes}")
        cyst = lowered.index("cyst") if "cyst" in lowered else None
        hosts = torch.tensor([c in ("normal", "cyst") for c in lowered], device=kidney_masks.device)
        return cls(kidney_masks, share, lowered.index("tumor"), cyst, hosts, model)

    def draw(self, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The global batch's draws (so that they do not depend on the number of ranks): one uniform per
        image for 'receives a lesion', one for 'is a cyst', and a seed for the lesions' own randomness."""
        u = torch.rand(2, size, generator=generator, device=generator.device)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
        return u[0], u[1], seed

    def apply(self, images: torch.Tensor, rows: torch.Tensor, labels: torch.Tensor, draws) -> tuple[torch.Tensor, torch.Tensor]:
        """Insert lesions into `images` ([B, 1, S, S] in [0, 1], training rows `rows`) per this rank's share of
        `draws`; returns the images and their labels after insertion."""
        images, labels, _ = self.apply_with_masks(images, rows, labels, draws, None)
        return images, labels

    def apply_with_masks(self, images: torch.Tensor, rows: torch.Tensor, labels: torch.Tensor, draws,
                         masks: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """`apply`, and the lesions written into the batch's masks (uint8 [B, S, S], data/masks.py's labels):
        tumor (2) or cyst (3) where a lesion was drawn; the rest of a mask stays as it was, so in a slice
        without a mask (UNKNOWN) the lesion is the only labelled region."""
        receive, cyst_draw, seed = draws
        kidney = self.kidney_masks[rows.to(self.kidney_masks.device)].to(images.device)
        apply = (receive < self.share) & kidney.flatten(1).any(1)
        if not bool(apply.any()):
            return images, labels, masks
        is_cyst = torch.zeros_like(apply)
        if self.cyst is not None:
            is_cyst = (cyst_draw < CYST_SHARE) & self.cyst_hosts.to(labels.device)[labels]
        generator = torch.Generator(device=images.device).manual_seed(seed)
        inserted = render_lesions(images, kidney, apply, is_cyst.long(), generator, self.model)
        new_labels = torch.where(is_cyst, torch.full_like(labels, self.cyst if self.cyst is not None else 0),
                                 torch.full_like(labels, self.tumor))
        applied = inserted.applied.to(labels.device)
        if masks is not None:
            lesion = inserted.masks.to(masks.device) & inserted.applied.to(masks.device)[:, None, None]
            value = torch.where(inserted.tumor, TUMOR, CYST).to(masks.device, masks.dtype)[:, None, None]
            masks = torch.where(lesion, value.expand_as(masks), masks)
        return inserted.images, torch.where(applied, new_labels, labels), masks
