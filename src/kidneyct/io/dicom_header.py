"""DICOM headers with usable identifiers: the Study, Series and SOP UIDs that results refer to.

Anonymisers sometimes blank type-1 UIDs in the dataset (the real example series in shared/ has empty
SOP, Study and Series Instance UIDs; only the file meta keeps the SOP Instance UID). Results must still
name their study and slices, so blanks are filled: SOP UIDs from the file meta, Study and Series UIDs
derived deterministically from what the header does hold. `kidneyct predict` and `kidneyct listen`
derive the same UIDs for the same files.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from kidneyct.errors import ImageReadError

if TYPE_CHECKING:
    import pydicom

log = logging.getLogger(__name__)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
# generate_uid's entropy sources: header values that stay the same across the slices of one study / series.
_STUDY_KEYS = ("PatientID", "PatientName", "StudyDate", "StudyTime", "AccessionNumber", "StudyID",
               "FrameOfReferenceUID")
_SERIES_KEYS = ("SeriesNumber", "SeriesDate", "SeriesTime", "SeriesDescription", "Modality", "FrameOfReferenceUID")
# Type 2 attributes of the Patient and General Study modules: present, if empty, in a valid image. Results
# copy them from their source, so a source lacking them (phantoms, exports) gets them empty.
PATIENT_STUDY_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                       "ReferringPhysicianName", "StudyID", "AccessionNumber")


def _text(ds: pydicom.Dataset, keyword: str) -> str:
    return str(ds.get(keyword, "") or "").strip()


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
        if not _text(ds, keyword) and meta is not None and _text(meta, meta_keyword):
            setattr(ds, keyword, _text(meta, meta_keyword))
            filled.append(keyword)
    if not _text(ds, "SOPClassUID") and _text(ds, "Modality").upper() == "CT":
        ds.SOPClassUID = CT_IMAGE_STORAGE
        filled.append("SOPClassUID")
    if not _text(ds, "StudyInstanceUID"):
        ds.StudyInstanceUID = _derived_uid("study", [_text(ds, k) for k in _STUDY_KEYS])
        filled.append("StudyInstanceUID")
    if not _text(ds, "SeriesInstanceUID"):
        ds.SeriesInstanceUID = _derived_uid("series", [ds.StudyInstanceUID, *(_text(ds, k) for k in _SERIES_KEYS)])
        filled.append("SeriesInstanceUID")
    if not _text(ds, "SOPInstanceUID"):
        raise ImageReadError(source or "<dataset>", "no SOP Instance UID in the dataset or its file meta")
    if filled:
        log.debug("%s: filled blank %s", source or "dataset", ", ".join(filled))
    return filled


def read_header(path: str | Path) -> pydicom.Dataset:
    """The header of a DICOM file (no pixel data) with blank UIDs filled (`fill_missing_uids`) and the
    patient and study modules' type 2 attributes present.

    Args:
        path: a DICOM file.

    Returns:
        The pydicom dataset, file_meta included.
    """
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as error:  # pydicom raises many types for damaged files
        raise ImageReadError(path, f"cannot read the DICOM header ({type(error).__name__}: {error})") from None
    fill_missing_uids(ds, str(path))
    for keyword in PATIENT_STUDY_TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, "")
    return ds


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
