"""Synthetic kidney tumors and cysts inserted into real CT slices, batched, on any device.

Real exports carry no Hounsfield units: each slice was windowed by whoever exported it. So every image's
own display scale is estimated first (the body's fat and soft tissue, split by Otsu's method, are two
anchors of nominal HU), and the lesion model, written in HU like the phantom generator's (size relative
to the kidney, hypo-enhancing heterogeneous tumors with necrosis and lobulated margins, homogeneous
water-dense cysts with sharp margins), is rendered through that scale and relative to the kidney's own
level. A "-100 HU" tumor is then as dark against the kidney in a narrow-window export as in a wide one.

The lesion replaces a local mean of the slice, not the slice itself: the slice's own high-frequency noise
(and JPEG grain) stays on top of the lesion, topped up with low-frequency noise of the same grain, so a
model cannot find inserted lesions by their smoothness. Lesions stay inside the body's outline and off
bone and dense contrast outside the kidney.

Everything is tensor arithmetic over the batch (no loop over pixels or samples; only the images that
receive a lesion are computed), and all randomness comes from the caller's torch.Generator, so the same
generator state and inputs give the same lesions. Measured (benchmarks/lesion_speed.py, one thread,
CPU time on a shared 2-core machine): a batch of 32 phantom slices at 96 px 65-80 ms when all receive
a lesion, about 35 ms when half do; 420-470 ms at 224 px. Not yet measured on a GPU.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F

KINDS = ("tumor", "cyst")  # a per-sample `kind` tensor holds indices into this tuple
_HIST_BINS = 256
_TEXTURE_REACH = 1.6  # the texture grid spans +-1.6 radii: the lesion with its lobulated margin
_NECROSIS_EDGE = 0.12  # soft edge of the necrotic core, as a share of the lesion's radius
_RANDOM_COLUMNS = 12  # uniforms per image: centre, small?, sizes (2), shift (2), offset, sign, texture,
#                       necrosis (2), cyst density
_FAT_BAND = 10  # histogram bins (of 256) compared to tell clipped fat from air
_FINER = 2.0  # the second texture octave is this many times finer
_GRAINS = tuple(i / 10 for i in range(16))  # candidate noise grains: white noise blurred 0-1.5 px
_WALL = 0.035  # lesions stay this share of the image side inside the body's outline
_AIR = 0.03  # display level above which a pixel is not air (JPEG ringing in air stays below)
_TISSUE = 0.1  # blurred display level above which the body is tissue, not air (or, doubled, the table)
_BRIGHT = 0.95  # display intensity of bone and dense contrast, which lesions leave alone
_ANGLES = 128  # the margin is tabulated at this many angles (linear in between)


@dataclass(frozen=True)
class LesionModel:
    """What lesions look like, in units that do not depend on the image's size or window.

    Sizes are multiples of the located kidney's equivalent radius sqrt(area / pi); intensities are
    HU-like, taken from the phantom generator's lesion model; edges and texture scale with the lesion.
    """

    tumor_radius: tuple[float, float] = (1.1, 2.1)  # 5-12 cm masses, often exophytic, as in Kaggle's tumors
    small_tumor_radius: tuple[float, float] = (0.7, 1.2)
    small_tumor_share: float = 0.1
    cyst_radius: tuple[float, float] = (0.35, 0.9)
    min_radius_px: float = 1.5
    exophytic_shift: float = 0.4  # the lesion's middle moves up to this share of its radius outwards
    fat_hu: float = -100.0  # the two anchors of the display scale
    soft_hu: float = 55.0  # median of the non-fat tissue around a kidney (muscle, bowel, liver edge)
    enhanced_above_hu: float = 75.0  # kidney denser: enhanced (plain 30-40 HU, enhanced cortex 150-260)
    tumor_drop_hu: tuple[float, float] = (60.0, 140.0)  # enhanced phase: below the kidney's own level
    tumor_offset_plain_hu: tuple[float, float] = (35.0, 60.0)  # plain scans: this far above or below
    tumor_texture_hu: tuple[float, float] = (70.0, 110.0)  # std of the patchy enhancement
    plain_texture_share: float = 0.3  # without contrast there is little patchy enhancement to see
    texture_scale: float = 0.25  # correlation length of the texture, as a share of the radius
    fine_texture: float = 0.6  # weight of a second octave twice as fine: mottled, not polka-dotted
    necrosis_probability: float = 0.7  # for large tumors only
    necrosis_extent: tuple[float, float] = (0.35, 0.65)  # share of the radius
    necrosis_hu: float = 20.0
    cyst_hu: tuple[float, float] = (-5.0, 18.0)
    tumor_edge: float = 0.08  # soft-edge width, as a share of the radius
    cyst_edge: float = 0.03
    tumor_irregularity: float = 0.12  # largest amplitude of a 2-lobe margin harmonic; n lobes: 2/n of it
    cyst_irregularity: float = 0.015
    harmonics: int = 4
    noise_blur_px: float = 1.0  # the local mean is the image blurred this much; the rest is noise
    # A share of tumors replace the kidney on the slice, as a polar or exophytic mass does on the slices beyond
    # the kidney's end: centred on the kidney, this size, the kidney outside them painted over as perirenal fat.
    replace_share: float = 0.0
    replace_radius: tuple[float, float] = (1.0, 1.5)
    perirenal_fat_hu: float = -80.0
    # A share of tumors in enhanced scans enhance as much as the kidney or more (small clear-cell tumors often do
    # in the corticomedullary phase): this far from the kidney's level instead of below it.
    enhancing_share: float = 0.0
    enhancing_offset_hu: tuple[float, float] = (-10.0, 40.0)

    def __post_init__(self):
        for name in ("tumor_radius", "small_tumor_radius", "cyst_radius", "tumor_drop_hu",
                     "tumor_offset_plain_hu", "tumor_texture_hu", "necrosis_extent", "cyst_hu", "replace_radius",
                     "enhancing_offset_hu"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"{name} must be (low, high) with low <= high, got {(low, high)}")
        if self.soft_hu <= self.fat_hu:
            raise ValueError("soft_hu must be above fat_hu: they anchor the display scale")
        if min(self.tumor_radius[0], self.small_tumor_radius[0], self.cyst_radius[0], self.texture_scale,
               self.noise_blur_px) <= 0:
            raise ValueError("radii, texture_scale and noise_blur_px must be positive")
        if self.harmonics < 1:
            raise ValueError("harmonics must be at least 1")
        if not 0.0 <= self.replace_share <= 1.0 or self.replace_radius[0] <= 0:
            raise ValueError("replace_share must be in [0, 1] and replace_radius positive")
        if not 0.0 <= self.enhancing_share <= 1.0:
            raise ValueError("enhancing_share must be in [0, 1]")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "LesionModel":
        """Rebuild from `to_dict` output (e.g. a checkpoint's JSON, where tuples became lists)."""
        known = {f.name: f for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known})


@dataclass(frozen=True)
class DisplayScale:
    """How one batch's display intensities map to HU-like units: display = fat + per_hu * (HU - fat_hu)."""

    fat: torch.Tensor  # [B] display level of fat
    per_hu: torch.Tensor  # [B] display units per HU (1 / window width)
    fat_hu: float

    def to_display(self, hu: torch.Tensor) -> torch.Tensor:
        """HU-like values [B, ...] to display intensities (not clipped)."""
        shape = (-1,) + (1,) * (hu.ndim - 1)
        return self.fat.view(shape) + self.per_hu.view(shape) * (hu - self.fat_hu)

    def to_hu(self, display: torch.Tensor) -> torch.Tensor:
        """Display intensities [B, ...] to HU-like values."""
        shape = (-1,) + (1,) * (display.ndim - 1)
        return (display - self.fat.view(shape)) / self.per_hu.view(shape) + self.fat_hu


@dataclass(frozen=True)
class InsertedLesions:
    """What `render_lesions` did to each image of the batch."""

    images: torch.Tensor  # [B, 1, H, W], the input's dtype, in [0, 1]
    masks: torch.Tensor  # bool [B, H, W]: blend weight > 0.5
    applied: torch.Tensor  # bool [B]: apply was true and the kidney mask was not empty
    centres: torch.Tensor  # [B, 2] (row, column) the lesion grew from: a kidney pixel, or a replacing tumor's
    #                        kidney's middle
    radii: torch.Tensor  # [B] nominal radius in pixels
    tumor: torch.Tensor  # bool [B]: tumor (else cyst)
    kidney_radius: torch.Tensor  # [B] equivalent radius of the kidney around the centre, pixels
    scale: DisplayScale
    erased: torch.Tensor  # bool [B, H, W]: kidney painted over as fat (replacing tumors)


def _gaussian_blur(images: torch.Tensor, sigma: float, vertical: bool = True) -> torch.Tensor:
    """Separable Gaussian blur of [B, 1, H, W] with reflected borders (horizontal only if not
    `vertical`). The batch runs as the channels of one depthwise convolution: several times faster
    on CPU than B single-channel images."""
    half = max(1, math.ceil(3 * sigma))
    taps = torch.arange(-half, half + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    channels = images.shape[0]

    def taps_for(length: int) -> tuple[torch.Tensor, int]:
        pad = min(half, length - 1)  # reflection needs the pad to be shorter than the side
        part = kernel[half - pad:half + pad + 1]
        return part / part.sum(), pad

    cols, pad_w = taps_for(images.shape[-1])
    out = images.transpose(0, 1)
    out = F.conv2d(F.pad(out, (pad_w, pad_w, 0, 0), mode="reflect"),
                   cols.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    if vertical:
        rows, pad_h = taps_for(images.shape[-2])
        out = F.conv2d(F.pad(out, (0, 0, pad_h, pad_h), mode="reflect"),
                       rows.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    return out.transpose(0, 1)


def _dilate(mask: torch.Tensor) -> torch.Tensor:
    """Binary dilation of bool [B, H, W] by one pixel (3 x 3)."""
    padded = F.pad(mask, (1, 1, 1, 1))
    height, width = mask.shape[-2:]
    out = mask.clone()
    for dy in range(3):
        for dx in range(3):
            out |= padded[:, dy:dy + height, dx:dx + width]
    return out


def _histogram(values: torch.Tensor, mask: torch.Tensor, top: float = 1.0) -> torch.Tensor:
    """Counts [B, bins] of each row's masked values in [0, top]. Integer counts in float32 add up exactly,
    so the result does not depend on the order of atomic additions on a GPU."""
    index = (values * (_HIST_BINS / top)).long().clamp_(0, _HIST_BINS - 1)
    index = torch.where(mask, index, _HIST_BINS)  # unmasked values fall into a spare bin, dropped below
    hist = torch.zeros(values.shape[0], _HIST_BINS + 1, device=values.device)
    hist.scatter_add_(1, index, torch.ones(1, device=values.device).expand(index.shape))
    return hist[:, :_HIST_BINS]


def _masked_median(values: torch.Tensor, mask: torch.Tensor, default: float, top: float = 1.0) -> torch.Tensor:
    """Median (to 1/256 of `top`) over the True entries of each row of [B, N]; `default` for empty rows.
    A histogram, not a sort: several times faster for a batch of images."""
    cumulative = _histogram(values, mask, top).cumsum(1)
    total = cumulative[:, -1]
    median = (_first_bin_reaching(cumulative, total / 2) + 0.5) * (top / _HIST_BINS)
    return torch.where(total > 0, median, torch.full_like(median, default))


def _first_bin_reaching(cumulative: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    return (cumulative >= level[:, None]).float().argmax(1)


def _fat_and_soft_levels(hist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Otsu's split of each histogram row, then the median of each side: fat and soft-tissue levels."""
    centres = (torch.arange(_HIST_BINS, device=hist.device) + 0.5) / _HIST_BINS
    below = hist.cumsum(1)
    total = below[:, -1:]
    mass = (hist * centres).cumsum(1)
    mean_below = mass / below.clamp(min=1)
    mean_above = (mass[:, -1:] - mass) / (total - below).clamp(min=1)
    split = (below * (total - below) * (mean_above - mean_below) ** 2).argmax(1)
    low = below.gather(1, split[:, None])[:, 0]
    fat = _first_bin_reaching(below, low / 2)
    soft = centres[_first_bin_reaching(below, low + (total[:, 0] - low) / 2)]
    # Black pixels are air (bowel gas, beside the body) or fat that a narrow window clipped. Clipped fat's
    # tail is densest just above black and thins out upwards; behind air there is a gap before grey fat's
    # peak. So where the band just above black is much sparser than the band around the median of the
    # fat that is not black, black is air and is left out of fat's median.
    without_black = below - hist[:, :1]
    grey_fat = _first_bin_reaching(without_black, without_black.gather(1, split[:, None])[:, 0] / 2)
    band = _FAT_BAND

    def count(first: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        return below.gather(1, last.clamp(0, _HIST_BINS - 1)[:, None])[:, 0] - below.gather(
            1, (first - 1).clamp(0, _HIST_BINS - 1)[:, None])[:, 0]

    ones = torch.ones_like(grey_fat)
    gap = count(ones, ones * band) < 0.5 * count(grey_fat - band // 2, grey_fat + band // 2)
    return centres[torch.where(gap, grey_fat, fat)], soft


def estimate_display_scale(images: torch.Tensor, region: torch.Tensor, model: LesionModel) -> DisplayScale:
    """Per image, the affine map between display intensities and HU-like units.

    Fat and soft tissue are told apart by Otsu's split of the pixels in `region` (the body); their
    medians are taken as `model.fat_hu` and `model.soft_hu`. Clipped fat (narrow windows render it
    black) biases the fat level up a little, so the scale errs towards weaker contrast; how much soft
    tissue is enhanced liver or plain muscle moves it by up to about a third.

    Args:
        images: float [B, 1, H, W] display intensities in [0, 1].
        region: bool [B, H, W], the pixels to read the levels from (bone and bright contrast excluded).
        model: supplies the two anchors' HU.

    Returns:
        DisplayScale with per-image `fat` and `per_hu`; images whose levels cannot be told apart get a
        standard abdomen window's scale (1/400 per HU) around their soft-tissue level.
    """
    flat = images[:, 0].float().flatten(1)
    fat, soft = _fat_and_soft_levels(_histogram(flat, region.flatten(1)))
    span = model.soft_hu - model.fat_hu
    per_hu = (soft - fat) / span
    usable = per_hu * 1500 > 1  # a window narrower than 1500 HU: two levels were found
    per_hu = torch.where(usable, per_hu, torch.full_like(per_hu, 1 / 400)).clamp(max=1 / 100)
    fat = torch.where(usable, fat, soft - span * per_hu)
    return DisplayScale(fat=fat, per_hu=per_hu, fat_hu=model.fat_hu)


def _body_blur(images: torch.Tensor) -> torch.Tensor:
    """The slices blurred over 1/64 of their side, float [B, H, W]: what the body's wall is read from."""
    return _gaussian_blur(images.float(), max(1.0, max(images.shape[-2:]) / 64))[:, 0]


def _seen_from(mask: torch.Tensor, dim: int, reverse: bool) -> torch.Tensor:
    """Pixels of bool [B, H, W] with `mask` somewhere before them along `dim` (after them if `reverse`):
    a comparison with the first (last) set index, cheaper than a cumulative maximum."""
    length = mask.shape[dim]
    index = torch.arange(length, device=mask.device).view([-1 if d == dim else 1 for d in range(mask.ndim)])
    ordered = mask.flip(dim) if reverse else mask
    first = ordered.to(torch.uint8).argmax(dim, keepdim=True)  # the first maximum: the first set pixel
    found = mask.any(dim, keepdim=True)
    if reverse:
        return found & (index <= length - 1 - first)
    return found & (index >= first)


def _inside_body(image: torch.Tensor, level: float, blurred: torch.Tensor) -> torch.Tensor:
    """The body with its holes (dark fat, gas) filled, bool [B, H, W] from [B, H, W]: pixels with tissue
    (`image` above `level`) to their left, right and top, and dense tissue (`blurred`, the same slices
    blurred, above 2 * _TISSUE, or that within a few percent of the image side to the side) below. The
    stricter test below leaves out the gap above the table, whose thin lines blur to less; the
    sideways reach keeps the flanks, under which there may be only fat and skin. Batched as
    comparisons with first and last indices."""
    tissue = image > level
    sideways = max(image.shape[-2:]) / 20
    dense = _gaussian_blur((blurred > 2 * _TISSUE)[:, None].float(), sideways, vertical=False)[:, 0] > 0.05
    return (_seen_from(tissue, 2, False) & _seen_from(tissue, 2, True) & _seen_from(tissue, 1, False)
            & _seen_from(dense, 1, True))


def _within_wall(blurred: torch.Tensor) -> torch.Tensor:
    """The body minus its outer _WALL share of the image side (skin, subcutaneous fat, much of the
    muscular wall), bool [B, H/2, W/2]: the outline is coarse, so it is found at half resolution (4
    times cheaper), and eroded as blur-and-threshold (a cheap depthwise convolution on any device)."""
    half = blurred[:, ::2, ::2]
    half = _inside_body(half, _TISSUE, half)[:, None].float()
    return _gaussian_blur(half, max(blurred.shape[-2:]) * _WALL / 2.56)[:, 0] > 0.9


def _nearest_wall(within: torch.Tensor, centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance [B] (pixels) from each centre to the nearest pixel beyond the wall (`within`, at half
    resolution; infinite when the body fills the image) and the unit vector [B, 2] (row, col) towards it."""
    rows, cols = _grid(within.shape[-2:], within.device)
    dist2 = (2 * rows - centres[:, 0, None, None]) ** 2 + (2 * cols - centres[:, 1, None, None]) ** 2
    nearest = torch.where(within, torch.inf, dist2).flatten(1).min(1)
    width = within.shape[-1]
    point = torch.stack([2 * (nearest.indices // width), 2 * (nearest.indices % width)], 1).float()
    towards = point - centres
    return nearest.values.sqrt(), towards / towards.norm(dim=1, keepdim=True).clamp(min=1e-6)


def _room(images: torch.Tensor, kidney_masks: torch.Tensor, within: torch.Tensor) -> torch.Tensor:
    """Where a lesion may show, float [B, H, W] in [0, 1] with soft borders: within the body's wall
    (a mass pushes the abdominal wall out, it does not replace it), and not over bright structures
    outside the kidney (bone, contrast-filled vessels and bowel). The located kidney itself is always
    room."""
    inside = F.interpolate(within[:, None].float(), size=images.shape[-2:], mode="nearest")[:, 0] > 0
    bright = (images[:, 0] >= _BRIGHT) & ~_dilate(_dilate(kidney_masks))
    room = (inside & ~_dilate(bright)) | kidney_masks
    soft = _smoothstep((_gaussian_blur(room[:, None].float(), 0.7)[:, 0] - 0.1) / 0.8)  # exactly 0 off room
    return soft.maximum(kidney_masks.float())


def _grid(shape, device) -> tuple[torch.Tensor, torch.Tensor]:
    rows = torch.arange(shape[0], device=device, dtype=torch.float32)
    cols = torch.arange(shape[1], device=device, dtype=torch.float32)
    return torch.meshgrid(rows, cols, indexing="ij")


def _pick_centres(masks: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """One pixel per image, uniformly among its mask's pixels (u: uniform [B]); (row, col) [B, 2]."""
    cumulative = masks.flatten(1).cumsum(1)
    counts = cumulative[:, -1]
    rank = (u * counts).long().clamp(max=(counts - 1).clamp(min=0)) + 1
    index = torch.searchsorted(cumulative, rank[:, None]).squeeze(1).clamp(max=cumulative.shape[1] - 1)
    return torch.stack([index // masks.shape[-1], index % masks.shape[-1]], 1).float()


def _uniform(u: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    return bounds[0] + u * (bounds[1] - bounds[0])


def _smoothstep(t: torch.Tensor) -> torch.Tensor:
    t = t.clamp(0, 1)
    return t * t * (3 - 2 * t)


@dataclass(frozen=True)
class _Draws:
    """Every random number of one call, drawn in a fixed order whatever `apply` and `kind` say, so that
    an image's lesion depends only on the generator's state and the batch, not on the other images."""

    u: torch.Tensor  # [B, _RANDOM_COLUMNS] uniform
    harmonics: torch.Tensor  # [B, 3, K] uniform: amplitude, frequency, phase of each margin harmonic
    texture: torch.Tensor  # [B, 1, G, G] standard normal: the texture's control points
    fine: torch.Tensor  # [B, 1, G', G'] standard normal: those of the finer octave
    noise: torch.Tensor  # [B, 1, H, W] standard normal: noise where the slice's own cannot be read
    replace: torch.Tensor  # [B, 2] uniform (replacing? size), [B, 0] when the model has no replacing tumors
    enhancing: torch.Tensor  # [B, 2] uniform (enhancing? offset), [B, 0] when the model has no enhancing tumors

    @classmethod
    def sample(cls, images: torch.Tensor, model: LesionModel, generator: torch.Generator) -> "_Draws":
        batch, device = images.shape[0], images.device
        side = math.ceil(2 * _TEXTURE_REACH / model.texture_scale) + 1
        fine = math.ceil(2 * _TEXTURE_REACH / (model.texture_scale / _FINER)) + 1

        def draw(fn, *shape):
            return fn(*shape, generator=generator, device=device)

        # Drawn last, and only when used: models without replacing tumors keep their earlier draws bit for bit.
        return cls(draw(torch.rand, batch, _RANDOM_COLUMNS), draw(torch.rand, batch, 3, model.harmonics),
                   draw(torch.randn, batch, 1, side, side), draw(torch.randn, batch, 1, fine, fine),
                   draw(torch.randn, batch, 1, *images.shape[-2:]),
                   draw(torch.rand, batch, 2 if model.replace_share > 0 else 0),
                   draw(torch.rand, batch, 2 if model.enhancing_share > 0 else 0))

    def replacing(self, tumor: torch.Tensor, model: LesionModel) -> torch.Tensor:
        """bool [B]: which tumors replace the kidney on the slice."""
        if self.replace.shape[1] == 0:
            return torch.zeros_like(tumor)
        return tumor & (self.replace[:, 0] < model.replace_share)

    def rows(self, index: torch.Tensor) -> "_Draws":
        """The draws of the images at `index`."""
        return _Draws(*(getattr(self, f.name)[index] for f in fields(self)))


@dataclass(frozen=True)
class _Shape:
    """One lesion per image: where it grows from and how its margin runs."""

    centre: torch.Tensor  # [B, 2] the kidney pixel it grows from (row, col)
    middle: torch.Tensor  # [B, 2] its geometric centre, shifted away from the body's midline
    radius: torch.Tensor  # [B] pixels
    edge: torch.Tensor  # [B] soft-edge width, pixels
    harmonics: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # amplitude, frequency, phase [B, K]


def _kidney_around(masks: torch.Tensor, centres: torch.Tensor, rows, cols) -> tuple[torch.Tensor, torch.Tensor]:
    """The part of each mask that belongs to the kidney holding the centre, and its equivalent radius.
    A mask may hold both kidneys; the other lies more than 2.2 single-kidney radii away (4-7 in real
    and phantom anatomy) and a kidney is at most about 2.5 radii long, so a disc of 2.2 * sqrt(area/pi)
    of the whole mask (sqrt(2) larger when both are in it) keeps one kidney."""
    area = masks.flatten(1).sum(1).float()
    reach = 2.2 * torch.sqrt(area / math.pi)
    dist2 = (rows - centres[:, 0, None, None]) ** 2 + (cols - centres[:, 1, None, None]) ** 2
    local = masks & (dist2 <= reach[:, None, None] ** 2)
    return local, torch.sqrt(local.flatten(1).sum(1).float() / math.pi).clamp(min=1.0)


def _outwards(images: torch.Tensor, centres: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Unit vectors [B, 2] (row, col) of exophytic growth: away from the body's midline (its intensity
    centroid), tilted forwards by up to 70 degrees (u uniform [B]), where real masses have room."""
    weights = images[:, 0].float()
    cols = torch.arange(images.shape[-1], device=images.device, dtype=torch.float32)
    midline = (weights.sum(1) * cols).sum(1) / weights.sum((1, 2)).clamp(min=1e-6)
    side = torch.where(centres[:, 1] >= midline, 1.0, -1.0)
    tilt = math.radians(-20) + u * math.radians(90)
    return torch.stack([-torch.sin(tilt), side * torch.cos(tilt)], 1)


def _lesion_shape(images, centres, kidney_radius, wall, tumor, draws: _Draws, model: LesionModel,
                  replacing: torch.Tensor, kidney_middle: torch.Tensor) -> _Shape:
    """Size (relative to the kidney), lobulated margin and outward shift of each lesion; a replacing tumor
    (see LesionModel.replace_share) grows from the kidney's middle (`kidney_middle` [B, 2]). A mass pushes
    the abdominal wall out rather than crossing it: its reach towards the nearest point of the wall
    (`wall`: distance and direction) may pass it by a little, where it is cut as if pressed against
    it, not by much."""
    u = draws.u
    small = u[:, 1] < model.small_tumor_share
    size = _uniform(u[:, 2], model.tumor_radius)
    factor = torch.where(small, _uniform(u[:, 2], model.small_tumor_radius), size)
    factor = torch.where(tumor, factor, _uniform(u[:, 3], model.cyst_radius))
    if draws.replace.shape[1]:
        factor = torch.where(replacing, _uniform(draws.replace[:, 1], model.replace_radius), factor)
        centres = torch.where(replacing[:, None], kidney_middle, centres)
    radius = factor * kidney_radius
    irregularity = torch.where(tumor, model.tumor_irregularity, model.cyst_irregularity)
    frequency = torch.floor(2 + draws.harmonics[:, 1] * 5)  # 2-6 lobes per turn
    # Higher harmonics weaker (as 2 / frequency): smooth lobulation rather than a clover or a star.
    amplitude = draws.harmonics[:, 0] * irregularity[:, None] * 2 / frequency
    phase = draws.harmonics[:, 2] * 2 * math.pi
    direction = _outwards(images, centres, u[:, 5])
    # The shift stays below the margin's smallest reach, so the lesion holds its centre.
    lowest = (1 - amplitude.sum(1)).clamp(min=0.3)
    shift_share = torch.minimum(u[:, 4] * model.exophytic_shift, 0.8 * lowest)
    distance, towards = wall
    reach = 1 + amplitude.sum(1) + shift_share * (direction * towards).sum(1)  # per radius, towards the wall
    # A kidney close to the wall still gets a lesion of 0.7 of its own radius (cut by the wall if need be).
    floor = torch.minimum(radius, 0.7 * kidney_radius)
    radius = torch.maximum(torch.minimum(radius, 1.2 * distance / reach.clamp(min=0.5)), floor)
    radius = radius.clamp(min=model.min_radius_px)
    shift = shift_share * radius
    edge = (torch.where(tumor, model.tumor_edge, model.cyst_edge) * radius).clamp(min=0.5)
    return _Shape(centres, centres + shift[:, None] * direction, radius, edge, (amplitude, frequency, phase))


def _margin_table(shape: _Shape) -> torch.Tensor:
    """The margin's reach (1 + sum of cosine harmonics, at least 0.3) at _ANGLES angles per lesion
    [B, _ANGLES + 1] (the last repeats the first): tabulated once, then looked up per pixel."""
    angles = torch.linspace(-math.pi, math.pi, _ANGLES + 1, device=shape.radius.device)
    amplitude, frequency, phase = (h[:, :, None] for h in shape.harmonics)
    return (1 + (amplitude * torch.cos(frequency * angles + phase)).sum(1)).clamp(min=0.3)


def _lesion_weight(shape: _Shape, rows, cols) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Blend weight [B, H, W] (1 inside, soft edge), normalised radius (1 on the margin) and the offsets
    from the lesion's middle in units of the texture grid [B, H, W, 2] (+-1: _TEXTURE_REACH radii)."""
    dy = rows - shape.middle[:, 0, None, None]
    dx = cols - shape.middle[:, 1, None, None]
    rho = torch.sqrt(dx ** 2 + dy ** 2)
    position = (torch.atan2(dy, dx) + math.pi) * (_ANGLES / (2 * math.pi))
    below = position.long().clamp_(max=_ANGLES - 1)
    table = _margin_table(shape)
    low = table[:, :-1].gather(1, below.flatten(1)).view_as(rho)
    high = table[:, 1:].gather(1, below.flatten(1)).view_as(rho)
    reach = low + (position - below) * (high - low)
    margin = reach * shape.radius[:, None, None]
    weight = _smoothstep((margin - rho) / shape.edge[:, None, None] + 0.5)
    span = (1 / (shape.radius * _TEXTURE_REACH))[:, None, None]
    return weight, rho / margin, torch.stack([dx * span, dy * span], -1)


def _texture(draws: _Draws, offsets: torch.Tensor, inside: torch.Tensor, radius: torch.Tensor,
             model: LesionModel) -> torch.Tensor:
    """Smooth noise [B, H, W] that moves with the lesion, correlated over texture_scale radii (plus a
    finer octave), standardised to zero mean and unit std inside it. The finer octave fades out where
    its cells would be under 3 pixels: there it would read as extra noise, not as texture."""
    def octave(grid, mode):
        return F.grid_sample(grid, offsets, mode=mode, padding_mode="border", align_corners=True)[:, 0]

    cell = 2 * _TEXTURE_REACH * radius / (draws.fine.shape[-1] - 1)
    fine = model.fine_texture * ((cell - 1.5) / 1.5).clamp(0, 1)
    # Bilinear suffices for the finer octave: its cells are 3 pixels or more, too small to show facets.
    field = octave(draws.texture, "bicubic") + fine[:, None, None] * octave(draws.fine, "bilinear")
    count = inside.flatten(1).sum(1).clamp(min=1)
    mean = (field * inside).flatten(1).sum(1) / count
    centred = field - mean[:, None, None]
    std = torch.sqrt(((centred * inside) ** 2).flatten(1).sum(1) / count)
    return centred / std.clamp(min=1e-3)[:, None, None]


def _slope(smooth: torch.Tensor) -> torch.Tensor:
    """Largest absolute central difference along rows or columns, [B, H, W] from [B, 1, H, W]."""
    padded = F.pad(smooth, (1, 1, 1, 1), mode="replicate")[:, 0]
    along_rows = (padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1]).abs()
    along_cols = (padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2]).abs()
    return torch.maximum(along_rows, along_cols) / 2


def _gaussian_taps(sigma: float, half: int) -> torch.Tensor:
    """A sampled, normalised 1-D Gaussian on -half..half (float64); sigma 0 is the identity."""
    taps = torch.arange(-half, half + 1, dtype=torch.float64)
    if sigma <= 0:
        return (taps == 0).double()
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    return kernel / kernel.sum()


@functools.lru_cache(maxsize=4)
def _grain_table(blur: float) -> dict[str, torch.Tensor]:
    """Per candidate grain (_GRAINS: white noise blurred by that many pixels), from the 2-D kernels:
    `correlation` of neighbouring pixels in what a blur of `blur` removes (what an image shows),
    `share` of the noise's std that the blur removes (what it hides), `std` of unit white noise so
    blurred, and `low` the std of that noise blurred again by `blur` / sqrt(2) (the complement), relative
    to `std`."""
    half = math.ceil(3 * (max(_GRAINS) + blur)) + 2
    rows = []

    def blurred(taps: torch.Tensor, sigma: float) -> torch.Tensor:
        return F.conv1d(taps.view(1, 1, -1), _gaussian_taps(sigma, half).view(1, 1, -1), padding=half)[0, 0]

    for grain in _GRAINS:
        noise = _gaussian_taps(grain, half)
        smooth = blurred(noise, blur)
        kernel = torch.outer(noise, noise) - torch.outer(smooth, smooth)  # high-pass of the noise
        power, full = (kernel * kernel).sum(), (noise * noise).sum() ** 2
        complement = blurred(noise, blur / math.sqrt(2))
        rows.append([(kernel[:, 1:] * kernel[:, :-1]).sum() / power, torch.sqrt(power / full),
                     torch.sqrt(full), (complement * complement).sum() / torch.sqrt(full)])
    table = torch.tensor(rows, dtype=torch.float32)
    return dict(zip(("correlation", "share", "std", "low"), table.unbind(1)))


def _neighbour_correlation(residual: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    """Correlation [B] of horizontally and vertically neighbouring residuals where both are flat, from
    every other row (column): plenty of pairs, half the work."""
    products, powers = 0.0, 0.0
    across, down = residual[:, ::2], residual[:, :, ::2]
    flat_across, flat_down = flat[:, ::2], flat[:, :, ::2]
    for a, b, fa, fb in ((across[:, :, 1:], across[:, :, :-1], flat_across[:, :, 1:], flat_across[:, :, :-1]),
                         (down[:, 1:], down[:, :-1], flat_down[:, 1:], flat_down[:, :-1])):
        both = fa & fb
        products = products + (a * b * both).flatten(1).sum(1)
        powers = powers + ((a * a + b * b) * both).flatten(1).sum(1) / 2
    return products / powers.clamp(min=1e-12)


def _grainy_noise(draws: _Draws, grain: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Unit-std noise [B, 1, H, W]: each image's white noise blurred by its own grain [B] (pixels), as
    one depthwise convolution with a kernel per image; `std` [B] is what the blur leaves of unit noise."""
    half = math.ceil(3 * max(_GRAINS))
    taps = torch.arange(-half, half + 1, device=grain.device, dtype=torch.float32)
    kernels = torch.exp(-0.5 * (taps / grain.clamp(min=1e-3)[:, None]) ** 2)
    kernels = kernels / kernels.sum(1, keepdim=True)  # grain 0 leaves the centre tap alone: white noise
    channels = kernels.shape[0]
    out = F.pad(draws.noise.transpose(0, 1), (half, half, half, half), mode="reflect")
    out = F.conv2d(out, kernels.view(channels, 1, 1, -1), groups=channels)
    out = F.conv2d(out, kernels.view(channels, 1, -1, 1), groups=channels).transpose(0, 1)
    return out / std.view(-1, 1, 1, 1)


def _slice_noise(images: torch.Tensor, body: torch.Tensor, draws: _Draws, model: LesionModel) -> torch.Tensor:
    """Noise [B, H, W] for the lesion: the slice's own where it can be read, matched noise elsewhere.

    The slice's own is what a small blur removes (its high-pass part). That misses the noise's
    low-frequency part (much of it for the grainy noise of JPEG exports), so noise of the same grain,
    low-passed, is added: the grain (white noise blurred by a Gaussian of some width) is the one whose
    high-pass part has the neighbour correlation of the slice's residual. The residual also holds part
    of every edge, which would show through the lesion as a ghost of the kidney's outline; so where
    the blurred slice has an edge (a slope three times its typical one in the body), where the
    residual is an outlier (above 3 robust stds) and where the slice is clipped, the matched noise
    stands in whole."""
    x = images.float()
    smooth = _gaussian_blur(x, model.noise_blur_px)
    residual = (x - smooth)[:, 0]
    readable = (x[:, 0] > 0.5 / 255) & (x[:, 0] < 1 - 0.5 / 255)
    usable = (readable & body).flatten(1)

    def spread(values: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        """Robust std from every other pixel (as good a median, a quarter of the work)."""
        values, where = values[:, ::2, ::2].abs().flatten(1), where.view_as(values)[:, ::2, ::2].flatten(1)
        return 1.4826 * _masked_median(values, where, 0.0, top=0.25)[:, None, None]

    sigma = spread(residual, usable)
    slope = _slope(smooth)
    typical = spread(slope, usable)
    # The grain is read from neighbouring pixels where the slice is flat (edges would pass for grain).
    flat = usable.view_as(residual) & (slope < 1.5 * typical) & (residual.abs() < 3 * sigma)
    table = {key: column.to(x.device) for key, column in _grain_table(model.noise_blur_px).items()}
    nearest = (_neighbour_correlation(residual, flat).view(-1, 1) - table["correlation"]).abs().argmin(1)
    share = table["share"][nearest].view(-1, 1, 1)
    full = sigma / share
    grains = torch.tensor(_GRAINS, device=x.device)[nearest]
    matched = _grainy_noise(draws, grains, table["std"][nearest])
    # The added low part is independent of the slice's high part, so it carries all the variance the
    # high part lacks (in the slice, part of it is their covariance). It is the complement of the high
    # part's spectrum, (1 - (1 - G)^2) = 2G - G^2 for a Gaussian G, whose root is about a Gaussian of
    # width / sqrt(2): else mid frequencies, which the residual keeps only partly, would go missing.
    low = _gaussian_blur(matched, model.noise_blur_px / math.sqrt(2))[:, 0] / table["low"][nearest].view(-1, 1, 1)
    low = low * torch.sqrt(1 - share ** 2)
    outlier = _dilate(~readable | (residual.abs() > 3 * sigma)) | (slope > torch.maximum(3 * typical, sigma))
    return torch.where(outlier, full * matched[:, 0], residual + full * low)


def _squash(hu: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Map values smoothly into (low, high): nearly unchanged mid-range, saturating at the ends."""
    middle, half = (low + high) / 2, (high - low) / 2
    return middle + half * torch.tanh((hu - middle) / half)


def _tumor_values(kidney_level, scale: DisplayScale, radius_share, texture, large, draws: _Draws,
                  model: LesionModel) -> torch.Tensor:
    """Display values [B, H, W] of a tumor: relative to the kidney's own level, hypo-enhancing in
    enhanced scans (or, for LesionModel.enhancing_share of them, about as bright or brighter), a few tens of HU
    off in plain ones; patchy texture and an irregular necrotic core.
    Values stay between fluid (necrosis) and the kidney's own enhancement: the texture mottles, it
    does not punch holes darker than fluid or spots brighter than the renal cortex."""
    u = draws.u
    kidney_hu = scale.to_hu(kidney_level)
    enhanced = kidney_hu > model.enhanced_above_hu
    sign = torch.where(u[:, 7] < 0.5, -1.0, 1.0)
    offset = torch.where(enhanced, -_uniform(u[:, 6], model.tumor_drop_hu),
                         sign * _uniform(u[:, 6], model.tumor_offset_plain_hu))
    bright = torch.zeros_like(enhanced)
    if draws.enhancing.shape[1]:
        bright = enhanced & (draws.enhancing[:, 0] < model.enhancing_share)
        offset = torch.where(bright, _uniform(draws.enhancing[:, 1], model.enhancing_offset_hu), offset)
    amplitude = _uniform(u[:, 8], model.tumor_texture_hu)
    amplitude = amplitude * torch.where(enhanced, 1.0, model.plain_texture_share)
    patchy = amplitude[:, None, None] * texture
    solid = (kidney_hu + offset)[:, None, None] + patchy
    extent = _uniform(u[:, 10], model.necrosis_extent) * (large & (u[:, 9] < model.necrosis_probability))
    # The core's border follows the texture a little, so necrosis is ragged rather than a disc.
    core = _smoothstep((extent[:, None, None] * (1 + 0.25 * texture) - radius_share) / _NECROSIS_EDGE + 0.5)
    core = core * (extent > 0)[:, None, None]
    hu = solid + core * (model.necrosis_hu + 0.4 * patchy - solid)
    ceiling = kidney_hu + torch.where(enhanced, -10.0, model.tumor_offset_plain_hu[1] + 10)
    ceiling = torch.where(bright, kidney_hu + model.enhancing_offset_hu[1] + 20, ceiling)
    floor = torch.minimum(torch.full_like(ceiling, model.necrosis_hu - 15), ceiling - 20)
    return scale.to_display(_squash(hu, floor[:, None, None], ceiling[:, None, None]))


def _kind_codes(kind, batch: int, device) -> torch.Tensor:
    """bool [B], True for tumors, from "tumor", "cyst" or a tensor of indices into KINDS."""
    if isinstance(kind, str):
        if kind not in KINDS:
            raise ValueError(f"unknown lesion kind {kind!r}; expected one of {KINDS}")
        return torch.full((batch,), kind == "tumor", device=device)
    codes = torch.as_tensor(kind, device=device).long().reshape(-1)
    if codes.shape[0] != batch or bool(((codes < 0) | (codes >= len(KINDS))).any()):
        raise ValueError(f"kind must hold {batch} indices into {KINDS}")
    return codes == KINDS.index("tumor")


def _check_inputs(images: torch.Tensor, kidney_masks: torch.Tensor, apply: torch.Tensor) -> None:
    if images.ndim != 4 or images.shape[1] != 1 or not images.is_floating_point():
        raise ValueError(f"images must be float [B, 1, H, W], got {tuple(images.shape)} {images.dtype}")
    if kidney_masks.shape != (images.shape[0], *images.shape[-2:]) or kidney_masks.dtype != torch.bool:
        raise ValueError(f"kidney_masks must be bool [B, H, W] matching the images, got "
                         f"{tuple(kidney_masks.shape)} {kidney_masks.dtype}")
    if apply.shape != (images.shape[0],):
        raise ValueError(f"apply must be bool [B], got {tuple(apply.shape)}")


def _render(images: torch.Tensor, kidney_masks: torch.Tensor, tumor: torch.Tensor, draws: _Draws,
            model: LesionModel) -> InsertedLesions:
    """One lesion into every image of the batch (all have a kidney)."""
    rows, cols = _grid(images.shape[-2:], images.device)
    centres = _pick_centres(kidney_masks, draws.u[:, 0])
    local, kidney_radius = _kidney_around(kidney_masks, centres, rows, cols)
    x = images[:, 0].float()
    blurred = _body_blur(images)
    within = _within_wall(blurred)
    # The body and its levels are read from every other pixel (as good a median, a quarter of the work),
    # its edge sharp, not blurred: no ring of air around it to pass for fat.
    sub = x[:, ::2, ::2]
    body = _inside_body(sub, _AIR, blurred[:, ::2, ::2])
    region = body & ~kidney_masks[:, ::2, ::2] & (sub < _BRIGHT)
    scale = estimate_display_scale(images[..., ::2, ::2], region, model)
    body = F.interpolate(body[:, None].float(), size=x.shape[-2:], mode="nearest")[:, 0] > 0
    kidney_level = _masked_median(x.flatten(1), local.flatten(1), 0.5)
    replacing = draws.replacing(tumor, model)
    own, middle = _own_kidney(local, kidney_radius, rows, cols) if draws.replace.shape[1] else (local, centres)
    grows_from = torch.where(replacing[:, None], middle, centres)
    shape = _lesion_shape(images, centres, kidney_radius, _nearest_wall(within, grows_from), tumor, draws, model,
                          replacing, middle)
    weight, radius_share, offsets = _lesion_weight(shape, rows, cols)
    weight = weight * _room(images, kidney_masks, within)
    inside = weight > 0.5
    texture = _texture(draws, offsets, inside, shape.radius, model)
    large = shape.radius > kidney_radius
    solid = _tumor_values(kidney_level, scale, radius_share, texture, large, draws, model)
    cyst = scale.to_display(_uniform(draws.u[:, 11], model.cyst_hu))[:, None, None]
    target = torch.where(tumor[:, None, None], solid, cyst)
    noise = _slice_noise(images, body, draws, model)
    x_erased, erased = x, torch.zeros_like(inside)
    if draws.replace.shape[1]:
        erase = _erase_weight(own, replacing)
        fat = scale.to_display(torch.full_like(kidney_level, model.perirenal_fat_hu))[:, None, None]
        x_erased = x + erase * (fat + noise - x)
        erased = (erase > 0.5) & ~inside
    # An additive change to the local mean (x - noise): the slice's noise stays on the lesion.
    change = (x_erased - x + weight * (target + noise - x_erased))[:, None].to(images.dtype)
    applied = torch.ones_like(tumor)
    return InsertedLesions((images + change).clamp(0, 1), inside, applied, shape.centre, shape.radius, tumor,
                           kidney_radius, scale, erased)


def _centroid(masks: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """(row, col) [B, 2] of each mask's mean pixel (masks are not empty)."""
    count = masks.flatten(1).sum(1).clamp(min=1)
    return torch.stack([(masks * rows).flatten(1).sum(1) / count, (masks * cols).flatten(1).sum(1) / count], 1)


def _own_kidney(local: torch.Tensor, kidney_radius: torch.Tensor, rows, cols) -> tuple[torch.Tensor, torch.Tensor]:
    """The kidney a replacing tumor takes over and its middle [B, 2]: `local` (see _kidney_around) may reach the
    near edge of the other kidney, which lies more than 2.5 radii from this one's middle, while a kidney's own
    section reaches at most about 1.6 radii from it; so 2 radii around the middle keep this kidney alone."""
    middle = _centroid(local, rows, cols)
    dist2 = (rows - middle[:, 0, None, None]) ** 2 + (cols - middle[:, 1, None, None]) ** 2
    own = local & (dist2 <= (2 * kidney_radius[:, None, None]) ** 2)
    return own, _centroid(own, rows, cols)


def _erase_weight(local: torch.Tensor, replacing: torch.Tensor) -> torch.Tensor:
    """Blend weight [B, H, W] that paints a replacing tumor's kidney over: the kidney and a pixel around it (its
    partial-volume edge), softened, so no kidney outline is left to see; zero for other lesions."""
    grown = _dilate(local) & replacing[:, None, None]
    return _smoothstep(_gaussian_blur(grown[:, None].float(), 0.7)[:, 0] * 1.6 - 0.3)


def render_lesions(images: torch.Tensor, kidney_masks: torch.Tensor, apply: torch.Tensor, kind,
                   generator: torch.Generator, model: LesionModel = LesionModel()) -> InsertedLesions:
    """Insert one lesion into each chosen image, inside its kidney mask; see `insert_lesions`.

    Only the images that receive a lesion are computed (the random numbers are drawn for all, so an
    image's lesion does not depend on which others receive one); on a GPU, choosing them costs one
    synchronisation.

    Returns:
        InsertedLesions: the images and masks of `insert_lesions` plus each lesion's centre, radius,
        kind, kidney radius, the estimated display scale (for manifests and tests) and the kidney pixels a
        replacing tumor painted over; for images left alone the centre is -1, the radii 0 and the scale NaN.
    """
    _check_inputs(images, kidney_masks, apply)
    device, batch = images.device, images.shape[0]
    kidney_masks, apply = kidney_masks.to(device), apply.to(device).bool()
    tumor = _kind_codes(kind, batch, device)
    draws = _Draws.sample(images, model, generator)
    applied = apply & kidney_masks.flatten(1).any(1)
    chosen = applied.nonzero().squeeze(1)
    out, masks, erased = images.clone(), torch.zeros_like(kidney_masks), torch.zeros_like(kidney_masks)
    centres = torch.full((batch, 2), -1.0, device=device)
    radii, kidney_radius = torch.zeros(batch, device=device), torch.zeros(batch, device=device)
    fat, per_hu = torch.full((batch,), torch.nan, device=device), torch.full((batch,), torch.nan, device=device)
    if len(chosen):
        part = _render(images[chosen], kidney_masks[chosen], tumor[chosen], draws.rows(chosen), model)
        out[chosen], masks[chosen], centres[chosen], erased[chosen] = part.images, part.masks, part.centres, part.erased
        radii[chosen], kidney_radius[chosen] = part.radii, part.kidney_radius
        fat[chosen], per_hu[chosen] = part.scale.fat, part.scale.per_hu
    return InsertedLesions(out, masks, applied, centres, radii, tumor, kidney_radius,
                           DisplayScale(fat, per_hu, model.fat_hu), erased)


def insert_lesions(images: torch.Tensor, kidney_masks: torch.Tensor, apply: torch.Tensor, kind,
                   generator: torch.Generator, model: LesionModel = LesionModel()
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Insert a synthetic tumor or cyst into the kidney of each chosen image of a batch.

    Each lesion grows from a pixel drawn uniformly from the image's kidney mask, with a radius relative to
    that kidney's size, rendered in the image's own display scale (see `estimate_display_scale`) as an
    additive change that keeps the slice's noise, blended with a soft edge and clipped to [0, 1]. It
    stays within the body's wall and leaves bone and dense contrast outside the kidney alone.

    Args:
        images: float [B, 1, H, W] display intensities in [0, 1] (already windowed).
        kidney_masks: bool [B, H, W], the located kidneys (one or both per image).
        apply: bool [B], which images receive a lesion.
        kind: "tumor", "cyst", or a tensor [B] of indices into KINDS (0 tumor, 1 cyst).
        generator: the source of all randomness; it must live on the images' device.
        model: the lesion model.

    Returns:
        The images (same shape, dtype and device; those with `apply` false or an empty kidney mask
        bit-identical) and the lesion masks, bool [B, H, W]: where the blend weight exceeds 0.5
        (empty for unchanged images).
    """
    inserted = render_lesions(images, kidney_masks, apply, kind, generator, model)
    return inserted.images, inserted.masks
