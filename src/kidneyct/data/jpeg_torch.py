"""Batched JPEG decoding with torchvision (nvjpeg when the device is CUDA), then Preprocessing.to_uint8's
pad-and-resize in torch (`resize_batch_to_uint8`).

Agrees with the Pillow path (read_raster + Preprocessing.to_uint8) to within one grey level: both take
the JPEG's luma, pad with black and resize with an antialiased bilinear (triangle) filter. Files this
path cannot take (not 8-bit grey/YCbCr, corrupt, too small or too large) come back as None and go
through the Pillow reader, which names the reason if it fails too.
"""

from __future__ import annotations

import struct
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from kidneyct.data.catalogue import Sample
from kidneyct.io.budget import MAX_SIDE
from kidneyct.io.sniff import file_format
from kidneyct.preprocess import Preprocessing, resize_batch_to_uint8

# Start-of-frame markers (C0-CF) except DHT (C4), JPG (C8) and DAC (CC), which share the range.
_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def is_plain_jpeg(sample: Sample) -> bool:
    return sample.slice_index is None and file_format(sample.path) == "jpeg"


def jpeg_header(data: bytes) -> tuple[int, int, int, int] | None:
    """(bits per sample, height, width, components) from the start-of-frame segment, or None."""
    if data[:2] != b"\xff\xd8":
        return None
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        length = struct.unpack(">H", data[position + 2:position + 4])[0]
        if marker in _SOF:
            if position + 10 > len(data):
                return None
            precision, height, width, components = struct.unpack(">BHHB", data[position + 4:position + 10])
            return precision, height, width, components
        position += 2 + length
    return None


def read_jpeg_bytes(path: str) -> torch.Tensor | None:
    """The file as a uint8 tensor when torchvision can decode it to what Pillow would, else None."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    header = jpeg_header(data)
    if header is None:
        return None
    precision, height, width, components = header
    if precision != 8 or components not in (1, 3) or min(height, width) < 8 or max(height, width) > MAX_SIDE:
        return None
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def _decode(datas: list[torch.Tensor], device) -> list[torch.Tensor | None]:
    from torchvision.io import ImageReadMode, decode_jpeg  # imported here for start-up speed: torch path only

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision 0.29 flags its decoders as deprecated
        try:
            return list(decode_jpeg(datas, mode=ImageReadMode.GRAY, device=device))
        except RuntimeError:
            pass  # one bad file fails a whole batch: retry one by one to keep the good ones
        decoded = []
        for data in datas:
            try:
                decoded.append(decode_jpeg(data, mode=ImageReadMode.GRAY, device=device))
            except RuntimeError:
                decoded.append(None)
        return decoded


def decode_batch(datas: list[torch.Tensor | None], prep: Preprocessing, device) -> list[np.ndarray | None]:
    results: list[np.ndarray | None] = [None] * len(datas)
    good = [i for i, data in enumerate(datas) if data is not None]
    if not good:
        return results
    by_shape: dict[tuple[int, ...], list[tuple[int, torch.Tensor]]] = {}
    for i, image in zip(good, _decode([datas[i] for i in good], device)):
        if image is not None:
            by_shape.setdefault(tuple(image.shape), []).append((i, image))
    for items in by_shape.values():
        unit = torch.stack([image for _, image in items]).float().div_(255.0)
        out = resize_batch_to_uint8(unit, prep.image_size).cpu().numpy()
        for (i, _), array in zip(items, out):
            results[i] = array
    return results


def decode_jpeg_files(paths: list[str], prep: Preprocessing, device: torch.device | str = "cpu",
                      batch_size: int = 256, threads: int = 8) -> Iterator[tuple[int, np.ndarray | None]]:
    """(position, uint8 image or None) for each path; reading the next batch overlaps decoding this one."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        pending = [pool.submit(read_jpeg_bytes, p) for p in paths[:batch_size]]
        for start in range(0, len(paths), batch_size):
            datas = [future.result() for future in pending]
            following = paths[start + batch_size:start + 2 * batch_size]
            pending = [pool.submit(read_jpeg_bytes, p) for p in following]
            yield from enumerate(decode_batch(datas, prep, device), start)
