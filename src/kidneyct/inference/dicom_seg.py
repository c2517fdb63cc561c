"""A DICOM Segmentation (highdicom) of a segmenting model's kidney and tumor maps on a DICOM series: binary
segments "Kidney" (parenchyma: tumor pixels belong to the tumor segment) and "Kidney tumor", on the source
slices' own pixel grid, in a new series of the source study. Viewers (OHIF, 3D Slicer, PACS) show it over the
scan; it says in its series description and content label that it is research output, not a diagnosis.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from kidneyct.about import __version__
from kidneyct.inference.mask_files import label_map
from kidneyct.labels import MASK_KIDNEY, MASK_TUMOR

SEG_SERIES_NUMBER = 9902
KIDNEY, TUMOR = MASK_KIDNEY, MASK_TUMOR  # segment numbers, and the values of the label map (mask_files.label_map)
SERIES_DESCRIPTION = "kidneyct kidney/tumor maps (research, not a diagnosis)"
__all__ = ["KIDNEY", "SEG_SERIES_NUMBER", "SERIES_DESCRIPTION", "TUMOR", "build_segmentation", "label_map"]


# Type 2 attributes of the patient and study modules: a SEG must have them, possibly empty; many exports omit them.
_TYPE_2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
           "ReferringPhysicianName", "AccessionNumber")


def _header(source: Dataset) -> Dataset:
    """A copy of a source slice's attributes without its pixels, missing type 2 attributes given empty."""
    header = Dataset()
    for element in source:
        if element.keyword != "PixelData":
            header.add(element)
    for keyword in _TYPE_2:
        if keyword not in header:
            setattr(header, keyword, "")
    header.file_meta = getattr(source, "file_meta", Dataset())
    return header


def _segments(model_name: str):
    import highdicom as hd

    algorithm = hd.AlgorithmIdentificationSequence(name=f"kidneyct {model_name}"[:64],
                                                   family=codes.DCM.ArtificialIntelligence, version=__version__)
    kidney = hd.seg.SegmentDescription(
        segment_number=KIDNEY, segment_label="Kidney", segmented_property_category=codes.SCT.AnatomicalStructure,
        segmented_property_type=codes.SCT.Kidney, algorithm_type="AUTOMATIC", algorithm_identification=algorithm)
    tumor = hd.seg.SegmentDescription(
        segment_number=TUMOR, segment_label="Kidney tumor",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm, algorithm_type="AUTOMATIC", algorithm_identification=algorithm,
        anatomic_regions=[codes.SCT.Kidney])
    return [kidney, tumor]


def build_segmentation(sources: list[Dataset], labels: np.ndarray, model_name: str, series_uid: str | None = None,
                       sop_uid: str | None = None):
    """A highdicom Segmentation of `labels` [N, rows, columns] (from `label_map`), one frame per source slice in
    the order of `sources` (the slices' datasets; pixel data may be absent)."""
    import highdicom as hd

    if labels.shape[0] != len(sources):
        raise ValueError(f"{labels.shape[0]} label frames for {len(sources)} source slices")
    segmentation = hd.seg.Segmentation(
        source_images=[_header(source) for source in sources], pixel_array=labels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=_segments(model_name), series_instance_uid=series_uid or generate_uid(),
        series_number=SEG_SERIES_NUMBER, sop_instance_uid=sop_uid or generate_uid(), instance_number=1,
        manufacturer="kidneyct", manufacturer_model_name=model_name[:64], software_versions=__version__,
        device_serial_number="none", content_label="KIDNEYCT", content_description="research, not a diagnosis",
        series_description=SERIES_DESCRIPTION, omit_empty_frames=bool(labels.any()),
    )
    return segmentation
