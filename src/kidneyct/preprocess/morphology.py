"""Binary morphology with a Euclidean disk, exact and fast enough to run on every slice at full resolution.

The digital disk of radius r holds the offsets with dy^2 + dx^2 <= r^2. For each column offset dx it
spans the rows |dy| <= h(dx) = floor(sqrt(r^2 - dx^2)), so a dilation by the disk is the union over dx of
the mask dilated vertically by h(dx) and shifted by dx. The vertical dilations are grown one row at a
time and kept for the few distinct h, on rows packed 64 pixels to a word, which makes a dilation about 4r
word-wise ORs instead of a Euclidean distance transform: the same sets as
`distance_transform_edt(~mask) <= r` (and as scipy's binary_dilation with a disk), over 10x faster on
512 px slices. Pixels outside the image are background.

The city-block disk (scipy's 3x3 cross applied n times, which the kidney locator uses) is grown by plain
array shifts, in grey levels too: one grey opening then stands for the binary openings at every threshold.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _half_heights(radius: float) -> list[int]:
    """h(dx) for dx = 0..floor(r): the disk's half height in each column."""
    return [int(np.floor(np.sqrt(radius * radius - dx * dx))) for dx in range(int(np.floor(radius)) + 1)]


def disk_dilation(mask: np.ndarray, radius: float) -> np.ndarray:
    """Pixels within Euclidean distance `radius` of a True pixel of `mask`.

    Args:
        mask: a 2-D boolean array.
        radius: the disk's radius in pixels (may be fractional; below 1 only the mask itself).

    Returns:
        A new boolean array of `mask`'s shape.
    """
    heights = _half_heights(radius)
    reach = heights[0]
    rows, cols = mask.shape
    # Rows packed 8 pixels a byte, with `reach` blank pixels on both sides and whole 64-bit words: a row
    # of the image is then a run of bits in one long stream, and moving it sideways never spills a set bit
    # into the next row.
    width = -(-(cols + 2 * reach) // 64) * 64
    plain = np.zeros((rows + 2 * reach, width), bool)
    plain[reach:reach + rows, reach:reach + cols] = mask
    source = np.packbits(plain, axis=1, bitorder="little")
    grown, done, vertical = source.copy(), 0, {}
    for height in sorted(set(heights)):
        while done < height:  # grown: the mask dilated vertically by `done` rows each way
            done += 1
            grown[done:] |= source[:-done]
            grown[:-done] |= source[done:]
        vertical[height] = grown[reach:reach + rows].reshape(-1).view(np.uint64).copy()
    out = vertical[heights[0]].copy()
    for dx in range(1, reach + 1):
        out |= _shift_bits(vertical[heights[dx]], dx)
        out |= _shift_bits(vertical[heights[dx]], -dx)
    bits = np.unpackbits(out.view(np.uint8).reshape(rows, -1), axis=1, bitorder="little")
    return bits[:, reach:reach + cols].view(bool)


def _shift_bits(words: np.ndarray, shift: int) -> np.ndarray:
    """A little-endian bit stream held in uint64 words, moved `shift` bits up (negative: down); zeros come in."""
    whole, part = divmod(abs(shift), 64)
    out = np.zeros_like(words)
    n = len(words)
    if whole >= n:
        return out
    if shift > 0:
        out[whole:] = words[:n - whole] << np.uint64(part)
        if part:
            out[whole + 1:] |= words[:n - whole - 1] >> np.uint64(64 - part)
    else:
        out[:n - whole] = words[whole:] >> np.uint64(part)
        if part:
            out[:n - whole - 1] |= words[whole + 1:] << np.uint64(64 - part)
    return out


def disk_erosion(mask: np.ndarray, radius: float) -> np.ndarray:
    """Pixels farther than `radius` from every background pixel, the outside of the image counting as
    background (scipy's border_value=0).

    Args:
        mask: a 2-D boolean array.
        radius: the disk's radius in pixels.

    Returns:
        A new boolean array of `mask`'s shape.
    """
    border = int(np.floor(radius)) + 1
    outside = np.pad(~mask, border, constant_values=True)
    return ~disk_dilation(outside, radius)[border:-border, border:-border]


def disk_opening(mask: np.ndarray, radius: float) -> np.ndarray:
    """Binary opening with a disk: removes structures thinner than the disk (the table, its rim, cables)."""
    return disk_dilation(disk_erosion(mask, radius), radius)


def disk_closing(mask: np.ndarray, radius: float) -> np.ndarray:
    """Binary closing with a disk, as if the image went on as background: fills gaps and bays narrower than
    the disk, also where they touch the image's edge."""
    pad = int(np.floor(radius)) + 1  # room for the dilation beyond the edge, which the erosion reads back
    closed = disk_erosion(disk_dilation(np.pad(mask, pad), radius), radius)
    return closed[pad:-pad, pad:-pad]


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """`mask` with every background region that does not reach the image's edge (4-connected) filled: the
    same set as scipy's binary_fill_holes, through one labelling instead of an iterated dilation."""
    labels, count = ndimage.label(~mask)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    edge = edge[edge > 0]
    if len(edge) <= 8:  # the usual case, the air around the patient: a few comparisons beat a lookup
        outside = np.zeros(mask.shape, bool)
        for label in edge:
            outside |= labels == label
        return ~outside
    reaches_edge = np.zeros(count + 1, bool)
    reaches_edge[edge] = True
    return mask | ~reaches_edge[labels]


def largest_component(mask: np.ndarray) -> np.ndarray | None:
    """The largest connected part of `mask` (the first of equal ones), None when it has none."""
    labels, count = ndimage.label(mask)
    if count == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    return labels == int(sizes.argmax()) + 1


def _cross_pass(values: np.ndarray, iterations: int, reduce: np.ufunc, border) -> np.ndarray:
    """`reduce` (np.minimum or np.maximum) of each pixel and its 4 neighbours, `iterations` times over;
    pixels outside the image hold `border`."""
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    out = values
    padded = np.full((values.shape[0] + 2, values.shape[1] + 2), border, values.dtype)
    for _ in range(iterations):
        padded[1:-1, 1:-1] = out
        vertical = reduce(padded[:-2, 1:-1], padded[2:, 1:-1])
        out = reduce(reduce(vertical, padded[1:-1, :-2]), reduce(padded[1:-1, 2:], out))
    return out


def cross_dilation(mask: np.ndarray, iterations: int) -> np.ndarray:
    """scipy's binary_dilation(mask, iterations=iterations) with its default (3x3 cross) structure: the
    pixels within city-block distance `iterations` of `mask`, through plain array shifts (no per-call setup).

    Args:
        mask: a 2-D boolean array.
        iterations: the number of dilations by the cross (at least 1).

    Returns:
        A new boolean array of `mask`'s shape.
    """
    return _cross_pass(mask, iterations, np.maximum, False)


def grey_cross_opening(values: np.ndarray, iterations: int, border: float) -> np.ndarray:
    """Grey-level opening by the city-block disk of radius `iterations` (the cross applied that many times),
    outside the image `border`. A flat opening commutes with thresholds: for every t >= border,
    `grey_cross_opening(v, n, border) > t` is scipy's binary_opening(v > t, cross, iterations=n), so one
    grey opening serves every threshold.

    Args:
        values: a 2-D array.
        iterations: the cross's repetitions (the disk's radius), at least 1.
        border: the value outside the image; below every threshold the result is compared with.

    Returns:
        A new array of `values`' shape and dtype.
    """
    eroded = _cross_pass(values, iterations, np.minimum, border)
    return _cross_pass(eroded, iterations, np.maximum, border)
