"""The node's way out: C-STORE the SR and key images of an answer to a destination (HOST:PORT:AET)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Destination:
    """Where SRs and key images are C-STOREd: HOST:PORT:AET."""

    host: str
    port: int
    ae_title: str

    @classmethod
    def parse(cls, text: str) -> "Destination":
        """A Destination from its command-line form.

        Args:
            text: HOST:PORT:AET (an IPv6 host in brackets).

        Returns:
            The Destination; ValueError when `text` is malformed.
        """
        host, sep, rest = text.rpartition(":")
        host, sep2, port = host.rpartition(":")
        if not (sep and sep2 and host and port.isdigit() and 0 < len(rest) <= 16):
            raise ValueError(f"--forward must be HOST:PORT:AET (AE title up to 16 characters), got {text!r}")
        return cls(host.strip("[]"), int(port), rest)


def forward_files(paths: list[Path], destination: Destination, calling_ae: str) -> dict:
    """C-STORE files (SRs, key images) to a destination in one association.

    Args:
        paths: DICOM files written by `write_dicom_results`.
        destination: the receiving node.
        calling_ae: our AE title.

    Returns:
        {"destination", "sent", "failed": [[file, reason]]}; nothing raised, a failure is logged.
    """
    from pynetdicom import AE
    from pynetdicom.sop_class import ComprehensiveSRStorage, SecondaryCaptureImageStorage
    from pydicom.uid import ExplicitVRLittleEndian

    ae = AE(ae_title=calling_ae)
    for sop_class in (ComprehensiveSRStorage, SecondaryCaptureImageStorage):
        ae.add_requested_context(sop_class, ExplicitVRLittleEndian)  # the syntax `write_study` writes
    record = {"destination": f"{destination.host}:{destination.port}:{destination.ae_title}", "sent": 0, "failed": []}
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        record["failed"] = [[p.name, "association not established"] for p in paths]
        log.error("forward to %s: association not established", record["destination"])
        return record
    try:
        for path in paths:
            reason = _send(assoc, path)
            if reason is None:
                record["sent"] += 1
            else:
                record["failed"].append([path.name, reason])
                log.error("forward %s to %s: %s", path.name, record["destination"], reason)
    finally:
        assoc.release()
    return record


def _send(assoc, path: Path) -> str | None:
    """C-STORE one file; None on success, else why not."""
    try:
        status = assoc.send_c_store(path)
    except (ValueError, AttributeError, OSError) as error:  # no accepted context, unreadable file
        return f"{type(error).__name__}: {error}"
    code = getattr(status, "Status", None)
    if code == 0x0000:
        return None
    return "no response" if code is None else f"status 0x{code:04X}"
