"""Write HU images as a standard CT Image Storage series (pydicom), for phantoms and tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

_ROOT = "1.2.826.0.1.3680043.10.1422."  # pydicom's UID prefix space for generated data


def _uid(*parts) -> str:
    digest = int(hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()[:24], 16)
    return (_ROOT + str(digest))[:64]


def write_ct_series(
    folder: str | Path, images_hu: list[np.ndarray], pixel_spacing: float = 0.8, thickness: float = 5.0,
    patient_id: str = "PHANTOM", seed: int = 0, intercept: float = -1024.0, slope: float = 1.0,
    modality: str = "CT", shuffle_files: bool = False,
) -> list[Path]:
    """One file per slice, stored as unsigned values with RescaleSlope/RescaleIntercept to HU.

    Slices are written in anatomical order; file names follow that order unless `shuffle_files`
    (used by tests to prove readers sort by ImagePositionPatient, not by name).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    study_uid, series_uid = _uid(patient_id, seed, "study"), _uid(patient_id, seed, "series")
    order = list(range(len(images_hu)))
    if shuffle_files:
        order = list(np.random.default_rng(seed).permutation(len(images_hu)))
    paths = []
    for index, hu in enumerate(images_hu):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = _uid(patient_id, seed, index)
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        path = folder / f"IM-{order[index] + 1:04d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.FrameOfReferenceUID = _uid(patient_id, seed, "frame")
        ds.Modality = modality
        ds.PatientID, ds.PatientName = patient_id, "PHANTOM^SYNTHETIC"
        ds.SeriesDescription = "kidneyct synthetic phantom"
        ds.InstanceNumber = index + 1
        ds.ImagePositionPatient = [0.0, 0.0, float(index * thickness)]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [pixel_spacing, pixel_spacing]
        ds.SliceThickness = thickness
        ds.Rows, ds.Columns = hu.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = intercept, slope, "HU"
        ds.WindowCenter, ds.WindowWidth = 40, 400
        stored = np.clip(np.rint((hu - intercept) / slope), 0, 65535).astype(np.uint16)
        ds.PixelData = stored.tobytes()
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
