"""Grad-CAM heatmaps (MONAI's implementation): where the model looked for its answer (drawn by
kidneyct.inference.overlay).

Each registered model names its default target layer (`ModelSpec.cam_layer`). Heatmaps come at the
model's input size, scaled to [0, 1] per slice (an all-zero map stays zero: nothing supported the class).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from kidneyct.checkpoint.model import LoadedModel
from kidneyct.preprocess import Preprocessing

# Heatmaps average over the mirrored slice and shifts of this fraction of the side (each axis, both
# ways): the left-right flip and the +-5% translations the models are trained with (`Augmentation`).
CAM_SHIFT = 0.05


def _unit_range(maps: torch.Tensor) -> torch.Tensor:
    """Per-map min-max scaling to [0, 1]. MONAI's default normaliser maps max to 0 (inverted)."""
    flat = maps.flatten(1)
    low, high = flat.min(1).values, flat.max(1).values
    span = torch.where(high > low, high - low, torch.ones_like(high))
    scaled = (flat - low[:, None]) / span[:, None]
    return torch.where((high > low)[:, None], scaled, torch.zeros_like(scaled)).view_as(maps)


def _shifted(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Images [..., H, W] moved down by dy and right by dx pixels; vacated pixels are 0 (air, as in
    training augmentation)."""
    out = np.zeros_like(images)
    h, w = images.shape[-2:]
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        images[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


class _Stop(Exception):
    """Raised by a forward hook to end a probe's forward pass at the target layer."""


def _linearised(model: torch.nn.Module) -> torch.nn.Module:
    """A float64 copy whose gradients depend on the architecture alone: activations become identities
    and max-pooling (which routes gradients to one pixel) becomes average pooling."""
    probe = copy.deepcopy(model).eval().double()  # without the activations' clipping values grow fast
    for name, module in list(probe.named_modules()):
        if isinstance(module, torch.nn.MaxPool2d):
            swap = torch.nn.AvgPool2d(module.kernel_size, module.stride, module.padding, module.ceil_mode)
        elif type(module).__module__ == "torch.nn.modules.activation":
            swap = torch.nn.Identity()
        else:
            continue
        parent, _, child = name.rpartition(".")
        setattr(probe.get_submodule(parent) if parent else probe, child, swap)
    return probe


def feature_grid(model: torch.nn.Module, layer: str, image_size: int, channels: int = 1,
                 max_size: int = 2048) -> tuple[float, float] | None:
    """(offset, stride): cell i of `layer`'s output is centred on input pixel offset + stride * i.

    Measured, not assumed: on a linearised copy the input gradient of one cell covers exactly its
    receptive field. The first cells' far edges and the last cell's near edge give stride and centre
    (the other edges lie outside the image). None when no input up to `max_size` shows them (e.g. a
    global operation before the layer); the caller then keeps MONAI's plain resize.
    """
    probe = _linearised(model)
    target = probe.get_submodule(layer)
    size = image_size
    while size <= max_size:
        # Only widths grow: square geometry is assumed, and a strip costs far less than a square.
        x = torch.zeros(1, channels, image_size, size, dtype=torch.float64, requires_grad=True)
        captured = {}

        def stop(_module, _inputs, output):
            captured["out"] = output
            raise _Stop

        handle = target.register_forward_hook(stop)
        try:
            probe(x)
        except _Stop:
            pass
        finally:
            handle.remove()
        out = captured["out"]
        n = out.shape[-1]
        if n >= 3:
            def columns(i: int) -> np.ndarray:
                grad, = torch.autograd.grad(out[0, :, out.shape[-2] // 2, i].sum(), x, retain_graph=True)
                return np.flatnonzero(grad[0].abs().sum((0, 1)).numpy() > 0)

            first, second, last = columns(0), columns(1), columns(n - 1)
            if len(first) and len(last) and second[-1] < size - 1 and last[0] > 0:
                stride = float(second[-1] - first[-1])
                return float(first[-1] + last[0] - stride * (n - 1)) / 2, stride
        size *= 2
    return None


def aligned_resize(maps: torch.Tensor, size, grid: tuple[float, float]) -> torch.Tensor:
    """Bilinear resize that puts each cell's value on the centre of its receptive field (edge cells'
    values extend to the borders). A plain resize assumes cells tile the image, which shifts or
    stretches maps by up to half a cell (16 px at stride 32) for padded or 'valid' convolutions."""
    offset, stride = grid
    n_y, n_x = maps.shape[-2:]
    ys = (torch.arange(size[0], dtype=torch.float32) - offset) / stride
    xs = (torch.arange(size[1], dtype=torch.float32) - offset) / stride
    # grid_sample with align_corners=True: -1 and 1 are the centres of the first and last cells.
    gy, gx = 2 * ys / max(n_y - 1, 1) - 1, 2 * xs / max(n_x - 1, 1) - 1
    sample = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), -1)[None].expand(len(maps), -1, -1, -1)
    return F.grid_sample(maps, sample.to(maps), mode="bilinear", padding_mode="border", align_corners=True)


class GradCamExplainer:
    """Grad-CAM for a model and one of its layers (default: the model's registered `cam_layer`).

    "Augmented Grad-CAM" over the transformations the models are trained with: with `flip` (default)
    the map of the mirrored slice, mirrored back, is added; with `shift` (default CAM_SHIFT, a fraction
    of the side; 0: off) so are the maps of the slice moved by +-shift along each axis, moved back
    (3 x 3 positions). Each map is scaled to [0, 1] before the sum. Evidence tied to the lesion appears
    in every map; artefacts of a position in the coarse grid (padding, cell borders) rarely do, and
    the shifted grids sample the image between the cell centres of one map (at stride 32, a single
    map's peak can only fall on a cell centre). Costs 2 x 9 backward passes per slice by default.
    """

    def __init__(self, model: torch.nn.Module, preprocessing: Preprocessing, layer: str,
                 device: str | torch.device = "cpu", flip: bool = True, shift: float = CAM_SHIFT):
        from monai.visualize import GradCAM  # imported here: MONAI takes seconds to import
        from monai.visualize.class_activation_maps import ModelWithHooks

        class LogOddsHooks(ModelWithHooks):
            """Explain the log-odds of the class against the rest, not its raw logit: evidence that
            raises every logit alike (and so no probability) drops out, and unlike log p it does not
            saturate for confident predictions."""

            def class_score(self, logits, class_idx):
                others = torch.cat([logits[:, :class_idx], logits[:, class_idx + 1:]], 1)
                # [B, 1, 1, 1]: Grad-CAM++ multiplies the gradients [B, C, H, W] by exp(score), which
                # MONAI's [B]-shaped default only broadcasts for a batch of one.
                return (logits[:, class_idx] - torch.logsumexp(others, 1)).view(-1, 1, 1, 1)

        layers = dict(model.named_modules())
        if layer not in layers:
            convolutions = [n for n, m in layers.items() if isinstance(m, torch.nn.Conv2d)]
            raise ValueError(f"no layer {layer!r} in the model; its last convolutions are "
                             + ", ".join(convolutions[-4:]))
        # A private copy: the hooks MONAI registers stay off the model used for prediction.
        self.model = copy.deepcopy(model).to(device).eval()
        self.preprocessing = preprocessing
        self.layer = layer
        self.device = torch.device(device)
        # Measured before MONAI's hooks go on: a full backward hook on the layer (copied into the probe)
        # cut the probe's gradients for some layers (EfficientNet's bn2), which silently lost the grid.
        self.grid = feature_grid(self.model, layer, preprocessing.image_size)
        hooks = LogOddsHooks(self.model, layer, register_forward=True, register_backward=True)
        # Maps are scaled to [0, 1] after the flip average, so the raw maps pass through MONAI as they are.
        self.cam = GradCAM(nn_module=hooks, target_layers=layer, postprocessing=lambda maps: maps,
                           upsampler=self._upsampler)
        self.flip = flip
        self.shift_px = int(round(shift * preprocessing.image_size))

    def _upsampler(self, size):
        if self.grid is None:
            return lambda maps: F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
        return lambda maps: aligned_resize(maps, size, self.grid)

    @classmethod
    def from_loaded(cls, loaded: LoadedModel, layer: str | None = None, device="cpu",
                    flip: bool = True, shift: float = CAM_SHIFT) -> "GradCamExplainer":
        return cls(loaded.model, loaded.checkpoint.preprocessing, layer or loaded.cam_layer,
                   device, flip, shift)

    def _maps(self, images: np.ndarray, target: int) -> torch.Tensor:
        x = self.preprocessing.batch_to_tensor(images, self.device)
        x.requires_grad_(True)  # frozen backbones have no parameter needing gradients: the input must
        maps = self.cam(x=x, class_idx=target).detach()
        self.model.zero_grad(set_to_none=True)
        return maps

    def heatmaps(self, images: np.ndarray, class_indices, batch_size: int = 16) -> np.ndarray:
        """Heatmaps [N, S, S] in [0, 1] for uint8 images [N, S, S], each for its own target class."""
        class_indices = np.asarray(class_indices)
        out = np.zeros(images.shape, np.float32)
        with torch.enable_grad():
            # MONAI indexes the logits with one class for the whole batch: group the batch by class.
            for target in np.unique(class_indices):
                rows = np.flatnonzero(class_indices == target)
                for start in range(0, len(rows), batch_size):
                    chosen = rows[start:start + batch_size]
                    out[chosen] = self._augmented(images[chosen], int(target))
        return out

    def _augmented(self, images: np.ndarray, target: int) -> np.ndarray:
        offsets = sorted({-self.shift_px, 0, self.shift_px})
        total = np.zeros(images.shape, np.float32)
        for mirror in (False, True) if self.flip else (False,):
            view = np.ascontiguousarray(images[:, :, ::-1]) if mirror else images
            for dy in offsets:
                for dx in offsets:
                    moved = _shifted(view, dy, dx) if dy or dx else view
                    maps = _unit_range(self._maps(moved, target))[:, 0].cpu().numpy()
                    maps = _shifted(maps, -dy, -dx) if dy or dx else maps
                    total += maps[:, :, ::-1] if mirror else maps
        return _unit_range(torch.from_numpy(total)[:, None])[:, 0].numpy()
