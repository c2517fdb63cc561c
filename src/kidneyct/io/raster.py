"""JPG/PNG slices through Pillow: 8- and 16-bit, grey, RGB(A) or palette."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from kidneyct.errors import ImageReadError
from kidneyct.io.slices import CTSlice

# Far above any CT export (512-1024 px); stops decompression bombs before any pixel is decoded.
MAX_SIDE = 8192

_BIT_DEPTH_MAX = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0}


def _to_unit_grey(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode in _BIT_DEPTH_MAX:
        return np.asarray(image, dtype=np.float32) / _BIT_DEPTH_MAX[mode]
    if mode == "I":  # 32-bit integer PNGs are 16-bit data widened by Pillow
        return np.asarray(image, dtype=np.float32) / 65535.0
    if mode == "F":
        array = np.asarray(image, dtype=np.float32)
        lo, hi = float(array.min()), float(array.max())
        return (array - lo) / (hi - lo) if hi > lo else np.zeros_like(array)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        # Composite on black: CT background is black, transparent pixels carry no anatomy.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image if mode == "L" else image.convert("L"), dtype=np.float32) / 255.0


def read_raster(path: str | Path) -> CTSlice:
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width > MAX_SIDE or height > MAX_SIDE:
                    raise ImageReadError(
                        path, f"image is {width}x{height} pixels, above the {MAX_SIDE}-pixel limit"
                    )
                if image.format == "JPEG" and image.mode == "RGB":
                    # libjpeg hands over its luma plane instead of converting to RGB and back: ~40% of a
                    # 512 px decode. The same grey levels for grey content (all 200 Kaggle originals);
                    # saturated colours (annotations) can differ by a few levels, as RGB clamps them.
                    image.draft("L", image.size)
                image.load()
                pixels = _to_unit_grey(image)
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageReadError(path, f"refused as a possible decompression bomb ({error})") from None
    except UnidentifiedImageError:
        raise ImageReadError(path, "not a readable image (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(path, f"corrupt or truncated image ({error})") from None
    if pixels.ndim != 2 or min(pixels.shape) < 8:
        raise ImageReadError(path, f"image of shape {pixels.shape} is too small to be a CT slice")
    return CTSlice(pixels=pixels, hu=False, source=str(path))
