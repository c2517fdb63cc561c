"""The one definition of preprocessing, shared by training, evaluation, prediction and export.

Flow: CTSlice -> window (HU only) -> [0, 1] -> (body crop, optional) -> pad to square -> resize -> uint8
(the cached form) -> float [0, 1] -> (augment, training only) -> standardise with the model's mean/std.
A Preprocessing is stored in every checkpoint, so inference rebuilds it from the checkpoint alone.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

from kidneyct.io.slices import CTSlice


def apply_window(hu: np.ndarray, level: float, width: float) -> np.ndarray:
    """Hounsfield units to [0, 1] through a display window (values outside are clipped)."""
    low = level - width / 2.0
    return np.clip((hu.astype(np.float32) - low) / float(width), 0.0, 1.0)


def pad_to_square(image: np.ndarray) -> np.ndarray:
    """Pad with black (air) so resizing keeps the anatomy's proportions."""
    height, width = image.shape
    side = max(height, width)
    if height == width:
        return image
    top, left = (side - height) // 2, (side - width) // 2
    out = np.zeros((side, side), dtype=image.dtype)
    out[top:top + height, left:left + width] = image
    return out


BODY_THRESHOLD = 0.03  # [0, 1] display intensity above which a pixel may be body: in narrow-window
#                        exports fat is as black as air, so only clear air/noise is excluded here
BODY_MIN_AREA = 0.02  # a body smaller than this share of the image is not trusted: the slice stays as it is
BODY_MARGIN = 0.02  # kept around the body's bounding box, as a share of the image side
BODY_CLOSE = 0.025  # closing radius (share of the side): bridges black fat between organs and the skin
BODY_OPEN = 0.02  # opening radius: cuts thin structures (table, its rim, cables) off the body


# Morphology with a disk of radius r through Euclidean distance transforms: exactly the same sets as
# scipy's binary_dilation/erosion with a disk structuring element (yy^2 + xx^2 <= r^2), and about 5x faster.
def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    return ndimage.distance_transform_edt(~mask) <= radius


def _erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Pixels outside the image count as background, as with scipy's border_value=0."""
    padded = np.pad(mask, radius + 1)
    inside = ndimage.distance_transform_edt(padded) > radius
    return inside[radius + 1:-(radius + 1), radius + 1:-(radius + 1)]


def body_mask(unit: np.ndarray, threshold: float = BODY_THRESHOLD) -> np.ndarray | None:
    """The patient's body in a [0, 1] slice: pixels above `threshold`, closed (so dark fat inside the body
    joins it), holes filled, opened (so the thin table and its rim fall off), then the largest connected
    component. None when no component reaches BODY_MIN_AREA of the image."""
    side = max(unit.shape)
    bright = unit > threshold
    pad, close, open_ = side // 10, max(1, round(BODY_CLOSE * side)), max(1, round(BODY_OPEN * side))
    closed = _erode(_dilate(np.pad(bright, pad), close), close)
    closed = ndimage.binary_fill_holes(closed[pad:-pad, pad:-pad])
    opened = _dilate(_erode(closed, open_), open_)
    labels, count = ndimage.label(opened)
    if count == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    largest = int(sizes.argmax()) + 1
    if sizes[largest - 1] < BODY_MIN_AREA * unit.size:
        return None
    # Give back the rim the opening shaved off the body (skin), but not the table it cut away.
    grown = _dilate(labels == largest, open_)
    return grown & closed


def crop_to_body(unit: np.ndarray, threshold: float = BODY_THRESHOLD) -> np.ndarray:
    """Blank everything outside the body (table, clothing, annotations, background) and crop to the
    body's bounding box plus a small margin, so the field of view and the table no longer tell scanners
    (and so classes) apart. A slice without a trustworthy body mask is returned unchanged."""
    mask = body_mask(unit, threshold)
    if mask is None:
        return unit
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    margin = int(round(BODY_MARGIN * max(unit.shape)))
    top, bottom = max(rows[0] - margin, 0), min(rows[-1] + margin + 1, unit.shape[0])
    left, right = max(cols[0] - margin, 0), min(cols[-1] + margin + 1, unit.shape[1])
    blanked = np.where(mask, unit, 0.0).astype(unit.dtype)
    return blanked[top:bottom, left:right]


@dataclass(frozen=True)
class Preprocessing:
    image_size: int = 224
    window_level: float = 40.0  # abdomen window, applied to Hounsfield-unit inputs only
    window_width: float = 400.0
    mean: float = 0.0  # standardisation after scaling to [0, 1]; models declare their own
    std: float = 1.0
    body_crop: bool = False  # crop to the body and blank the rest before resizing (part of the cached form)
    tta_hflip: bool = False  # inference: mean logits of the slice and its left-right mirror image

    def __post_init__(self):
        if self.image_size < 16:
            raise ValueError(f"image_size must be at least 16, got {self.image_size}")
        if self.window_width <= 0:
            raise ValueError(f"window width must be positive, got {self.window_width}")
        if self.std <= 0:
            raise ValueError(f"std must be positive, got {self.std}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Preprocessing":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def to_unit(self, ct_slice: CTSlice) -> np.ndarray:
        """Display intensities in [0, 1]: HU through the window, exported images as they are."""
        if ct_slice.hu:
            return apply_window(ct_slice.pixels, self.window_level, self.window_width)
        return np.clip(ct_slice.pixels.astype(np.float32), 0.0, 1.0)

    def to_uint8(self, ct_slice: CTSlice) -> np.ndarray:
        """The cached, model-independent form: image_size x image_size uint8."""
        unit = self.to_unit(ct_slice)
        if self.body_crop:
            unit = crop_to_body(unit)
        unit = pad_to_square(unit)
        resized = Image.fromarray(unit, mode="F").resize(
            (self.image_size, self.image_size), Image.Resampling.BILINEAR, reducing_gap=None
        )
        return np.clip(np.rint(np.asarray(resized) * 255.0), 0, 255).astype(np.uint8)

    def standardise(self, unit: torch.Tensor) -> torch.Tensor:
        return (unit - self.mean) / self.std

    def batch_to_tensor(self, batch: torch.Tensor | np.ndarray, device=None) -> torch.Tensor:
        """uint8 [B, H, W] (or [B, 1, H, W]) to the model's float input [B, 1, H, W]."""
        return self.standardise(to_unit_tensor(batch, device))


def to_unit_tensor(batch: torch.Tensor | np.ndarray, device=None) -> torch.Tensor:
    tensor = torch.as_tensor(batch, device=device)
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(1)
    return tensor.float().div_(255.0)


@dataclass(frozen=True)
class Augmentation:
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

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Augmentation":
        known = {f.name for f in fields(cls)}
        values = {k: (tuple(v) if k == "scale" else v) for k, v in values.items() if k in known}
        return cls(**values)

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
    def apply(images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Augment [B, 1, H, W] images in [0, 1] with parameters from `sample` (row i for image i)."""
        params = params.to(images.device)
        angle, scale, flip, shift_x, shift_y, contrast, brightness = params[:, :7].unbind(1)
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack(
            [torch.stack([cos * flip, -sin, shift_x], 1), torch.stack([sin * flip, cos, shift_y], 1)], 1
        ).to(images.dtype)
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
