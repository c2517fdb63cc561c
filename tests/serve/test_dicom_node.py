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
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless

from kidneyct.inference.batch import predict_inputs
from kidneyct.io.dicom_header import read_header
from kidneyct.serve.dicom_node import Destination, DicomNode, NodeSettings
from kidneyct.serve.dicom_store import CANNOT_UNDERSTAND, DATASET_DOES_NOT_MATCH, OUT_OF_RESOURCES

pynetdicom = pytest.importorskip("pynetdicom")
from pynetdicom import AE, evt  # noqa: E402
from pynetdicom.sop_class import (  # noqa: E402
    ComprehensiveSRStorage, CTImageStorage, MRImageStorage, SecondaryCaptureImageStorage, Verification)

REAL_SERIES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real-ct-examples" / \
    "upper-abdomen-dicom-no-kidney"
IDLE = 0.5


def wait_for(condition, timeout: float = 120.0):
    """Poll until `condition()` is truthy; its value, or a failure after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"gave up after {timeout:.0f} s")


class Sink:
    """The forward destination: a second Storage SCP on loopback that keeps what it is sent."""

    def __init__(self):
        self.received: list[pydicom.Dataset] = []
        ae = AE(ae_title="SINK")
        ae.add_supported_context(ComprehensiveSRStorage)
        ae.add_supported_context(SecondaryCaptureImageStorage)
        self.server = ae.start_server(("127.0.0.1", 0), block=False,
                                      evt_handlers=[(evt.EVT_C_STORE, self._store)])
        self.port = self.server.server_address[1]

    def _store(self, event):
        self.received.append(event.dataset)
        return 0x0000

    def reports(self) -> list[pydicom.Dataset]:
        return [ds for ds in list(self.received) if ds.Modality == "SR"]


@pytest.fixture
def sink():
    receiver = Sink()
    yield receiver
    receiver.server.shutdown()


@pytest.fixture
def start_node(trained_run, tmp_path):
    """Start a node on a free loopback port; every answer record lands in `node.records`."""
    nodes = []

    def start(**settings) -> DicomNode:
        records = []
        node = DicomNode(trained_run.best_checkpoint,
                         NodeSettings(out=tmp_path / "node", port=0, idle_seconds=IDLE, **settings),
                         on_answer=records.append)
        node.records = records
        nodes.append(node.start())
        return node

    yield start
    for node in nodes:
        node.stop()


def send(port: int, items, called: str = "KIDNEYCT", raw: bool = False, monkeypatch=None) -> list[int]:
    """C-STORE datasets or files in one association; the statuses. `raw` sends files as stored (no decoding,
    the SOP UIDs from the file meta), as a router forwards them."""
    ae = AE(ae_title="SENDER")
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    ae.add_requested_context(CTImageStorage, JPEG2000Lossless)  # one context per syntax: the real series'
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_established
    if raw:
        monkeypatch.setattr(pynetdicom._config, "STORE_SEND_CHUNKED_DATASET", True)
    try:
        return [assoc.send_c_store(item).Status for item in items]
    finally:
        assoc.release()


def series_files(phantom_dicom: Path, name: str) -> list[Path]:
    kind = name.split("-")[0].capitalize()
    return sorted((phantom_dicom / kind / name).glob("*.dcm"))


def test_loopback_sr_per_study_matches_kidneyct_predict(start_node, sink, phantom_dicom, tmp_path, monkeypatch):
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
    assert send(node.port, real_files, raw=True, monkeypatch=monkeypatch) == [0] * len(real_files)
    reports = wait_for(lambda: len(sink.reports()) == 2 and sink.reports())
    assert len([ds for ds in sink.received if ds.Modality == "OT"]) == 6  # three key images per study

    copies = tmp_path / "real"  # suffix-less UID names: given to predict as .dcm files, one folder
    copies.mkdir()
    for path in real_files:
        shutil.copy(path, copies / f"{path.name}.dcm")
    expected = predict_inputs(node.predictor, [phantom, copies], progress=False)  # what `kidneyct predict` runs
    for folder, study in zip((phantom, copies), expected.studies):
        header = read_header(next(folder.glob("*.dcm")))
        (report,) = [r for r in reports if r.StudyInstanceUID == header.StudyInstanceUID]
        finding = _finding(report)
        assert finding["tumor"] == study.tumor
        assert finding["probability"] == pytest.approx(study.tumor_probability, abs=1e-6)
        driving = [s.source for s in expected.slices if s.input == str(folder) and s.slice_index in study.driving_slices]
        assert sorted(finding["sources"]) == sorted(read_header(p).SOPInstanceUID for p in driving)
    assert {r["forward"]["sent"] for r in node.records} == {4}


def _finding(report: pydicom.Dataset) -> dict:
    import highdicom as hd

    from kidneyct.inference.dicom_sr import STUDY_PROBABILITY, TUMOR_CALL

    (group,) = hd.sr.ComprehensiveSR.from_dataset(report).content.get_image_measurement_groups()
    (probability,) = group.get_measurements(name=STUDY_PROBABILITY)
    (call,) = group.get_qualitative_evaluations(name=TUMOR_CALL)
    return {"tumor": call.value.meaning == "Present", "probability": probability.value,
            "sources": [image.referenced_sop_instance_uid for image in group.source_images]}
