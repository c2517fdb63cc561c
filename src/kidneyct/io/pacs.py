"""DICOM as a PACS exports it: files named by UIDs or by nothing, several series in one folder, a DICOMDIR
index. Only headers are read here (no pixels): which files form which series."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from kidneyct.errors import ImageReadError
from kidneyct.io.files import open_regular
from kidneyct.io.sniff import looks_like_dicom


def series_uid(path: Path) -> str:
    """The SeriesInstanceUID of a DICOM file ('' when it has none), from its header alone.

    Raises:
        ImageReadError: the header cannot be read.
    """
    import pydicom  # deferred: slice-image work never loads the DICOM stack

    try:
        with open_regular(path) as handle:
            ds = pydicom.dcmread(handle, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"],
                                 force=looks_like_dicom(path))
    except Exception as error:  # pydicom raises many types for damaged files
        raise ImageReadError(path, f"not a readable DICOM file ({type(error).__name__}: {error})") from None
    return str(ds.get("SeriesInstanceUID", "") or "")


def group_series(files: list[Path]) -> list[tuple[str, list[Path]]]:
    """The DICOM files of one folder split by SeriesInstanceUID: [(uid, files)], largest series first.

    A file whose header cannot be read, or names no series, joins the first series, whose reading then
    reads it or reports it as skipped with the reader's reason (a series loses only its unreadable files)."""
    groups: dict[str, list[Path]] = defaultdict(list)
    unplaced = []
    for path in files:
        try:
            uid = series_uid(path)
        except ImageReadError:
            uid = ""
        (groups[uid] if uid else unplaced).append(path)
    ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    if not ordered:
        return [("", unplaced)] if unplaced else []
    ordered[0] = (ordered[0][0], ordered[0][1] + unplaced)
    return ordered


def dicomdir_series(dicomdir: Path) -> list[tuple[str, list[Path]]]:
    """The image files a DICOMDIR lists, grouped by the SeriesInstanceUID of their series record.

    Raises:
        ImageReadError: the DICOMDIR cannot be read or lists no image.
    """
    import pydicom
    from pydicom.fileset import FileSet

    try:
        fileset = FileSet(pydicom.dcmread(dicomdir))
        groups: dict[str, list[Path]] = defaultdict(list)
        for instance in fileset:
            if instance.node.record_type == "IMAGE":
                groups[str(instance.SeriesInstanceUID)].append(Path(instance.path))
    except Exception as error:  # damaged or non-conformant media index
        raise ImageReadError(dicomdir, f"unreadable DICOMDIR ({type(error).__name__}: {error})") from None
    if not groups:
        raise ImageReadError(dicomdir, "DICOMDIR lists no image")
    return sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
