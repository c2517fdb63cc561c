"""One entry point for every supported file: a path becomes its CTSlice objects, the reader chosen from the
file's content (`sniff_format`), never from its name alone."""

from __future__ import annotations

from pathlib import Path

from kidneyct.errors import ImageReadError, NotRegularFile
from kidneyct.io.dicom import read_dicom, read_series
from kidneyct.io.files import file_problem
from kidneyct.io.nifti import read_nifti
from kidneyct.io.raster import read_raster
from kidneyct.io.slices import CTSlice
from kidneyct.io.sniff import sniff_format


def read_slices(path: str | Path, indices: list[int] | None = None, allow_non_ct: bool = False) -> list[CTSlice]:
    """All slices of a file (or the chosen ones of a volume).

    Args:
        path: a file, or a DICOM series folder.
        indices: slices wanted from a volume or series (default all).
        allow_non_ct: read non-CT DICOM (scaled to [0, 1]) instead of refusing it.

    Returns:
        The slices, each checked (2-D, finite, large enough). Raises ImageReadError naming the file.
    """
    path = Path(path)
    if path.is_dir():
        slices = read_series(path)
        return slices if indices is None else [slices[i] for i in indices]
    if not path.exists():
        raise ImageReadError(path, "file not found")
    problem = file_problem(path)
    if problem is not None:
        raise NotRegularFile(path, problem)
    if path.stat().st_size == 0:
        raise ImageReadError(path, "file is empty (0 bytes)")
    try:
        fmt = sniff_format(path)
    except OSError as error:
        raise ImageReadError(path, f"cannot open the file ({error.strerror or error})") from None
    if fmt == "nifti":
        return read_nifti(path, indices)
    if fmt == "dicom":
        return [read_dicom(path, allow_non_ct)]
    if fmt in ("png", "jpeg"):
        return [read_raster(path)]
    raise ImageReadError(path, "not a readable image (unknown format: not PNG, JPEG, DICOM or NIfTI)")
