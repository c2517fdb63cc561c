"""Source header values made fit to copy into the DICOM objects kidneyct writes (SR, key images).

highdicom copies the patient, study and equipment attributes of the source slice as they are. Values from a
scanner, an anonymiser or the network may break their VR: control characters, over-long text, `20241399`
as a date. Each copied attribute is conformed to its VR (PS3.5 6.2: length, character repertoire, format)
or left empty (type 2) or out; only the attributes listed here are copied at all. Text outside ASCII is
kept and declared as UTF-8 (ISO_IR 192).
"""

from __future__ import annotations

import datetime
import math
import re
import unicodedata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pydicom

UTF8 = "ISO_IR 192"
# keyword: (VR, maximum length in bytes). Patient, General Study and Patient Study modules, and the source's
# equipment (highdicom's Contributing Equipment item).
COPIED = {
    "PatientName": ("PN", 64), "PatientID": ("LO", 64), "IssuerOfPatientID": ("LO", 64),
    "PatientBirthDate": ("DA", 8), "PatientSex": ("CS", 16), "PatientAge": ("AS", 4), "PatientSize": ("DS", 16),
    "PatientWeight": ("DS", 16), "StudyDate": ("DA", 8), "StudyTime": ("TM", 14), "ReferringPhysicianName": ("PN", 64),
    "StudyID": ("SH", 16), "AccessionNumber": ("SH", 16), "StudyDescription": ("LO", 64),
    "Manufacturer": ("LO", 64), "ManufacturerModelName": ("LO", 64), "DeviceSerialNumber": ("LO", 64),
    "InstitutionName": ("LO", 64), "InstitutionalDepartmentName": ("LO", 64), "StationName": ("SH", 16),
    "Modality": ("CS", 16),
}
# Type 2 in the modules the results carry: present, if empty, in a valid object. Modality too, which
# highdicom reads from every image an SR refers to.
PRESENT = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
           "ReferringPhysicianName", "StudyID", "AccessionNumber", "Manufacturer", "Modality")
ENUMERATED = {"PatientSex": {"M", "F", "O"}}
# Kept as they are: what the results refer to, how the slice lies and its pixel description (highdicom's
# references check it). The UIDs are valid by now, and the pixel description was good enough to read.
STRUCTURAL = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "ImageOrientationPatient",
              "Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated", "BitsStored",
              "HighBit", "PixelRepresentation", "NumberOfFrames")

_TIME = re.compile(r"^([01]\d|2[0-3])([0-5]\d([0-5]\d(\.\d{1,6})?)?)?$")
_AGE = re.compile(r"^\d{3}[DWMY]$")
_DECIMAL = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_CODE = re.compile(r"[^A-Z0-9 _]")


def _printable(text: str) -> str:
    """Characters a DICOM text value may hold: no control, format, surrogate, private or unassigned ones, no
    line or paragraph separators, and no backslash (the value separator)."""
    return "".join(c for c in text if c != "\\" and unicodedata.category(c)[0] != "C"
                   and unicodedata.category(c) not in ("Zl", "Zp"))


def _clip(text: str, max_bytes: int) -> str:
    """At most `max_bytes` once encoded as UTF-8, cut between characters."""
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", "ignore")


def _person_name(text: str, max_bytes: int) -> str:
    # The alphabetic group only (ideographic and phonetic groups need ISO 2022 escapes); at most 5 components.
    group = _printable(text).split("=")[0]
    components = [c.strip() for c in group.split("^")[:5]]
    while components and not components[-1]:
        components.pop()
    return _clip("^".join(components), max_bytes).strip()


def _date(text: str) -> str:
    try:
        return text if len(text) == 8 and text.isdigit() and datetime.datetime.strptime(text, "%Y%m%d") else ""
    except ValueError:
        return ""


def _decimal(text: str, max_bytes: int) -> str:
    text = text.strip()
    return text if len(text) <= max_bytes and _DECIMAL.match(text) and math.isfinite(float(text)) else ""


def conform_value(value, vr: str, max_bytes: int) -> str:
    """`value` as a valid single value of its VR, or '' when it cannot be made one.

    Args:
        value: the source's value (a str, a PersonName, a number, or the first of several values).
        vr: PN, LO, SH, CS, DA, TM, AS or DS.
        max_bytes: the VR's maximum length.

    Returns:
        The conformed text ('' means empty or left out).
    """
    if value is None:
        return ""
    if not isinstance(value, (str, bytes)) and hasattr(value, "__getitem__") and hasattr(value, "__len__"):
        value = value[0] if len(value) else ""  # a multi-valued element: the attributes copied have VM 1
    text = value.decode("ascii", "ignore") if isinstance(value, bytes) else str(value)
    if vr == "PN":
        return _person_name(text, max_bytes)
    if vr == "DA":
        return _date(text.strip())
    if vr == "TM":
        text = text.strip()
        return text if _TIME.match(text) else ""
    if vr == "AS":
        return text if _AGE.match(text) else ""
    if vr == "DS":
        return _decimal(text, max_bytes)
    if vr == "CS":
        return _CODE.sub("", text.strip().upper())[:max_bytes].strip()
    return _clip(_printable(text).strip(), max_bytes).strip()  # LO, SH


def conform_header(ds: pydicom.Dataset) -> pydicom.Dataset:
    """A new dataset holding the source's identifiers and its copied attributes, each conformed.

    Args:
        ds: a source slice's header, its UIDs already made valid (`fill_missing_uids`).

    Returns:
        A pydicom Dataset: the STRUCTURAL attributes, every COPIED one that survives conformance, the PRESENT
        ones at least empty, and SpecificCharacterSet ISO_IR 192 when any value is beyond ASCII.
    """
    from pydicom.dataset import Dataset

    out = Dataset()
    for keyword in STRUCTURAL:
        element = _element(ds, keyword)
        if element is not None:
            out.add(element)
    orientation = _element(out, "ImageOrientationPatient")
    if orientation is not None and not _finite_numbers(orientation.value, 6):
        del out.ImageOrientationPatient
    for keyword, (vr, max_bytes) in COPIED.items():
        element = _element(ds, keyword)
        value = "" if element is None else conform_value(element.value, vr, max_bytes)
        if value and keyword in ENUMERATED and value not in ENUMERATED[keyword]:
            value = ""
        if value or keyword in PRESENT:
            setattr(out, keyword, value)
    if any(not str(element.value).isascii() for element in out if element.VR in ("PN", "LO", "SH")):
        out.SpecificCharacterSet = UTF8
    return out


def _element(ds: pydicom.Dataset, keyword: str):
    """The element, its value decoded; None when absent or when its bytes do not decode (a text where a
    number belongs, bytes outside the declared character set): left out rather than fail the results."""
    try:
        element = ds[keyword] if keyword in ds else None
        _ = None if element is None else element.value
    except Exception:  # noqa: BLE001 - pydicom raises many types for malformed values
        return None
    return element


def _finite_numbers(values, count: int) -> bool:
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        return False
    return len(numbers) == count and all(math.isfinite(n) for n in numbers)
