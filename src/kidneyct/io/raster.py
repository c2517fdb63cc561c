"""JPG/PNG slices through Pillow: 8- and 16-bit, grey, RGB(A) or palette; no other decoder runs."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from kidneyct.errors import ImageReadError
from kidneyct.io.budget import check_decoded_size, check_side
from kidneyct.io.files import open_regular
from kidneyct.io.slices import CTSlice
from kidneyct.io.validate import check_slice

DECODERS = ("PNG", "JPEG")  # Pillow plugins allowed to run: the formats kidneyct reads

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
        # Composite on black (CT background is black, transparent pixels carry no anatomy): grey x alpha,
        # in place, so that a 4096-pixel RGBA upload takes no extra full-size copies.
        rgba = image if mode == "RGBA" else image.convert("RGBA")
        pixels = np.asarray(rgba.convert("L"), dtype=np.float32)
        pixels *= np.asarray(rgba.getchannel("A"))
        pixels /= 255.0 * 255.0
        return pixels
    pixels = np.asarray(image.convert("L"), dtype=np.float32)
    pixels /= 255.0
    return pixels


# Bytes per pixel and band of Pillow's modes, for the decoded size a header declares.
_BAND_BYTES = {"I": 4, "F": 4, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
GREY_FLOAT_BYTES = 4  # the slice is held as float32 grey: a 1-band image costs 4 bytes a pixel, not 1
# Decoded bytes per stored byte that PNG (deflate: at most ~1032:1) and Huffman-coded JPEG (at least one bit per
# 8x8 block: at most ~1024:1 for 4:2:0 colour) can reach. A header claiming more pixels than the file can
# hold is a truncated or crafted file, which the decoders would still fill in full-size (a 335-byte JPEG
# claiming 4000x4000 cost 112 MiB to read, ~500 MiB through `predict`).
MAX_COMPRESSION = 2048


def _check_header(path: Path, image: Image.Image, stored_bytes: int) -> None:
    """Refuse from the header alone: sides beyond the limit, more decoded bytes than the budget (the larger
    of the decoded image and its float32 grey copy), more pixels than the file's bytes can encode, several
    frames (an animated PNG, a multi-picture JPEG: which one would be the slice?)."""
    width, height = image.size
    check_side(path, width, height)
    decoded = width * height * len(image.getbands()) * _BAND_BYTES.get(image.mode, 1)
    check_decoded_size(path, max(decoded, width * height * GREY_FLOAT_BYTES), f"a {width}x{height} {image.mode} image")
    if decoded > MAX_COMPRESSION * max(stored_bytes, 1):
        raise ImageReadError(path, f"header claims {width}x{height} pixels ({decoded:,} bytes decoded) in a file of "
                                   f"{stored_bytes:,} bytes, beyond what {image.format} compression can hold: "
                                   "truncated or crafted, not decoded")
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        raise ImageReadError(path, f"{image.format} holds {frames} frames; kidneyct reads one slice per file")


def read_raster(path: str | Path) -> CTSlice:
    """A PNG or JPEG slice as display intensities in [0, 1]. Only those two decoders ever run, whatever the
    file's name; the header is checked (side, decoded-size budget, frames) before any pixel is decoded.

    Args:
        path: the file.

    Returns:
        The slice (`hu` false).
    """
    path = Path(path)
    with _opened(path, DECODERS) as image:
        if image.format == "JPEG" and image.mode == "RGB":
            # libjpeg hands over its luma plane instead of converting to RGB and back: ~40% of a
            # 512 px decode. The same grey levels for grey content (all 200 Kaggle originals);
            # saturated colours (annotations) can differ by a few levels, as RGB clamps them.
            image.draft("L", image.size)
        image.load()
        pixels = _to_unit_grey(image)
    return check_slice(CTSlice(pixels=pixels, hu=False, source=str(path)))


@contextmanager
def _opened(path: Path, formats: tuple[str, ...]) -> Iterator[Image.Image]:
    """The image opened with only the `formats` decoders, its header checked (`_check_header`); any error of
    Pillow's while it is open, or while the caller decodes it, becomes an ImageReadError naming the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with open_regular(path) as handle, Image.open(handle, formats=formats) as image:
                _check_header(path, image, os.fstat(handle.fileno()).st_size)
                yield image
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageReadError(path, f"refused as a possible decompression bomb ({error})") from None
    except UnidentifiedImageError:
        raise ImageReadError(path, "not a readable image (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageReadError(path, f"corrupt or truncated image ({error})") from None
    except Exception as error:  # Pillow's plugins raise other types too (struct.error...) for damaged files
        raise ImageReadError(path, f"corrupt image ({type(error).__name__}: {error})") from None


LABEL_MODES = ("L", "P", "I", "I;16", "I;16B", "I;16L", "I;16N", "1")  # single-channel integer images


def read_label_png(path: str | Path) -> np.ndarray:
    """A label map stored as a PNG (one integer per pixel: 8 or 16 bit grey, or palette indices), as int64
    [H, W]; ImageReadError naming the file for another format, several channels or a damaged file."""
    path = Path(path)
    with _opened(path, ("PNG",)) as image:
        if image.mode not in LABEL_MODES:
            raise ImageReadError(path, f"a {image.mode} PNG: a label map is one integer channel "
                                       "(8 or 16 bit grey, or a palette)")
        image.load()
        return np.asarray(image).astype(np.int64)
