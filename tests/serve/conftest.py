"""DICOM node fixtures shared by the node's tests: a node on a free loopback port, a receiving SCP for what
it forwards, a sender and a poller."""

from __future__ import annotations

import time

import pydicom
import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless

IDLE = 0.5  # the nodes' --idle-seconds in these tests


def _wait_for(condition, timeout: float = 120.0):
    """Poll until `condition()` is truthy; its value, or a failure after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"gave up after {timeout:.0f} s")


@pytest.fixture
def wait_for():
    return _wait_for


class Sink:
    """The forward destination: a second Storage SCP on loopback that keeps what it is sent."""

    def __init__(self, port: int = 0):
        from pynetdicom import AE, evt
        from pynetdicom.sop_class import ComprehensiveSRStorage, SecondaryCaptureImageStorage

        self.received: list[pydicom.Dataset] = []
        ae = AE(ae_title="SINK")
        ae.add_supported_context(ComprehensiveSRStorage)
        ae.add_supported_context(SecondaryCaptureImageStorage)
        self.server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)])
        self.port = self.server.server_address[1]

    def _store(self, event):
        self.received.append(event.dataset)
        return 0x0000

    def reports(self) -> list[pydicom.Dataset]:
        return [ds for ds in list(self.received) if ds.Modality == "SR"]


@pytest.fixture
def make_sink():
    """make_sink(port=0): a receiving SCP on that loopback port, shut down after the test."""
    made = []

    def make(port: int = 0) -> Sink:
        made.append(Sink(port))
        return made[-1]

    yield make
    for receiver in made:
        receiver.server.shutdown()


@pytest.fixture
def sink(make_sink):
    return make_sink()


@pytest.fixture
def start_node(trained_run, tmp_path):
    """Start a node on a free loopback port (NodeSettings keywords as given); every answer record lands in
    `node.records`, every delivered outbox job in `node.forwarded`."""
    from kidneyct.serve.dicom_node import DicomNode, NodeSettings

    nodes = []

    def start(**settings):
        records, forwarded = [], []
        settings = {"out": tmp_path / "node", "port": 0, "idle_seconds": IDLE, **settings}
        node = DicomNode(trained_run.best_checkpoint, NodeSettings(**settings), on_answer=records.append,
                         on_forwarded=forwarded.append)
        node.records, node.forwarded = records, forwarded
        nodes.append(node.start())
        return node

    yield start
    for node in nodes:
        node.stop()


@pytest.fixture
def send(monkeypatch):
    """send(port, items, called=, calling=, raw=, bind=): C-STORE datasets or files in one association; the
    statuses (None for an instance without an answer). `raw` sends files as stored (no decoding, the SOP UIDs
    from the file meta), as a router forwards them; `bind` picks the source address (127.0.0.x)."""
    import pynetdicom
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage

    def deliver(port: int, items, called: str = "KIDNEYCT", calling: str = "SENDER", raw: bool = False,
                bind: str = "127.0.0.1") -> list[int | None]:
        ae = AE(ae_title=calling)
        for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless, DeflatedExplicitVRLittleEndian):
            ae.add_requested_context(CTImageStorage, syntax)  # one context each: files sent raw are not converted
        assoc = ae.associate("127.0.0.1", port, ae_title=called, bind_address=(bind, 0))
        assert assoc.is_established
        monkeypatch.setattr(pynetdicom._config, "STORE_SEND_CHUNKED_DATASET", raw)
        try:
            return [getattr(assoc.send_c_store(item), "Status", None) for item in items]
        finally:
            if assoc.is_established:
                assoc.release()

    return deliver
