"""What a peer can do to the DICOM node below DICOM: PDUs claiming gigabytes, stalls inside a PDU, floods
of held connections. Each costs the peer its connection, never the node its memory or other peers their
turn."""

from __future__ import annotations

import socket
import struct
import time

import pytest

from kidneyct.serve.dicom_node import NodeLimits

pytest.importorskip("pynetdicom")
from pynetdicom import AE  # noqa: E402
from pynetdicom.sop_class import Verification  # noqa: E402

A_ASSOCIATE_RQ = 0x01


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
        return True
    except (TimeoutError, socket.timeout):
        return False
    except ConnectionResetError:
        return True


def _connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def _echo(port: int, source: str = "127.0.0.1") -> bool:
    ae = AE(ae_title="SENDER")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="KIDNEYCT", bind_address=(source, 0))
    if not assoc.is_established:
        return False
    ok = getattr(assoc.send_c_echo(), "Status", None) == 0x0000
    assoc.release()
    return ok


def test_a_pdu_claiming_gigabytes_or_stalling_closes_its_connection(start_node):
    node = start_node(limits=NodeLimits(idle_timeout_s=0.5))
    with _connect(node.port) as sock:
        sock.sendall(struct.pack(">BBL", A_ASSOCIATE_RQ, 0, 3 << 30) + b"\0" * 1024)  # "3 GiB follow"
        started = time.monotonic()
        assert _closed_within(sock, 5) and time.monotonic() - started < 1
    with _connect(node.port) as sock:
        sock.sendall(struct.pack(">BBL", A_ASSOCIATE_RQ, 0, 200) + b"\0" * 20)  # and then nothing
        started = time.monotonic()
        assert _closed_within(sock, 5) and time.monotonic() - started < 3
    assert _echo(node.port)  # the node goes on


def test_one_peer_cannot_hold_every_connection(start_node):
    node = start_node(limits=NodeLimits(max_associations=6, max_peer_associations=2, acse_timeout_s=1.0))
    held = [_connect(node.port, "127.0.0.2") for _ in range(2)]  # connect, then never ask for an association
    try:
        with _connect(node.port, "127.0.0.2") as extra:
            assert _closed_within(extra, 0.5)  # beyond its share: closed on arrival
        assert _echo(node.port, "127.0.0.1")  # another address still gets its turn at once
        assert all(_closed_within(sock, 3) for sock in held)  # silent ones go after the ACSE timeout
        assert _echo(node.port, "127.0.0.2")  # and their address is served again
    finally:
        for sock in held:
            sock.close()


def test_connections_the_node_closes_give_their_share_back(start_node):
    node = start_node(limits=NodeLimits(max_peer_associations=2))
    for _ in range(4):  # each closed by the guard (a PDU claiming 3 GiB), or reset by the peer
        with _connect(node.port) as sock:
            sock.sendall(struct.pack(">BBL", A_ASSOCIATE_RQ, 0, 3 << 30))
            assert _closed_within(sock, 5)
        ae = AE(ae_title="SENDER")
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", node.port, ae_title="KIDNEYCT")
        assert assoc.is_established
        raw = assoc.dul.socket.socket
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.close()
    time.sleep(0.5)
    assert _echo(node.port)  # nothing was left counted against the address
