"""`kidneyct listen --allow-ae TITLE[@HOST]`: only the listed calling AE titles, from their hosts when given,
get an association."""

from __future__ import annotations

import pytest

from kidneyct.serve.dicom_peers import Peer

pytest.importorskip("pynetdicom")
from pynetdicom import AE  # noqa: E402
from pynetdicom.sop_class import Verification  # noqa: E402


def test_allow_ae_entries_are_parsed_or_refused():
    assert Peer.parse("PACS").matches("PACS", "10.1.2.3") and not Peer.parse("PACS").matches("PACS2", "10.1.2.3")
    local = Peer.parse("ROUTER@127.0.0.1")
    assert local.matches("ROUTER", "127.0.0.1") and not local.matches("ROUTER", "127.0.0.2")
    assert Peer.parse("ROUTER@[::1]").matches("ROUTER", "::1")
    assert Peer.parse("ROUTER@localhost").matches("ROUTER", "127.0.0.1")
    for bad in ("", "A" * 17, "PACS@", "PA\\CS", "P\nACS"):
        with pytest.raises(ValueError, match="--allow-ae"):
            Peer.parse(bad)


def _associates(port: int, calling: str, source: str) -> bool:
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="KIDNEYCT", bind_address=(source, 0))
    established = assoc.is_established
    if established:
        assoc.release()
    else:
        assert assoc.is_rejected  # an A-ASSOCIATE-RJ, not a dropped connection
    return established


def test_only_allowed_peers_get_an_association(start_node, caplog):
    node = start_node(allowed_peers=(Peer.parse("ROUTER@127.0.0.1"), Peer.parse("MODALITY")))
    assert _associates(node.port, "ROUTER", "127.0.0.1")
    assert not _associates(node.port, "ROUTER", "127.0.0.2")  # the right title from another host
    assert _associates(node.port, "MODALITY", "127.0.0.3")  # no host given: from anywhere
    assert not _associates(node.port, "STRANGER", "127.0.0.1")
    assert "'STRANGER' at 127.0.0.1 rejected: not in the allow-list" in caplog.text
