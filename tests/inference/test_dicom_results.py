"""DICOM results of `kidneyct predict --dicom-out`: a TID 1500 Comprehensive SR per study and Secondary
Capture key images, read back with pydicom and highdicom, and checked by dciodvfy where it is installed."""

from __future__ import annotations

import csv
import shutil
import subprocess
import warnings

import pydicom
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kidneyct.about import DISCLAIMER
from kidneyct.cli import main
from kidneyct.inference import dicom_results
from kidneyct.inference.dicom_sr import STUDY_PROBABILITY, THRESHOLD, TUMOR_CALL
from kidneyct.io.dicom_conform import COPIED
from kidneyct.io.dicom_header import read_header, series_identity


def sr_finding(path) -> list[dict]:
    """The SR's call per series, read back through highdicom's TID 1500 parser."""
    import highdicom as hd

    found = []
    for group in hd.sr.srread(path).content.get_image_measurement_groups():
        (probability,) = group.get_measurements(name=STUDY_PROBABILITY)
        (threshold,) = group.get_measurements(name=THRESHOLD)
        (call,) = group.get_qualitative_evaluations(name=TUMOR_CALL)
        found.append({"tumor": call.value.meaning == "Present", "probability": probability.value,
                      "threshold": threshold.value,
                      "sources": [image.referenced_sop_instance_uid for image in group.source_images]})
    return found


@pytest.fixture
def predicted(trained_run, phantom_dicom, tmp_path):
    """`kidneyct predict --dicom-out` on one tumor and one normal phantom series."""
    series = [phantom_dicom / "Tumor" / "tumor-0000", phantom_dicom / "Normal" / "normal-0000"]
    out = tmp_path / "dicom"
    assert main(["predict", "--checkpoint", str(trained_run.best_checkpoint), *map(str, series),
                 "--dicom-out", str(out), "--out", str(tmp_path / "r.csv"), "--device", "cpu", "--no-progress"]) == 0
    with open(tmp_path / "r.studies.csv") as handle:
        studies = {row["input"]: row for row in csv.DictReader(handle)}
    with open(tmp_path / "r.csv") as handle:
        slices = list(csv.DictReader(handle))
    return series, out, studies, slices


def test_sr_states_the_call_and_references_the_driving_slices(predicted):
    series, out, studies, slices = predicted
    for folder in series:
        source = read_header(next(folder.glob("*.dcm")))
        (sr_path,) = (out / source.StudyInstanceUID).glob("SR-*.dcm")
        sr = pydicom.dcmread(sr_path)
        assert sr.Modality == "SR" and sr.SOPClassUID == pydicom.uid.ComprehensiveSRStorage
        assert sr.StudyInstanceUID == source.StudyInstanceUID and sr.PatientID == source.PatientID
        assert sr.SeriesInstanceUID != source.SeriesInstanceUID and sr.Manufacturer == "kidneyct"
        assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
        assert sr.VerificationFlag == "UNVERIFIED" and sr.ContentQualification == "RESEARCH"
        (finding,) = sr_finding(sr_path)
        study = studies[str(folder)]
        assert finding["tumor"] == bool(int(study["tumor"]))
        assert finding["probability"] == pytest.approx(float(study["tumor_probability"]), abs=1e-6)
        assert finding["threshold"] == pytest.approx(float(study["threshold"]))
        driving = {int(i) for i in study["driving_slices"].split()}
        sources = [row["source"] for row in slices if row["input"] == str(folder) and int(row["slice_index"]) in driving]
        assert sorted(finding["sources"]) == sorted(read_header(s).SOPInstanceUID for s in sources)
        texts = [element.value for element in sr.iterall() if element.keyword == "TextValue"]
        assert DISCLAIMER in texts and any("Trained on" in t and "split" in t for t in texts)


def test_key_images_carry_the_heatmap_label_and_the_source_study(predicted):
    series, out, studies, _ = predicted
    source = read_header(next(series[0].glob("*.dcm")))
    images = sorted((out / source.StudyInstanceUID).glob("SC-*.dcm"))
    assert len(images) == len(studies[str(series[0])]["driving_slices"].split()) == 3
    referenced = set()
    for path in images:
        sc = pydicom.dcmread(path)
        assert sc.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage and sc.Manufacturer == "kidneyct"
        assert sc.StudyInstanceUID == source.StudyInstanceUID and sc.PatientName == source.PatientName
        assert sc.BurnedInAnnotation == "YES" and "Grad-CAM" in sc.ImageComments and DISCLAIMER in sc.ImageComments
        assert sc.pixel_array.shape[-1] == 3 and sc.pixel_array.std() > 0
        referenced.add(sc.SourceImageSequence[0].ReferencedSOPInstanceUID)
    sr = pydicom.dcmread(next((out / source.StudyInstanceUID).glob("SR-*.dcm")))
    assert referenced <= set(sr_finding(sr.filename)[0]["sources"])  # key images are the driving slices
    evidence = {i.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
                for r in s.ReferencedSeriesSequence for i in r.ReferencedSOPSequence}
    assert {pydicom.dcmread(p).SOPInstanceUID for p in images} <= evidence


def test_dciodvfy_finds_no_errors(predicted):
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed; .ci/run installs it as root")
    _, out, _, _ = predicted
    files = sorted(out.rglob("*.dcm"))
    assert len(files) == 8  # two studies: an SR and three key images each
    for path in files:
        report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
        errors = [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]
        assert not errors, f"{path.name}: {errors}"


def test_series_of_one_study_share_one_sr(trained_run, phantom_dicom, tmp_path):
    second = tmp_path / "second"
    shutil.copytree(phantom_dicom / "Normal" / "normal-0001", second)
    first = read_header(next((phantom_dicom / "Tumor" / "tumor-0001").glob("*.dcm")))
    series_uid = pydicom.uid.generate_uid()
    for path in second.glob("*.dcm"):  # the same patient's study, another series
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = first.StudyInstanceUID, series_uid
        ds.PatientID, ds.PatientName = first.PatientID, first.PatientName
        ds.save_as(path)
    out = tmp_path / "dicom"
    assert main(["predict", "--checkpoint", str(trained_run.best_checkpoint), "--dicom-out", str(out),
                 str(phantom_dicom / "Tumor" / "tumor-0001"), str(second), "--device", "cpu", "--no-progress"]) == 0
    (sr_path,) = out.rglob("SR-*.dcm")
    assert len(sr_finding(sr_path)) == 2 and len(list(out.rglob("SC-*.dcm"))) == 6


def test_a_failed_write_leaves_no_partial_study(trained_run, phantom_dicom, tmp_path, monkeypatch):
    real_write = dicom_results.atomic_write

    def disk_full_at_the_sr(path, write, binary=True):
        if path.name.startswith("SR-"):
            raise OSError(28, "No space left on device")
        real_write(path, write, binary)

    monkeypatch.setattr(dicom_results, "atomic_write", disk_full_at_the_sr)
    code = main(["predict", "--checkpoint", str(trained_run.best_checkpoint), "--dicom-out", str(tmp_path / "d"),
                 str(phantom_dicom / "Tumor" / "tumor-0000"), "--device", "cpu", "--no-progress"])
    assert code == 2  # one-line error for an OSError
    assert not [p for p in (tmp_path / "d").rglob("*") if p.is_file()]  # the key images written first are gone


def test_dicom_out_needs_the_pytorch_backend(trained_run, phantom_dicom, tmp_path, capsys):
    assert main(["predict", "--checkpoint", str(trained_run.best_checkpoint), "--backend", "onnx", "--dicom-out",
                 str(tmp_path), str(phantom_dicom / "Tumor" / "tumor-0000")]) == 2
    assert "--dicom-out" in capsys.readouterr().err


def test_blank_uids_are_filled_the_same_way_for_every_slice(phantom_dicom, tmp_path):
    headers = []
    for path in sorted((phantom_dicom / "Normal" / "normal-0000").glob("*.dcm")):
        ds = pydicom.dcmread(path)
        meta_uid = ds.file_meta.MediaStorageSOPInstanceUID
        ds.SOPInstanceUID = ds.StudyInstanceUID = ds.SeriesInstanceUID = ds.SOPClassUID = ""  # as anonymised
        ds.save_as(tmp_path / path.name)
        header = read_header(tmp_path / path.name)
        assert header.SOPInstanceUID == meta_uid and header.SOPClassUID == pydicom.uid.CTImageStorage
        assert series_identity(pydicom.dcmread(tmp_path / path.name)) == (header.StudyInstanceUID,
                                                                          header.SeriesInstanceUID)
        headers.append(header)
    assert len({(h.StudyInstanceUID, h.SeriesInstanceUID) for h in headers}) == 1
    assert headers[0].StudyInstanceUID != headers[0].SeriesInstanceUID


@pytest.mark.parametrize("cosines, expected", [
    ([1, 0, 0, 0, 1, 0], ("L", "P")), ([-1, 0, 0, 0, -1, 0], ("R", "A")), ([0, 1, 0, 0, 0, -1], ("P", "F")),
    (None, ("L", "P"))])
def test_key_image_orientation_follows_the_source(cosines, expected):
    ds = pydicom.Dataset()
    if cosines is not None:
        ds.ImageOrientationPatient = cosines
    assert dicom_results.patient_orientation(ds) == expected


SOURCE_TEXT = st.text(max_size=120)  # any characters: controls, backslashes, '^' and '=', beyond ASCII, surrogates


def _source_header(values: dict, charset: str | None) -> pydicom.Dataset:
    """A CT slice's header as pydicom decodes it, its copied attributes holding whatever the sender wrote."""
    from pydicom.uid import generate_uid

    ds = pydicom.Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = pydicom.uid.CTImageStorage, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Rows = ds.Columns = 64
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    if charset:
        ds.SpecificCharacterSet = charset
    for keyword, value in values.items():
        if value is not None:  # raw, as read from a file: decoded (and found wanting) only when used
            tag, data = pydicom.datadict.tag_for_keyword(keyword), value.encode("utf-8", "surrogatepass")
            ds[tag] = pydicom.dataelem.RawDataElement(pydicom.tag.Tag(tag), COPIED[keyword][0], len(data), data, 0,
                                                      False, True)
    return ds


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom and highdicom warn of the odd values, as they should
@settings(max_examples=8, deadline=None)
@example(values={**dict.fromkeys(COPIED), "Modality": "SR"}, charset=None)  # a non-image modality named in a CT
@given(values=st.fixed_dictionaries({keyword: st.none() | SOURCE_TEXT for keyword in COPIED}),
       charset=st.sampled_from([None, "ISO_IR 100", "ISO_IR 192", "ISO 2022 IR 87"]))
def test_results_from_any_source_values_pass_dciodvfy(values, charset, tmp_path_factory):
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed; .ci/run installs it as root")
    import highdicom as hd
    import numpy as np

    from kidneyct.inference.dicom_sr import SeriesFinding, build_sr
    from kidneyct.inference.model_facts import ModelFacts
    from kidneyct.io.dicom_conform import conform_header

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns of every invalid value it decodes: that is the point
        header = conform_header(_source_header(values, charset))
    facts = ModelFacts("seed-cnn", "best.pt", "0" * 64, "0.1.0", ("Normal", "Tumor"), 1.0, "Trained on phantoms.")
    finding = SeriesFinding([header], [0], 0.7, True, 0.5, "mean of the 3 highest", {0: 0.7})
    panel = np.zeros((64, 128, 3), np.uint8)
    finding.key_images = [dicom_results._key_image(header, panel, hd.UID(), 1, facts)]
    folder = tmp_path_factory.mktemp("fuzzed-results")
    files = [folder / "SC.dcm", folder / "SR.dcm"]
    finding.key_images[0].save_as(files[0], enforce_file_format=True)
    build_sr([finding], facts, hd.UID(), hd.UID()).save_as(files[1], enforce_file_format=True)
    for path in files:
        report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
        errors = [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]
        assert not errors, f"{path.name}: {errors}"
