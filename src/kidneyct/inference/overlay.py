"""Heatmap overlays drawn for people: the model's input slice with a heatmap blended in, captioned. Pillow and
matplotlib's colour map only (no torch): a report or a key image of an ONNX prediction draws with them too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

OVERLAY_SIDE = 256  # overlays are drawn at least this large so the caption stays readable
OVERLAY_ALPHA = 0.45


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def overlay_image(image: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """RGB uint8: the grey slice with the heatmap blended in (jet colour map)."""
    from matplotlib import colormaps  # imported here for start-up speed: only overlays need matplotlib

    grey = np.repeat(image[..., None].astype(np.float32) / 255.0, 3, axis=2)
    colour = colormaps["jet"](np.clip(heatmap, 0, 1))[..., :3]
    return np.clip(np.rint(((1 - OVERLAY_ALPHA) * grey + OVERLAY_ALPHA * colour) * 255), 0, 255).astype(np.uint8)


def overlay_panel(image: np.ndarray, heatmap: np.ndarray, lines: list[tuple[str, int, tuple]]) -> Image.Image:
    """The model's input slice beside its Grad-CAM overlay, under caption lines (text, font size, RGB colour).

    Args:
        image: the model's uint8 input [S, S].
        heatmap: its Grad-CAM map [S, S] in [0, 1].
        lines: the caption, one (text, font size, colour) per line.

    Returns:
        An RGB image, two squares of at least OVERLAY_SIDE pixels under the caption.
    """
    side = max(OVERLAY_SIDE, image.shape[0])
    grey = Image.fromarray(image).convert("RGB").resize((side, side), Image.Resampling.BILINEAR)
    cam = Image.fromarray(overlay_image(image, heatmap)).resize((side, side), Image.Resampling.BILINEAR)
    caption = 3 + sum(size + 3 for _, size, _ in lines) + 4  # two lines (16, 11 pt): the 40 px it always was
    canvas = Image.new("RGB", (2 * side, side + caption), "black")
    canvas.paste(grey, (0, caption))
    canvas.paste(cam, (side, caption))
    draw = ImageDraw.Draw(canvas)
    y = 3
    for text, size, colour in lines:
        draw.text((6, y), text, fill=colour, font=_font(size))
        y += size + 3
    return canvas


def write_overlay(image: np.ndarray, heatmap: np.ndarray, class_name: str, probability: float, path: Path,
                  source: str = "") -> Path:
    """A PNG with the model's input slice, the Grad-CAM overlay and the predicted class and probability."""
    canvas = overlay_panel(image, heatmap, [
        (f"{class_name} {probability:.3f}", 16, "white"),
        ((Path(source).name if source else "")[:60] + "  Grad-CAM, not a diagnosis", 11, (200, 200, 200))])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
