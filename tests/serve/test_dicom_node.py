"""`kidneyct listen` on loopback: instances in by C-STORE (pynetdicom's storescu and AE), the SR and key
images out to a second loopback SCP, and what the node refuses or survives."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.filewriter import write_file_meta_info

from kidneyct.io.dicom_header import read_header
from kidneyct.serve.dicom_node import Destination
from kidneyct.serve.dicom_store import CANNOT_UNDERSTAND, DATASET_DOES_NOT_MATCH, OUT_OF_RESOURCES

pynetdicom = pytest.importorskip("pynetdicom")
from pynetdicom import AE  # noqa: E402
from pynetdicom.sop_class import MRImageStorage, Verification  # noqa: E402

REAL_SERIES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real-ct-examples" / \
    "upper-abdomen-dicom-no-kidney"


def series_files(phantom_dicom: Path, name: str) -> list[Path]:
    kind = name.split("-")[0].capitalize()
    return sorted((phantom_dicom / kind / name).glob("*.dcm"))


def test_loopback_sr_per_study_matches_kidneyct_predict(start_node, sink, phantom_dicom, tmp_path, send, wait_for):
    if not REAL_SERIES.is_dir():
        pytest.skip(f"real DICOM series not present at {REAL_SERIES}")
    node = start_node(forward=Destination("127.0.0.1", sink.port, "SINK"))
    phantom = tmp_path / "phantom"  # the series without its lesion masks (storescu would report them as bad files)
    phantom.mkdir()
    for path in (phantom_dicom / "Tumor" / "tumor-0001").glob("*.dcm"):
        shutil.copy(path, phantom)
    storescu = subprocess.run([sys.executable, "-m", "pynetdicom", "storescu", "127.0.0.1", str(node.port),
                               str(phantom), "-r", "-aec", "KIDNEYCT", "-aet", "STORESCU"],
                              capture_output=True, text=True, timeout=120)
    assert storescu.returncode == 0 and "E:" not in storescu.stderr, storescu.stderr
    # The real files have blank SOP, Study and Series UIDs (anonymised); sent as stored, the SOP UIDs travel
    # in the C-STORE request from the file meta and the node fills the rest the way `predict` does.
    real_files = sorted(REAL_SERIES.iterdir())
    assert send(node.port, real_files, raw=True) == [0] * len(real_files)
    reports = wait_for(lambda: len(sink.reports()) == 2 and sink.reports())
    # three key images for the phantom; none for the real series, which shows no kidney and gets no call
    assert len([ds for ds in sink.received if ds.Modality == "OT"]) == 3

    copies = tmp_path / "real"  # suffix-less UID names: given to predict as .dcm files, one folder
    copies.mkdir()
    for path in real_files:
        shutil.copy(path, copies / f"{path.name}.dcm")
    expected = list(node.predictor.run([phantom, copies]))  # what `kidneyct predict` runs
    for folder, study in zip((phantom, copies), expected):
        header = read_header(next(folder.glob("*.dcm")))
        (report,) = [r for r in reports if r.StudyInstanceUID == header.StudyInstanceUID]
        finding = _finding(report)
        assert finding["tumor"] == study.tumor  # None (SR: Indeterminate) for the real series: out of scope
        if study.tumor_probability is None:
            assert finding["probability"] is None and folder == copies
        else:
            assert finding["probability"] == pytest.approx(study.tumor_probability, abs=1e-6)
        driving = [s.source for s in study.slices if s.index in study.driving_slices]
        assert sorted(finding["sources"]) == sorted(read_header(p).SOPInstanceUID for p in driving)
    assert sorted(r["forward"]["queued"] for r in node.records) == [1, 4]  # SR alone; SR and three key images
    wait_for(lambda: not list((node.settings.out / "outbox").glob("*.json")))  # delivered jobs leave the outbox


def _finding(report: pydicom.Dataset) -> dict:
    import highdicom as hd

    from kidneyct.inference.dicom_sr import STUDY_PROBABILITY, TUMOR_CALL

    (group,) = hd.sr.ComprehensiveSR.from_dataset(report).content.get_image_measurement_groups()
    probability = group.get_measurements(name=STUDY_PROBABILITY)  # absent when no call is made
    (call,) = group.get_qualitative_evaluations(name=TUMOR_CALL)
    tumor = None if call.value.meaning == "Indeterminate" else call.value.meaning == "Present"
    return {"tumor": tumor, "probability": probability[0].value if probability else None,
            "sources": [image.referenced_sop_instance_uid for image in group.source_images]}


def test_echo_answered_and_other_sop_classes_refused(start_node, phantom_dicom, send):
    node = start_node()
    ae = AE(ae_title="SENDER")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", node.port, ae_title="KIDNEYCT")
    assert assoc.is_established and assoc.send_c_echo().Status == 0x0000
    assoc.release()

    mr = AE(ae_title="SENDER")
    mr.add_requested_context(MRImageStorage)
    assoc = mr.associate("127.0.0.1", node.port, ae_title="KIDNEYCT")
    assert not assoc.is_established or not assoc.accepted_contexts  # refused at negotiation
    if assoc.is_established:
        dataset = pydicom.dcmread(series_files(phantom_dicom, "normal-0000")[0])
        dataset.SOPClassUID = MRImageStorage
        with pytest.raises(ValueError, match="No presentation context"):
            assoc.send_c_store(dataset)
        assoc.release()
    assert not ae.associate("127.0.0.1", node.port, ae_title="SOMEONE").is_established  # not our AE title

    dataset = pydicom.dcmread(series_files(phantom_dicom, "normal-0000")[0])
    dataset.Modality = "MR"  # an MR image sent as CT Image Storage
    assert send(node.port, [dataset]) == [DATASET_DOES_NOT_MATCH]
    assert not list(node.settings.out.rglob("*.dcm"))


def test_series_over_concurrent_associations_with_a_repeat_is_answered_once(start_node, phantom_dicom, send,
                                                                               wait_for):
    node = start_node()
    first, second = series_files(phantom_dicom, "tumor-0000"), series_files(phantom_dicom, "normal-0001")
    parts = [first[:2], first[2:4] + first[:1], first[4:], second]  # one repeated instance, 4 associations
    statuses = [None] * len(parts)

    def deliver(number):
        statuses[number] = send(node.port, [pydicom.dcmread(p) for p in parts[number]])

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(len(parts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert statuses == [[0] * len(part) for part in parts]
    records = wait_for(lambda: len(node.records) == 2 and node.records)
    time.sleep(1.5)  # nothing is answered twice (three idle waits)
    assert len(node.records) == 2
    by_series = {r["series_uid"]: r for r in records}
    for files in (first, second):
        record = by_series[read_header(files[0]).SeriesInstanceUID]
        assert record["instances"] == record["slices_read"] == len(files) == 6
        assert record["finding"] is not None and len(record["dicom"]) == 1
        answer = json.loads((node.settings.out / "results" / record["series_uid"] / "answer.json").read_text())
        assert answer["finding"] == record["finding"]


def test_corrupt_instances_are_logged_and_the_rest_of_the_series_read(start_node, phantom_dicom, tmp_path,
                                                                      send, wait_for, caplog):
    node = start_node()
    files = series_files(phantom_dicom, "tumor-0001")
    truncated = pydicom.dcmread(files[2])
    truncated.PixelData = truncated.PixelData[: len(truncated.PixelData) // 2]  # decodes as a dataset, not as pixels
    assert send(node.port, [pydicom.dcmread(p) for p in files[:2]] + [truncated] +
                [pydicom.dcmread(p) for p in files[3:]]) == [0] * 6
    garbage = tmp_path / "garbage.dcm"  # valid file meta, then a sequence that never ends
    meta = pydicom.dcmread(files[0]).file_meta
    meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    with open(garbage, "wb") as handle:
        handle.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(handle, meta)
        handle.write(b"\x08\x00\x15\x11SQ\x00\x00\xff\xff\xff\xff\xfe\xff\x00\xe0\xff\xff\xff\xff\x08\x00\x50\x11UI\x04\x00abcd")
    assert send(node.port, [garbage], raw=True) == [CANNOT_UNDERSTAND]
    (record,) = wait_for(lambda: node.records)
    assert record["instances"] == 6 and record["slices_read"] == 5
    assert [s["path"] for s in record["skipped"]] == [f"{truncated.SOPInstanceUID}.dcm"]
    assert record["finding"] is not None and len(record["dicom"][0]["key_images"]) == 3
    assert "refused instance" in caplog.text and "corrupt DICOM" in caplog.text and "skipped" in caplog.text


def test_unwritable_output_answers_a_failure_and_writes_nothing(start_node, phantom_dicom, send, wait_for, caplog):
    node = start_node()
    out = node.settings.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "incoming").write_text("a file where the node's folder should be")  # as unwritable as a full disk
    files = series_files(phantom_dicom, "normal-0000")
    assert send(node.port, [pydicom.dcmread(p) for p in files]) == [OUT_OF_RESOURCES] * 6
    assert not list(out.rglob("*.dcm")) and not list(out.rglob("*.tmp"))
    assert "could not store instance" in caplog.text

    (out / "incoming").unlink()  # space again; now the results folder is blocked
    (out / "results").write_text("blocked")
    assert send(node.port, [pydicom.dcmread(p) for p in files]) == [0] * 6
    wait_for(lambda: "no answer" in caplog.text)
    assert not node.records and not (out / "dicom").exists()
    assert len(list((out / "incoming").rglob("*.dcm"))) == 6
