"""DICOM results of a batch prediction (`kidneyct predict --dicom-out`, `kidneyct listen`): per DICOM study
a Comprehensive SR with the study-level call (`dicom_sr`) and Secondary Capture key images of the slices
that drove it, the Grad-CAM heatmap burned in and labelled as such (highdicom SCImage).

Both join the source study (its Study Instance UID and patient module), in new series with new UIDs,
made by Manufacturer "kidneyct". A study's files are written all or none: each one atomically, and the
ones already written are removed when a later one fails (a full disk leaves no half set behind).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kidneyct.about import DISCLAIMER, __version__
from kidneyct.inference.results import StudyResult
from kidneyct.inference.dicom_sr import MANUFACTURER, SeriesFinding, build_sr
from kidneyct.inference.overlay import overlay_panel
from kidneyct.inference.model_facts import ModelFacts
from kidneyct.io import read_dicom
from kidneyct.io.atomic import atomic_write
from kidneyct.io.dicom_header import read_header
from kidneyct.io.paths import inside
from kidneyct.labels import positive_index

log = logging.getLogger(__name__)

SR_SERIES_NUMBER, SC_SERIES_NUMBER = 9900, 9901
HEATMAP_LABEL = "Grad-CAM heatmap burned in: where the model looked, not a diagnosis"
_AXES = (("L", "R"), ("P", "A"), ("H", "F"))  # patient +x, +y, +z and their opposites


@dataclass
class StudyFiles:
    """What was written for one DICOM study."""

    study_uid: str
    sr: Path
    sr_uid: str
    key_images: list[Path]
    series: list[str]  # the CT series the SR reports on

    def to_dict(self) -> dict:
        """JSON-ready: paths as strings."""
        return {"study_uid": self.study_uid, "sr": str(self.sr), "sr_uid": self.sr_uid,
                "key_images": [str(p) for p in self.key_images], "series": self.series}


def patient_orientation(header) -> tuple[str, str]:
    """PatientOrientation of a slice as displayed (rows, columns) from its ImageOrientationPatient: the
    model's input keeps the slice's orientation. ("L", "P"), an axial slice, when it is absent.

    Args:
        header: the source slice's dataset.

    Returns:
        (row direction, column direction), one letter each: the dominant patient axis.
    """
    cosines = header.get("ImageOrientationPatient")
    if not cosines or len(cosines) != 6:
        return "L", "P"

    def letter(vector) -> str:
        axis = int(np.argmax(np.abs(vector)))
        return _AXES[axis][0 if vector[axis] >= 0 else 1]

    values = [float(v) for v in cosines]
    return letter(values[:3]), letter(values[3:])


def _finding(study: StudyResult, tumor_class: str) -> SeriesFinding:
    rows = sorted(study.slices, key=lambda s: s.index)
    headers = [read_header(row.source) for row in rows]
    probabilities = {row.index: row.probabilities[tumor_class] for row in rows}
    return SeriesFinding(headers=headers, slice_indices=[row.index for row in rows],
                         tumor_probability=study.tumor_probability, tumor=study.tumor, threshold=study.threshold,
                         aggregation=study.rule, driving={i: float(probabilities[i]) for i in study.driving_slices})


def collect_findings(results: list[StudyResult], classes: list[str]) -> list[SeriesFinding]:
    """The DICOM series among results with their study-level calls (NIfTI volumes and single images have no
    DICOM study to answer and are left out).

    Args:
        results: StudyResults (kidneyct.inference.run).
        classes: the model's classes.

    Returns:
        One SeriesFinding per DICOM series with slices, key images not yet made.
    """
    pos = positive_index(classes)
    if pos is None:
        return []
    return [_finding(study, classes[pos]) for study in results if study.kind == "series" and study.slices]


def _panel(image: np.ndarray, heatmap: np.ndarray, index: int, finding: SeriesFinding, facts: ModelFacts,
           label: str = HEATMAP_LABEL):
    call = "present" if finding.tumor else "absent"
    lines = [
        (f"model call: kidney tumor {call} (series p={finding.tumor_probability:.3f}, threshold "
         f"{finding.threshold:g}); this slice p={finding.driving[index]:.3f}", 13, (255, 255, 255)),
        (label, 12, (255, 220, 120)),
        (f"kidneyct {__version__}, model {facts.name}: research software, not a medical device", 12, (200, 200, 200)),
    ]
    return np.asarray(overlay_panel(image, heatmap, lines).convert("RGB"))


def _overlay_name(label: str) -> str:
    """What the key images burn in: a classifier's Grad-CAM, or a segmenting model's tumor map."""
    return "Grad-CAM" if label == HEATMAP_LABEL else "tumor map"


def _key_image(header, pixels: np.ndarray, series_uid: str, number: int, facts: ModelFacts,
               label: str = HEATMAP_LABEL):
    import highdicom as hd
    from pydicom.dataset import Dataset
    from pydicom.uid import ExplicitVRLittleEndian

    image = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=header, pixel_array=pixels, photometric_interpretation="RGB", bits_allocated=8,
        coordinate_system="PATIENT", series_instance_uid=series_uid, series_number=SC_SERIES_NUMBER,
        sop_instance_uid=hd.UID(), instance_number=number, manufacturer=MANUFACTURER,
        patient_orientation=patient_orientation(header), transfer_syntax_uid=ExplicitVRLittleEndian,
        series_description=f"kidneyct {_overlay_name(label)} key images, research, not a medical device",
        manufacturer_model_name=facts.name[:64], software_versions=__version__)
    image.ConversionType = "WSD"  # made on a workstation, not digitised from film
    image.BurnedInAnnotation = "YES"
    # An axial abdominal slice shows both kidneys; without it Laterality (General Series, type 2C) is required.
    image.ImageLaterality = "B"
    image.ImageComments = f"{label}. {DISCLAIMER}"
    what = _overlay_name(label)
    image.DerivationDescription = f"{what} of kidneyct model {facts.name} over the model's input slice"[:1024]
    source = Dataset()
    source.ReferencedSOPClassUID, source.ReferencedSOPInstanceUID = header.SOPClassUID, header.SOPInstanceUID
    image.SourceImageSequence = [source]
    return image


def make_key_images(finding: SeriesFinding, series_uid: str, first_number: int, preprocessing, explainer,
                    tumor_index: int, facts: ModelFacts) -> list:
    """Secondary Capture images of a finding's driving slices, the tumor class's Grad-CAM burned in.

    Args:
        finding: the series' call; its `driving` slices are drawn.
        series_uid: the key-image series of the study.
        first_number: the Instance Number of the first image.
        preprocessing: the checkpoint's preprocessing (gives the model's input slice).
        explainer: a GradCamExplainer of the model.
        tumor_index: the tumor class's index (the class the heatmaps explain).
        facts: the model, named on each image.

    Returns:
        highdicom SCImage datasets, one per driving slice (none for a series without a call).
    """
    indices = sorted(finding.driving)
    if not indices:
        return []
    images = np.stack([preprocessing.to_uint8(read_dicom(finding.header_of(i).filename)) for i in indices])
    heatmaps = explainer.heatmaps(images, [tumor_index] * len(indices))
    label = getattr(explainer, "label", HEATMAP_LABEL)  # a segmenting model shows its tumor map instead
    return [_key_image(finding.header_of(i), _panel(images[n], heatmaps[n], i, finding, facts, label), series_uid,
                       first_number + n, facts, label) for n, i in enumerate(indices)]


def _save_all(files: list[tuple[Path, object]]) -> None:
    written = []
    try:
        for path, dataset in files:
            atomic_write(path, lambda stream, ds=dataset: ds.save_as(stream, enforce_file_format=True))
            written.append(path)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise


def write_study(findings: list[SeriesFinding], out: Path, preprocessing, explainer, tumor_index: int,
                facts: ModelFacts) -> StudyFiles:
    """Key images and the SR of one study's series, written all or none under `out/<StudyInstanceUID>/`.

    Args:
        findings: series of one study.
        out: the DICOM results folder.
        preprocessing, explainer, tumor_index, facts: see `make_key_images`.

    Returns:
        The StudyFiles written.
    """
    import highdicom as hd

    study_uid = findings[0].headers[0].StudyInstanceUID
    sc_series = hd.UID()
    number = 1
    for finding in findings:
        finding.key_images = make_key_images(finding, sc_series, number, preprocessing, explainer, tumor_index, facts)
        number += len(finding.key_images)
    sr = build_sr(findings, facts, hd.UID(), hd.UID(), SR_SERIES_NUMBER)
    folder = inside(out, study_uid)  # a valid UID (read_header), checked to stay inside `out`
    files = [(folder / f"SC-{k.SOPInstanceUID}.dcm", k) for f in findings for k in f.key_images]
    files.append((folder / f"SR-{sr.SOPInstanceUID}.dcm", sr))
    _save_all(files)
    return StudyFiles(study_uid, files[-1][0], sr.SOPInstanceUID, [p for p, _ in files[:-1]],
                      [f.headers[0].SeriesInstanceUID for f in findings])


def write_dicom_results(results: list[StudyResult], out: str | Path, predictor, facts: ModelFacts) -> list[StudyFiles]:
    """Per DICOM study among results, an SR and key images (see the module docstring).

    Args:
        results: StudyResults (kidneyct.inference.run).
        out: the folder to write into (one sub-folder per Study Instance UID).
        predictor: the PyTorch Predictor that made them (its preprocessing and Grad-CAM draw the key images).
        facts: `ModelFacts` of the checkpoint.

    Returns:
        One StudyFiles per study written.
    """
    findings = collect_findings(results, predictor.classes)
    by_study: dict[str, list[SeriesFinding]] = {}
    for finding in findings:
        by_study.setdefault(finding.headers[0].StudyInstanceUID, []).append(finding)
    if not findings:
        return []
    tumor_index, explainer = positive_index(predictor.classes), predictor.explainer()
    return [write_study(group, Path(out), predictor.preprocessing, explainer, tumor_index, facts)
            for group in by_study.values()]
