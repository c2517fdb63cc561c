"""Forwarding that loses nothing: answers are queued in a durable outbox and sent by a thread of their own,
so a destination that hangs delays no analysis; failed sends are retried until the destination takes them."""

from __future__ import annotations

import json
import socket

import pydicom
import pytest

from kidneyct.serve.dicom_forward import Destination, ForwardSettings

pytest.importorskip("pynetdicom")

QUICK = ForwardSettings(connect_timeout_s=0.5, acse_timeout_s=0.5, dimse_timeout_s=1.0, network_timeout_s=1.0,
                        first_retry_s=0.2, max_retry_s=0.5)


def test_forward_destination_is_parsed_or_refused():
    assert Destination.parse("pacs.example:104:ARCHIVE") == Destination("pacs.example", 104, "ARCHIVE")
    assert Destination.parse("[::1]:11113:SINK") == Destination("::1", 11113, "SINK")
    for bad in ("pacs:104", "pacs:port:AET", ":104:AET", "pacs:104:" + "A" * 17):
        with pytest.raises(ValueError, match="HOST:PORT:AET"):
            Destination.parse(bad)


def test_a_hanging_destination_delays_no_answer_and_loses_nothing(start_node, make_sink, phantom_dicom, send,
                                                                  wait_for):
    hanging = socket.socket()  # accepts connections (the kernel's backlog) and never answers
    hanging.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(8)
    port = hanging.getsockname()[1]
    node = start_node(forward=Destination("127.0.0.1", port, "SINK"), forwarding=QUICK)
    files = sorted((phantom_dicom / "Tumor" / "tumor-0001").glob("*.dcm"))
    assert send(node.port, [pydicom.dcmread(p) for p in files]) == [0] * len(files)
    (record,) = wait_for(lambda: node.records, timeout=120)  # answered all the same, the SR queued
    assert record["forward"]["queued"] == 4
    outbox = node.settings.out / "outbox"
    jobs = wait_for(lambda: [json.loads(p.read_text()) for p in outbox.glob("*.json")
                             if json.loads(p.read_text())["attempts"] >= 1] or None, timeout=30)
    assert jobs and all(job["delivered"] == [] and job["last_error"] for job in jobs)
    hanging.close()  # the destination comes back on the same port
    sink = make_sink(port)
    wait_for(lambda: node.forwarded, timeout=60)
    assert not list(outbox.glob("*.json"))
    assert len(sink.reports()) == 1 and len(sink.received) == 4  # the SR and its three key images
