"""The study-level finding as a DICOM Comprehensive SR (TID 1500 Measurement Report, through highdicom).

One measurement group (TID 1501) per CT series: the tumor call as a qualitative evaluation (SCT Present /
Absent; Indeterminate when the scope gate found no kidney in the series and no call is made), the calibrated study probability and the operating threshold as measurements, each driving
slice's probability as a measurement that references that slice by SOP Instance UID, the algorithm
(model, version, checkpoint digest, threshold, the study rule), and TEXT items with the intended use (not a
medical device), the model's validation and the study rule. Concepts DICOM has no code for use the
local scheme 99KIDNEYCT, declared in the Coding Scheme Identification Sequence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydicom.sr.coding import Code
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from kidneyct.about import DISCLAIMER, __version__
from kidneyct.inference.model_facts import ModelFacts
from kidneyct.io.dicom_conform import conform_value

SCHEME = "99KIDNEYCT"
MANUFACTURER = "kidneyct"
TUMOR_CALL = Code("KCT001", SCHEME, "Kidney tumor, model call at the operating threshold")
STUDY_PROBABILITY = Code("KCT002", SCHEME, "Calibrated kidney tumor probability, series")
THRESHOLD = Code("KCT003", SCHEME, "Operating threshold on the tumor probability")
SLICE_PROBABILITY = Code("KCT004", SCHEME, "Calibrated kidney tumor probability, driving slice")
INTENDED_USE = Code("KCT005", SCHEME, "Intended use")
VALIDATION = Code("KCT006", SCHEME, "Model validation")
STUDY_RULE = Code("KCT007", SCHEME, "Series rule")
KEY_IMAGES = Code("KCT008", SCHEME, "Key images")


@dataclass
class SeriesFinding:
    """One CT series' call and what its DICOM results refer to."""

    headers: list  # pydicom datasets of the series' readable slices, in slice order, UIDs filled
    slice_indices: list[int]  # the position in the series of each header
    tumor_probability: float | None  # None: no call (no slice in scope)
    tumor: bool | None
    threshold: float
    aggregation: str  # the study rule in words
    driving: dict[int, float]  # driving slice index -> its calibrated tumor probability
    key_images: list = field(default_factory=list)  # Secondary Capture datasets of the driving slices

    def header_of(self, index: int):
        """The header of the slice at position `index` in the series.

        Args:
            index: a slice index (as in `driving`).

        Returns:
            Its pydicom dataset.
        """
        return self.headers[self.slice_indices.index(index)]


def _text(name: Code, value: str):
    import highdicom as hd

    return hd.sr.TextContentItem(name=name, value=value[:1024],  # UT would do, but SR TEXT is capped at 1024 in viewers
                                 relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)


def _long_string(text: str) -> str:
    """An LO value: a checkpoint's file name may be long or odd."""
    return conform_value(text, "LO", 64) or "-"


def _call_code(tumor: bool | None) -> Code:
    """Present / Absent, or Indeterminate for a series the model makes no call on (out of scope)."""
    return codes.SCT.Indeterminate if tumor is None else codes.SCT.Present if tumor else codes.SCT.Absent


def _source(kind, header):
    """A reference to a slice by its SOP class and instance (single-frame CT images). Not highdicom's
    `from_source_image`: that refuses a header whose Modality text names a non-image modality (SR, SEG...),
    which a sender may write into any CT instance; the reference is to the CT image all the same."""
    return kind(referenced_sop_class_uid=header.SOPClassUID, referenced_sop_instance_uid=header.SOPInstanceUID)


def _group(finding: SeriesFinding, facts: ModelFacts):
    import highdicom as hd

    no_units = codes.UCUM.NoUnits
    slices = [hd.sr.Measurement(
        name=SLICE_PROBABILITY, value=round(p, 6), unit=no_units,
        referenced_images=[_source(hd.sr.SourceImageForMeasurement, finding.header_of(i))])
        for i, p in sorted(finding.driving.items())]
    study_probability = [] if finding.tumor_probability is None else [
        hd.sr.Measurement(name=STUDY_PROBABILITY, value=round(finding.tumor_probability, 6), unit=no_units)]
    series_uid = finding.headers[0].SeriesInstanceUID
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=generate_uid(entropy_srcs=["kidneyct tracking", series_uid, facts.sha256]), identifier="kidney tumor call"),
        finding_type=codes.SCT.Neoplasm,
        finding_sites=[hd.sr.FindingSite(anatomic_location=codes.SCT.Kidney)],
        algorithm_id=hd.sr.AlgorithmIdentification(
            name=_long_string(f"kidneyct {facts.name}"), version=__version__,
            parameters=[_long_string(text) for text in (
                f"checkpoint {facts.checkpoint} sha256 {facts.sha256[:16]}", f"threshold {finding.threshold:g}",
                f"rule {finding.aggregation}", f"temperature {facts.temperature:.4f}")]),
        measurements=[*study_probability,
                      hd.sr.Measurement(name=THRESHOLD, value=finding.threshold, unit=no_units), *slices],
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(TUMOR_CALL, _call_code(finding.tumor))],
        source_images=[_source(hd.sr.SourceImageForMeasurementGroup, finding.header_of(i))
                       for i in sorted(finding.driving)],
    )
    notes = [(INTENDED_USE, DISCLAIMER), (VALIDATION, facts.validation), (STUDY_RULE, finding.aggregation)]
    if finding.key_images:
        notes.append((KEY_IMAGES, f"Secondary Capture series {finding.key_images[0].SeriesInstanceUID}: the driving "
                                  "slices with the Grad-CAM heatmap burned in (where the model looked; not a diagnosis)"))
    group[0].ContentSequence.extend(_text(name, value) for name, value in notes)
    return group


def build_sr(findings: list[SeriesFinding], facts: ModelFacts, series_uid: str, sop_uid: str,
             series_number: int = 9900):
    """A Comprehensive SR for the series of one study.

    Args:
        findings: the study's series (all headers share one Study Instance UID).
        facts: the model behind the calls.
        series_uid: the SR's new Series Instance UID.
        sop_uid: the SR's new SOP Instance UID.
        series_number: the SR series' number.

    Returns:
        A highdicom ComprehensiveSR (a pydicom Dataset) carrying the source study and patient.
    """
    import highdicom as hd
    from highdicom.coding_schemes import CodingSchemeIdentificationItem

    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(entropy_srcs=["kidneyct device", facts.sha256]), name=MANUFACTURER, manufacturer_name=MANUFACTURER, model_name=facts.name[:64]))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
        imaging_measurements=[_group(f, facts) for f in findings])
    evidence = [h for f in findings for h in f.headers] + [k for f in findings for k in f.key_images]
    return hd.sr.ComprehensiveSR(
        evidence=evidence, content=report[0], series_instance_uid=series_uid, series_number=series_number,
        sop_instance_uid=sop_uid, instance_number=1, manufacturer=MANUFACTURER, is_complete=True,
        content_qualification="RESEARCH", series_description="kidneyct tumor finding, research, not a medical device",
        manufacturer_model_name=facts.name[:64], software_versions=__version__,
        coding_schemes=[CodingSchemeIdentificationItem(
            designator=SCHEME, name="kidneyct local concepts", responsible_organization="kidneyct")])
