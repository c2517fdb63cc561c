"""Batched, per-sample random augmentation on the device, and the named augmentation policies."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kidneyct.preprocess.label_warp import warp_labels
from kidneyct.records import DictRecord


@dataclass(frozen=True)
class Augmentation(DictRecord):
    """Batched, per-sample random augmentation on [B, 1, H, W] tensors in [0, 1]; runs on any device.

    Only left-right flips: CT slices have a fixed anterior-posterior orientation (spine at the back,
    table below), so an up-down flip would create anatomy no scanner produces.
    """

    hflip: float = 0.5
    rotate_degrees: float = 10.0
    translate: float = 0.05  # fraction of the image side
    scale: tuple[float, float] = (0.9, 1.1)
    brightness: float = 0.1  # additive, in [0, 1] intensity units
    contrast: float = 0.15  # multiplicative around each image's mean
    gamma: float = 0.0  # intensity jitter: x ** g with log g uniform in [-gamma, gamma] (a window-shape change)

    @classmethod
    def from_dict(cls, values: dict) -> "Augmentation":
        if "scale" in values:  # JSON gives the tuple back as a list
            values = {**values, "scale": tuple(values["scale"])}
        return super().from_dict(values)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.apply(images, self.sample(images.shape[0], generator, images.device))

    def sample(self, batch: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """Random parameters [batch, 7], one row per image. Drawing them for a whole global batch and
        applying each rank's rows is what gives every image the same augmentation on any number of ranks."""

        def uniform(low: float, high: float) -> torch.Tensor:
            return torch.rand(batch, generator=generator, device=device) * (high - low) + low

        angle = uniform(-self.rotate_degrees, self.rotate_degrees) * (math.pi / 180.0)
        scale = uniform(*self.scale)
        flip = torch.where(uniform(0.0, 1.0) < self.hflip, -1.0, 1.0)
        shift_x = uniform(-self.translate, self.translate) * 2.0  # affine_grid works in [-1, 1]
        shift_y = uniform(-self.translate, self.translate) * 2.0
        contrast = uniform(1.0 - self.contrast, 1.0 + self.contrast)
        brightness = uniform(-self.brightness, self.brightness)
        columns = [angle, scale, flip, shift_x, shift_y, contrast, brightness]
        if self.gamma > 0:  # drawn only when used, so the default policy's random stream is unchanged
            columns.append(torch.exp(uniform(-self.gamma, self.gamma)))
        return torch.stack(columns, 1)

    @staticmethod
    def theta(params: torch.Tensor) -> torch.Tensor:
        """The affine maps [B, 2, 3] (F.affine_grid's) of parameter rows from `sample`: flip, rotation, scale
        and shift, the geometry that `apply` and `apply_masks` share."""
        angle, scale, flip, shift_x, shift_y = params[:, :5].unbind(1)
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        return torch.stack(
            [torch.stack([cos * flip, -sin, shift_x], 1), torch.stack([sin * flip, cos, shift_y], 1)], 1
        )

    @staticmethod
    def apply_masks(masks: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Move label maps [B, H, W] as `apply` moves their images (the same parameter rows), nearest
        neighbour; intensity changes do not touch them."""
        return warp_labels(masks, Augmentation.theta(params.to(masks.device)))

    @staticmethod
    def apply(images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Augment [B, 1, H, W] images in [0, 1] with parameters from `sample` (row i for image i)."""
        params = params.to(images.device)
        contrast, brightness = params[:, 5], params[:, 6]
        theta = Augmentation.theta(params).to(images.dtype)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        contrast = contrast.view(-1, 1, 1, 1).to(images.dtype)
        brightness = brightness.view(-1, 1, 1, 1).to(images.dtype)
        if params.shape[1] > 7:
            out = out.clamp(min=0.0).pow(params[:, 7].view(-1, 1, 1, 1).to(images.dtype))
            mean = out.mean(dim=(1, 2, 3), keepdim=True)
        return ((out - mean) * contrast + mean + brightness).clamp_(0.0, 1.0)


# Named augmentation policies (TrainConfig.augmentation / --augmentation); the chosen one is stored in checkpoints.
AUGMENTATIONS: dict[str, Augmentation] = {
    "default": Augmentation(),
    "jitter": Augmentation(gamma=0.25, brightness=0.12, contrast=0.25),  # default geometry, stronger intensity
    "strong": Augmentation(rotate_degrees=15.0, translate=0.08, scale=(0.85, 1.15), brightness=0.15,
                           contrast=0.3, gamma=0.3),
}
