"""DICOM headers with usable identifiers: the Study, Series and SOP UIDs that results refer to.

Anonymisers sometimes blank type-1 UIDs in the dataset (the real example series in shared/ has empty
SOP, Study and Series Instance UIDs; only the file meta keeps the SOP Instance UID). Results must still
name their study and slices, so blanks are filled: SOP UIDs from the file meta, Study and Series UIDs
derived deterministically from what the header does hold. A UID that is not one (letters, a path, more
than 64 characters) is treated as blank: results never carry it, and no file or folder is named after it.
`kidneyct predict` and `kidneyct listen` derive the same UIDs for the same files.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from kidneyct.errors import ImageReadError
from kidneyct.io.dicom_conform import conform_header
from kidneyct.io.files import open_regular

if TYPE_CHECKING:
    import pydicom

log = logging.getLogger(__name__)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
# generate_uid's entropy sources: header values that stay the same across the slices of one study / series.
_STUDY_KEYS = ("PatientID", "PatientName", "StudyDate", "StudyTime", "AccessionNumber", "StudyID",
               "FrameOfReferenceUID")
_SERIES_KEYS = ("SeriesNumber", "SeriesDate", "SeriesTime", "SeriesDescription", "Modality", "FrameOfReferenceUID")


def _text(ds: pydicom.Dataset, keyword: str) -> str:
    return str(ds.get(keyword, "") or "").strip()


def is_valid_uid(text: str) -> bool:
    """A DICOM UID: digits in dot-separated components without leading zeros, at most 64 characters (so
    never empty, '.', '..', a path or anything but digits and dots)."""
    from pydicom.uid import UID

    return isinstance(text, str) and UID(text).is_valid


def _uid(ds: pydicom.Dataset, keyword: str) -> str:
    """The UID in `ds`, '' when blank or not a valid UID."""
    text = _text(ds, keyword)
    return text if is_valid_uid(text) else ""


def _invalid(ds: pydicom.Dataset, keyword: str) -> list[str]:
    """[the value] when `keyword` holds something that is no UID (it then seeds the derived one), else []:
    blank UIDs derive from the other header values alone, as they always have."""
    text = _text(ds, keyword)
    return [ascii(text)] if text and not is_valid_uid(text) else []


def _derived_uid(kind: str, values: list[str]) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[f"kidneyct-derived-{kind}", *values])


def fill_missing_uids(ds: pydicom.Dataset, source: str = "") -> list[str]:
    """Fill blank SOP Class/Instance, Study and Series Instance UIDs in place.

    Args:
        ds: a DICOM dataset (its file_meta is used when present).
        source: a name for log messages.

    Returns:
        The keywords that were filled (empty when the header was complete).
    """
    meta = getattr(ds, "file_meta", None)
    filled = []
    for keyword, meta_keyword in (("SOPClassUID", "MediaStorageSOPClassUID"),
                                  ("SOPInstanceUID", "MediaStorageSOPInstanceUID")):
        if not _uid(ds, keyword) and meta is not None and _uid(meta, meta_keyword):
            setattr(ds, keyword, _uid(meta, meta_keyword))
            filled.append(keyword)
    if not _uid(ds, "SOPClassUID") and _text(ds, "Modality").upper() in ("CT", ""):  # read as CT: named CT
        ds.SOPClassUID = CT_IMAGE_STORAGE
        filled.append("SOPClassUID")
    if not _uid(ds, "StudyInstanceUID"):
        ds.StudyInstanceUID = _derived_uid("study", [*_invalid(ds, "StudyInstanceUID"),
                                                     *(_text(ds, k) for k in _STUDY_KEYS)])
        filled.append("StudyInstanceUID")
    if not _uid(ds, "SeriesInstanceUID"):
        ds.SeriesInstanceUID = _derived_uid("series", [*_invalid(ds, "SeriesInstanceUID"), ds.StudyInstanceUID,
                                                       *(_text(ds, k) for k in _SERIES_KEYS)])
        filled.append("SeriesInstanceUID")
    if not _uid(ds, "SOPInstanceUID"):
        if not _text(ds, "SOPInstanceUID"):
            raise ImageReadError(source or "<dataset>", "no SOP Instance UID in the dataset or its file meta")
        ds.SOPInstanceUID = _derived_uid("instance", [*_invalid(ds, "SOPInstanceUID"), ds.SeriesInstanceUID])
        filled.append("SOPInstanceUID")
    if filled:
        log.debug("%s: filled blank %s", source or "dataset", ", ".join(filled))
    return filled


def read_header(path: str | Path) -> pydicom.Dataset:
    """What results copy from a DICOM file's header: its UIDs (blank or invalid ones filled, see
    `fill_missing_uids`) and its patient, study and equipment attributes conformed to their VRs, the type 2
    ones present (`dicom_conform.conform_header`); `filename` names the file.

    Args:
        path: a DICOM file.

    Returns:
        A new pydicom dataset (no pixel data, no file meta).
    """
    import pydicom

    try:
        with open_regular(path) as handle:
            ds = pydicom.dcmread(handle, stop_before_pixels=True)
    except ImageReadError:
        raise
    except Exception as error:  # pydicom raises many types for damaged files
        raise ImageReadError(path, f"cannot read the DICOM header ({type(error).__name__}: {error})") from None
    fill_missing_uids(ds, str(path))
    header = conform_header(ds)
    header.filename = str(path)
    return header


def series_identity(ds: pydicom.Dataset) -> tuple[str, str]:
    """(Study Instance UID, Series Instance UID) as results will name them, blanks derived as in
    `fill_missing_uids`, without changing `ds`.

    Args:
        ds: a DICOM dataset, e.g. one just received.

    Returns:
        The two UIDs.
    """
    from pydicom.dataset import Dataset

    probe = Dataset()
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", *_STUDY_KEYS, *_SERIES_KEYS):
        if keyword in ds:
            setattr(probe, keyword, ds.get(keyword))
    probe.SOPInstanceUID = _text(ds, "SOPInstanceUID") or "0"  # not used here; keeps the check quiet
    fill_missing_uids(probe)
    return str(probe.StudyInstanceUID), str(probe.SeriesInstanceUID)
