"""Acquisition augmentation: random changes of what differs between scanners, reconstructions and exports.

With few tumor series, every Tumor slice shares one of a handful of acquisitions, so a model can tell the
classes apart by field of view, sharpness, noise texture, display window or JPEG history instead of by the
kidney. These augmentations vary exactly those properties, per sample and on the images' device, so that
none of them stays a reliable cue.

The families run in the order an image is made, so that each acts on what came before it as it would in a
real pipeline:

1. ``fov``: the reconstruction's display field of view (zoom in or out, small offset, black padding).
2. ``resolution``, ``blur``, ``sharpen``: the scanner's resolution and the reconstruction kernel.
3. ``noise``: quantum noise and its texture (white or correlated, as kernels shape it); after the kernel
   stages so blurring does not wipe it out (its texture has its own parameter).
4. ``window``, ``gamma``: the display window and transfer curve chosen at export; after noise, so a narrow
   window amplifies noise as it does on a real console.
5. ``jpeg``: lossy compression, the last step of an export.

All spatial lengths (blur and sharpening sigmas, noise correlation, resolution, JPEG blocks) are given in
pixels of an image of ``reference_side`` pixels (the 256 px Kaggle exports) and scaled to the input's
size, so a preset means the same physical change at every model input size; a change finer than the
input's pixels then fades out, as it would for a real image resized to that size.

Works on [B, 1, H, W] display images in [0, 1] where air (outside the body) is black, before
standardisation. Imports only torch, so it can move with the preprocessing package. In a training step,
like `Augmentation`: draw for the global batch, apply this rank's rows::

    params = policy.sample(len(index), generator, generator.device)
    images = policy.apply(images, params[local])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn.functional as F

from kidneyct.preprocess.label_warp import warp_labels

# Application order: an export pipeline's (see the module docstring).
FAMILIES = ("fov", "resolution", "blur", "sharpen", "noise", "window", "gamma", "jpeg")

# The parameter columns of each family, after its on/off flag.
COLUMNS = {
    "fov": ("scale", "shift_x", "shift_y"),
    "resolution": ("factor",),
    "blur": ("sigma",),
    "sharpen": ("sigma", "amount"),
    "noise": ("sigma", "correlation", "seed"),
    "window": ("level_shift", "width_ratio"),
    "gamma": ("gamma",),
    "jpeg": ("quality",),
}


def _spans() -> dict[str, tuple[int, int]]:
    """Family -> (column of its on/off flag, end of its parameter columns) in a `sample` row."""
    spans, start = {}, 0
    for family in FAMILIES:
        spans[family] = (start, start + 1 + len(COLUMNS[family]))
        start = spans[family][1]
    return spans


SPANS = _spans()
PARAMS = max(stop for _, stop in SPANS.values())  # columns of a `sample` row

# Baseline JPEG luminance quantisation table (ITU-T T.81 Annex K, table K.1), row-major.
JPEG_LUMA_TABLE = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)


@dataclass(frozen=True)
class AcquisitionAugmentation:
    """Random acquisition and export changes, batched per sample, on [B, 1, H, W] images in [0, 1].

    Each family applies to a sample with probability ``<family>_p`` and draws its strength from the
    ranges below (``(low, high)`` uniform, or log-uniform for ratios; a single number ``a`` means
    ``(-a, a)``). Every family's draws are made whether it is on or not, so switching one family off
    leaves the others' draws, and so their images, unchanged.

    Args:
        fov_p: probability of a field-of-view change.
        fov_scale: zoom range (log-uniform); below 1 the body shrinks in a black frame, above 1 it is cropped.
        fov_shift: largest offset of the zoomed image, as a share of the side.
        resolution_p: probability of a resolution loss.
        resolution_factor: share of the reference side's resolution kept (area down, bilinear up).
        blur_p: probability of a Gaussian blur (a smooth reconstruction kernel).
        blur_sigma: blur sigma range, reference pixels.
        sharpen_p: probability of unsharp-mask sharpening (a sharp reconstruction kernel).
        sharpen_sigma: sigma range of the unsharp mask's blur, reference pixels.
        sharpen_amount: range of the share of the high-pass image added back.
        noise_p: probability of added Gaussian noise inside the body.
        noise_sigma: noise standard deviation range, [0, 1] display units.
        noise_correlation: range of the sigma of the Gaussian that colours the noise, reference pixels
            (0: white noise); the noise is renormalised to its drawn standard deviation.
        window_p: probability of a re-windowing.
        window_level_shift: largest level shift, as a share of the current window's width.
        window_width_ratio: new width / current width range (log-uniform); below 1 saturates.
        gamma_p: probability of a gamma curve.
        gamma_log: the exponent is exp(u) with u uniform in [-gamma_log, gamma_log].
        jpeg_p: probability of a JPEG re-compression.
        jpeg_quality: JPEG quality range (IJG scale, 1-100; rounded to an integer as encoders take it).
        reference_side: side, in pixels, that the spatial ranges refer to.
        body_threshold: [0, 1] intensity above which a pixel is body (noise and windowing act there only).
    """

    fov_p: float = 0.0
    fov_scale: tuple[float, float] = (0.75, 1.25)
    fov_shift: float = 0.05
    resolution_p: float = 0.0
    resolution_factor: tuple[float, float] = (0.5, 1.0)
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.3, 1.0)
    sharpen_p: float = 0.0
    sharpen_sigma: tuple[float, float] = (0.6, 1.5)
    sharpen_amount: tuple[float, float] = (0.3, 1.0)
    noise_p: float = 0.0
    noise_sigma: tuple[float, float] = (0.01, 0.04)
    noise_correlation: tuple[float, float] = (0.0, 1.5)
    window_p: float = 0.0
    window_level_shift: float = 0.1
    window_width_ratio: tuple[float, float] = (0.6, 1.5)
    gamma_p: float = 0.0
    gamma_log: float = 0.3
    jpeg_p: float = 0.0
    jpeg_quality: tuple[float, float] = (30.0, 95.0)
    reference_side: int = 256
    body_threshold: float = 0.03

    def __post_init__(self):
        for family in FAMILIES:
            _check_range(f"{family}_p", (getattr(self, f"{family}_p"),) * 2, 0.0, 1.0)
        for name, low, high in _RANGE_BOUNDS:
            value = getattr(self, name)
            _check_range(name, value if isinstance(value, tuple) else (value, value), low, high)
        if self.reference_side < 8:
            raise ValueError(f"reference_side must be at least 8, got {self.reference_side}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "AcquisitionAugmentation":
        """Inverse of `to_dict`, also after JSON (lists back to tuples); unknown keys are ignored."""
        kinds = {f.name: isinstance(f.default, tuple) for f in fields(cls)}
        return cls(**{k: (tuple(v) if kinds[k] else v) for k, v in values.items() if k in kinds})

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.apply(images, self.sample(images.shape[0], generator, images.device))

    def sample(self, batch: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """Random parameters, one row per image.

        Args:
            batch: number of rows; draw them for a whole global batch and apply each rank's rows, so an
                image's augmentation does not depend on the number of ranks.
            generator: source of randomness (on `device`); the same state gives the same rows.
            device: where the rows are made.

        Returns:
            float32 [batch, PARAMS]: per family (in FAMILIES order) an on/off flag, then its parameters.
        """

        def uniform(low: float, high: float) -> torch.Tensor:
            return torch.rand(batch, generator=generator, device=device) * (high - low) + low

        columns = []
        for family in FAMILIES:
            columns.append((uniform(0.0, 1.0) < getattr(self, f"{family}_p")).float())
            columns.extend(self._draw(family, uniform))
        return torch.stack(columns, 1)

    def _draw(self, family: str, uniform: Callable[[float, float], torch.Tensor]) -> list[torch.Tensor]:
        def log_uniform(low: float, high: float) -> torch.Tensor:
            return uniform(math.log(low), math.log(high)).exp()

        if family == "fov":
            shift = self.fov_shift
            return [log_uniform(*self.fov_scale), uniform(-shift, shift), uniform(-shift, shift)]
        if family == "resolution":
            return [uniform(*self.resolution_factor)]
        if family == "blur":
            return [uniform(*self.blur_sigma)]
        if family == "sharpen":
            return [uniform(*self.sharpen_sigma), uniform(*self.sharpen_amount)]
        if family == "noise":  # the seed: 24 random bits, exact in float32
            return [uniform(*self.noise_sigma), uniform(*self.noise_correlation), uniform(0, 2**24).floor()]
        if family == "window":
            shift = self.window_level_shift
            return [uniform(-shift, shift), log_uniform(*self.window_width_ratio)]
        if family == "gamma":
            return [uniform(-self.gamma_log, self.gamma_log).exp()]
        return [uniform(*self.jpeg_quality)]

    def apply(self, images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Augment images with rows from `sample` (row i for image i).

        Args:
            images: [B, 1, H, W] floating point, in [0, 1], black (0) outside the body.
            params: [B, PARAMS] from `sample` (or the rows of a larger `sample` that belong to these images).

        Returns:
            The augmented images, same shape, dtype and device, in [0, 1]; a sample with every family off
            comes back bit-identical.
        """
        if images.ndim != 4 or images.shape[1] != 1 or not images.is_floating_point():
            raise ValueError(f"expected float images [B, 1, H, W], got {images.dtype} {tuple(images.shape)}")
        if params.shape != (images.shape[0], PARAMS):
            raise ValueError(f"expected params [{images.shape[0]}, {PARAMS}], got {tuple(params.shape)}")
        work = torch.float64 if images.dtype == torch.float64 else torch.float32  # half types: compute in float32
        out = images.to(work)
        params = params.to(images.device, work)
        for family, (flag, stop) in SPANS.items():
            stage = getattr(self, f"_{family}")
            out = _on_rows(out, params[:, flag] > 0.5, params[:, flag + 1:stop], stage)
        return out.to(images.dtype)

    def _scale(self, images: torch.Tensor) -> float:
        """Image pixels per reference pixel."""
        return max(images.shape[-2:]) / self.reference_side

    def apply_masks(self, masks: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Move label maps [B, H, W] as `apply` moves their images (the same rows of `sample`): only the field
        of view moves pixels; the other families change grey values (or blur them in place)."""
        flag, stop = SPANS["fov"]
        params = params.to(masks.device, torch.float32)
        return _on_rows(masks, params[:, flag] > 0.5, params[:, flag + 1:stop],
                        lambda rows, p: warp_labels(rows, _fov_theta(p)))

    def _fov(self, images: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        scale = p[:, 0]
        # Anti-alias before zooming out: the output's pixel spacing is 1/scale input pixels.
        images = gaussian_blur(images, 0.5 * (1.0 / scale**2 - 1.0).clamp(min=0.0).sqrt())
        grid = F.affine_grid(_fov_theta(p), list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp(0, 1)

    def _resolution(self, images: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        kept = (p[:, 0] / self._scale(images)).clamp(max=1.0)  # share of this image's pixels kept
        rows = down_up_matrix(torch.round(kept * height).clamp(min=1).long(), height).to(images.dtype)
        cols = down_up_matrix(torch.round(kept * width).clamp(min=1).long(), width).to(images.dtype)
        return (rows @ images[:, 0] @ cols.transpose(1, 2)).unsqueeze(1).clamp(0, 1)

    def _blur(self, images: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return gaussian_blur(images, p[:, 0] * self._scale(images)).clamp(0, 1)

    def _sharpen(self, images: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        sigma, amount = p.unbind(1)
        detail = images - gaussian_blur(images, sigma * self._scale(images))
        return (images + amount.view(-1, 1, 1, 1) * detail).clamp(0, 1)

    def _noise(self, images: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        sigma, correlation, seed = p.unbind(1)
        noise = hashed_normal(seed, images.shape[-2:]).to(images.dtype)
        kernels = _fitting_kernels(images, correlation * self._scale(images))
        # White noise convolved with a 2-D kernel k has standard deviation ||k||_2, which for a separable
        # kernel is the sum of squares of its 1-D factor: dividing by it restores unit variance.
        noise = separable_conv(noise, kernels) / kernels.square().sum(1).view(-1, 1, 1, 1)
        body = images > self.body_threshold  # air stays black: exports blank it
        return (images + torch.where(body, sigma.view(-1, 1, 1, 1) * noise, 0.0)).clamp(0, 1)

    def _window(self, images: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        level_shift, width_ratio = (v.view(-1, 1, 1, 1) for v in p.unbind(1))
        body = (images > self.body_threshold).to(images.dtype)
        # Centre the new window on the body's mean intensity, so a width change keeps the tissue's overall
        # brightness and a level shift moves it.
        centre = (images * body).sum((1, 2, 3), keepdim=True) / body.sum((1, 2, 3), keepdim=True).clamp(min=1)
        out = ((images - centre - level_shift) / width_ratio + centre).clamp(0, 1)
        # What the exporter clipped to black (air, and fat in narrow windows) cannot be recovered: it stays
        # black under a wider window, with a ramp over [0, threshold] so the map stays continuous.
        return out * (images / self.body_threshold).clamp(0, 1)

    def _gamma(self, images: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return images.clamp(0, 1).pow(p[:, 0].view(-1, 1, 1, 1))

    def _jpeg(self, images: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """Compress at the reference side (exports were compressed at full size, then resized): the
        compression error made there is resized to the image and added, leaving the image otherwise exact."""
        factor = 1.0 / self._scale(images)
        if factor <= 1.0:
            return jpeg_compress(images, p[:, 0])
        size = tuple(round(side * factor) for side in images.shape[-2:])
        large = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        error = F.interpolate(jpeg_compress(large, p[:, 0]) - large, size=images.shape[-2:], mode="area")
        return (images + error).clamp(0, 1)


# Field -> allowed [low, high] of its value or range (validated in AcquisitionAugmentation.__post_init__).
_RANGE_BOUNDS = (
    ("fov_scale", 1e-2, 1e2), ("fov_shift", 0.0, 0.5), ("resolution_factor", 1e-2, 1.0),
    ("blur_sigma", 0.0, 1e2), ("sharpen_sigma", 0.0, 1e2), ("sharpen_amount", 0.0, 1e2),
    ("noise_sigma", 0.0, 1.0), ("noise_correlation", 0.0, 1e2), ("window_level_shift", 0.0, 1.0),
    ("window_width_ratio", 1e-2, 1e2), ("gamma_log", 0.0, 5.0), ("jpeg_quality", 1.0, 100.0),
    ("body_threshold", 1e-6, 1.0),
)


def _check_range(name: str, value: tuple, low: float, high: float) -> None:
    if len(value) != 2 or not low <= value[0] <= value[1] <= high:
        raise ValueError(f"{name} must be a value or (low, high) range within [{low}, {high}], got {value}")


def _fov_theta(p: torch.Tensor) -> torch.Tensor:
    """The field-of-view change's affine maps [B, 2, 3] from its parameter columns (scale, shift_x, shift_y)."""
    scale, shift_x, shift_y = p.unbind(1)
    zero = torch.zeros_like(scale)
    return torch.stack([torch.stack([1.0 / scale, zero, -2.0 * shift_x / scale], 1),
                        torch.stack([zero, 1.0 / scale, -2.0 * shift_y / scale], 1)], 1)


def _on_rows(images: torch.Tensor, on: torch.Tensor, params: torch.Tensor,
             stage: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """`stage` applied to the rows where `on` is set (with their params); the other rows untouched."""
    rows = on.nonzero().squeeze(1)
    if len(rows) == 0:
        return images
    if len(rows) == len(images):
        return stage(images, params)
    out = images.clone()
    out[rows] = stage(images[rows], params[rows])
    return out


def gaussian_kernels(sigma: torch.Tensor) -> torch.Tensor:
    """Normalised 1-D Gaussian kernels, one per sample.

    Args:
        sigma: [B] standard deviations in pixels; 0 gives the identity kernel.

    Returns:
        [B, 2R + 1], R the largest radius; each kernel is cut at its own ceil(3 sigma), so a sample's
        kernel does not depend on the others in its batch.
    """
    sigma = sigma.clamp(min=1e-3)
    radius = torch.ceil(3.0 * sigma)
    largest = max(int(radius.max()), 1)
    offsets = torch.arange(-largest, largest + 1, device=sigma.device, dtype=sigma.dtype)
    weights = torch.exp(-0.5 * (offsets / sigma[:, None]) ** 2) * (offsets.abs() <= radius[:, None])
    return weights / weights.sum(1, keepdim=True)


def separable_conv(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Filter each [1, H, W] image with its own 1-D kernel along both axes (reflected borders).

    A weighted sum of shifted copies: with a few taps this is several times faster on the CPU than a
    grouped convolution with one group per sample, and the same on the GPU.

    Args:
        images: [B, 1, H, W].
        kernels: [B, K], K odd and smaller than 2 * min(H, W).

    Returns:
        [B, 1, H, W].
    """
    height, width = images.shape[-2:]
    size = kernels.shape[1]
    weights = kernels.to(images.dtype).view(-1, size, 1, 1, 1).unbind(1)
    padded = F.pad(images, (size // 2,) * 4, mode="reflect")
    rows = sum(w * padded[..., j:j + width] for j, w in enumerate(weights))
    return sum(w * rows[..., j:j + height, :] for j, w in enumerate(weights))


def _fitting_kernels(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Gaussian kernels no wider than the images allow (reflected padding must stay inside them)."""
    return gaussian_kernels(sigma.clamp(max=(min(images.shape[-2:]) - 1) / 3.0))


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Gaussian blur of [B, 1, H, W] images with per-sample `sigma` [B] (pixels)."""
    return separable_conv(images, _fitting_kernels(images, sigma))


def down_up_matrix(kept: torch.Tensor, size: int) -> torch.Tensor:
    """Per-sample linear operators along one axis: area-downsample `size` pixels to `kept[i]`, then
    bilinear upsample back; the same as F.interpolate(mode="area") followed by
    F.interpolate(mode="bilinear", align_corners=False), but with a different `kept` for every sample.

    Args:
        kept: [B] int64 in [1, size], the low-resolution length.
        size: the axis length.

    Returns:
        float32 [B, size, size]; apply as M @ x along that axis.
    """
    device = kept.device
    low = kept.view(-1, 1, 1)
    index = torch.arange(size, device=device)
    # Area: low-resolution pixel i averages [floor(i*size/kept), ceil((i+1)*size/kept)), as adaptive pooling.
    i, j = index.view(1, -1, 1), index.view(1, 1, -1)
    start, stop = (i * size) // low, ((i + 1) * size + low - 1) // low
    down = ((j >= start) & (j < stop) & (i < low)).float() / (stop - start).clamp(min=1)
    # Bilinear, align_corners=False: output pixel k samples source (k + 0.5) * kept / size - 0.5.
    source = ((index.view(1, -1) + 0.5) * (kept.view(-1, 1).float() / size) - 0.5).clamp(min=0)
    left = source.floor().long()
    right = torch.minimum(left + 1, kept.view(-1, 1) - 1)
    weight = source - left
    up = torch.zeros(len(kept), size, size, device=device)
    up.scatter_add_(2, left.unsqueeze(2), (1 - weight).unsqueeze(2))
    up.scatter_add_(2, right.unsqueeze(2), weight.unsqueeze(2))
    return up @ down


_MASK32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, constant: int) -> torch.Tensor:
    """x * constant modulo 2**32 for x < 2**32, in two 16-bit halves so no int64 product overflows."""
    return (x * (constant & 0xFFFF) + (((x * (constant >> 16)) & 0xFFFF) << 16)) & _MASK32


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (C. Wellons' 'lowbias32'), elementwise on int64 tensors holding uint32 values."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def hashed_normal(seed: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Standard normal noise images that depend only on each sample's seed, made on the seeds' device.

    `apply` has no generator (its rows may be a shard of a global batch), so the noise is a counter-based
    hash of (seed, pixel) through Box-Muller: batched, and the same for a sample in any batch. Each
    uniform has 16 bits, which cuts the tails at 4.9 standard deviations (immaterial for image noise).

    Args:
        seed: [B] non-negative integers below 2**32 (float or int).
        shape: (H, W).

    Returns:
        float32 [B, 1, H, W].
    """
    count = shape[0] * shape[1]
    key = _hash32(seed.long().view(-1, 1))
    pair = _hash32(torch.arange((count + 1) // 2, device=seed.device).view(1, -1))
    bits = _hash32(pair ^ key)  # one hash per pair of pixels and sample: 16 bits for each uniform
    radius = torch.sqrt(-2.0 * torch.log(((bits >> 16).float() + 0.5) / 2**16))
    angle = ((bits & 0xFFFF).float() + 0.5) * (2.0 * math.pi / 2**16)
    # Box-Muller gives two independent normals per pair of uniforms, the cosine and the sine: they fill the
    # two halves of the image, so the pixels that share a radius lie far apart.
    normals = torch.cat([radius * torch.cos(angle), radius * torch.sin(angle)], 1)[:, :count]
    return normals.reshape(-1, 1, *shape)


def jpeg_quantisation_tables(quality: torch.Tensor) -> torch.Tensor:
    """Baseline luminance quantisation tables as libjpeg (and so Pillow) scales them for a quality.

    Args:
        quality: [B] IJG qualities, rounded to integers and clamped to [1, 100].

    Returns:
        [B, 8, 8] divisors in [1, 255].
    """
    quality = quality.round().clamp(1, 100)
    scale = torch.where(quality < 50, torch.floor(5000.0 / quality), 200.0 - 2.0 * quality)
    base = torch.tensor(JPEG_LUMA_TABLE, device=quality.device, dtype=quality.dtype)
    return torch.floor((base * scale.view(-1, 1, 1) + 50.0) / 100.0).clamp(1, 255)


def _dct_matrix(device, dtype) -> torch.Tensor:
    """Orthonormal 8-point DCT-II: row u holds basis u, so coefficients = D @ block @ D.T."""
    n = torch.arange(8, device=device, dtype=torch.float64)
    matrix = torch.cos(math.pi * (2 * n.view(1, -1) + 1) * n.view(-1, 1) / 16) * math.sqrt(2 / 8)
    matrix[0] /= math.sqrt(2.0)
    return matrix.to(dtype)


def jpeg_compress(images: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """Baseline JPEG luma compression and decompression, batched, with a quality per sample.

    The image is rounded to 8 bits, padded to whole 8x8 blocks by repeating the last row and column (as
    libjpeg does), level-shifted, transformed with the 8x8 DCT, quantised with the standard luminance table
    scaled to the quality (rounding half away from zero, as libjpeg), dequantised, inverse transformed and
    rounded back to 8 bits. Entropy coding is lossless and is skipped.

    Args:
        images: [B, 1, H, W] in [0, 1].
        quality: [B] IJG qualities (1-100).

    Returns:
        The decoded images, [B, 1, H, W] in [0, 1], multiples of 1/255.
    """
    batch, _, height, width = images.shape
    pixels = images.clamp(0, 1).mul_(255.0).round_()  # in place where possible: elementwise passes dominate
    if height % 8 or width % 8:
        pixels = F.pad(pixels, (0, -width % 8, 0, -height % 8), mode="replicate")
    padded = pixels.shape[-2:]
    blocks = pixels.view(batch, padded[0] // 8, 8, padded[1] // 8, 8).sub_(128.0)  # [B, rows, 8, columns, 8]
    dct = _dct_matrix(images.device, images.dtype)
    table = jpeg_quantisation_tables(quality.to(images.dtype)).view(batch, 1, 8, 1, 8)
    coefficients = _block_transform(blocks, dct).div_(table)
    levels = torch.trunc(coefficients.add_(torch.copysign(torch.tensor(0.5, dtype=images.dtype), coefficients)))
    decoded = _block_transform(levels.mul_(table), dct.T).add_(128.0).round_().clamp_(0, 255)
    return decoded.view(batch, 1, *padded)[..., :height, :width] / 255.0


def _block_transform(blocks: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """matrix @ block @ matrix.T for every 8x8 block of [B, rows, 8, columns, 8], in place in the image
    layout (no gathering of blocks): two products with the small matrix, one per axis."""
    batch, rows, _, columns, _ = blocks.shape
    across = blocks @ matrix.T
    return (matrix @ across.reshape(batch, rows, 8, columns * 8)).view(batch, rows, 8, columns, 8)


def families(names: Iterable[str], preset: "str | AcquisitionAugmentation" = "strong",
             probability: float | None = None) -> AcquisitionAugmentation:
    """A preset with only the named families on, to measure families one at a time.

    Args:
        names: families to keep (see FAMILIES).
        preset: a name in ACQUISITIONS or an AcquisitionAugmentation, whose ranges are used.
        probability: when given, the named families' probability; otherwise the preset's.

    Returns:
        The preset with every other family's probability set to 0.
    """
    names = set(names)
    unknown = names - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown families {sorted(unknown)}; known: {', '.join(FAMILIES)}")
    if isinstance(preset, str) and preset not in ACQUISITIONS:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(ACQUISITIONS)}")
    base = ACQUISITIONS[preset] if isinstance(preset, str) else preset
    changes = {}
    for family in FAMILIES:
        kept = getattr(base, f"{family}_p") if probability is None else probability
        changes[f"{family}_p"] = kept if family in names else 0.0
    return replace(base, **changes)


# Named presets (stored by name, like AUGMENTATIONS). "mild" stays within what the Kaggle exports
# themselves show; "strong" goes somewhat beyond, so no acquisition property is a safe cue.
ACQUISITIONS: dict[str, AcquisitionAugmentation] = {
    "none": AcquisitionAugmentation(),
    "mild": AcquisitionAugmentation(
        fov_p=0.3, fov_scale=(0.85, 1.15), fov_shift=0.03,
        resolution_p=0.2, resolution_factor=(0.6, 1.0),
        blur_p=0.2, blur_sigma=(0.3, 0.8),
        sharpen_p=0.2, sharpen_sigma=(0.6, 1.2), sharpen_amount=(0.2, 0.6),
        noise_p=0.3, noise_sigma=(0.005, 0.03), noise_correlation=(0.0, 1.0),
        window_p=0.4, window_level_shift=0.05, window_width_ratio=(0.8, 1.25),
        gamma_p=0.3, gamma_log=0.15,
        jpeg_p=0.3, jpeg_quality=(50.0, 95.0),
    ),
    "strong": AcquisitionAugmentation(
        fov_p=0.5, resolution_p=0.3, blur_p=0.3, sharpen_p=0.3, noise_p=0.5, window_p=0.6, gamma_p=0.4,
        jpeg_p=0.5,
    ),
}
