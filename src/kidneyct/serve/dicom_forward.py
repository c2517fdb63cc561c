"""The node's way out: the SR and key images of each answer are C-STOREd to a destination (HOST:PORT:AET)
from a durable outbox, by a worker thread of their own, so that a slow or absent destination never delays
analysis and nothing is lost.

Each answer to forward becomes a job file, `outbox/<id>.json` under the node's folder, written atomically
before the answer is done: the files to send (relative to the node's folder), those already delivered, the
attempts so far and when to try next. The forwarder sends what is not yet delivered in one association,
with connection, ACSE and DIMSE timeouts; a failure is retried after 2 s, 4 s, 8 s ... at most 5 minutes
apart, for as long as it takes, across restarts of the node. A delivered job's file is removed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from kidneyct.errors import UnsafePath
from kidneyct.io.atomic import atomic_write
from kidneyct.io.paths import inside

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

    def __str__(self) -> str:
        return f"{self.host}:{self.port}:{self.ae_title}"


@dataclass(frozen=True)
class ForwardSettings:
    """Timeouts of one forwarding association, and the retry schedule."""

    connect_timeout_s: float = 10.0
    acse_timeout_s: float = 10.0
    dimse_timeout_s: float = 30.0
    network_timeout_s: float = 30.0
    first_retry_s: float = 2.0
    max_retry_s: float = 300.0


def forward_files(paths: list[Path], destination: Destination, calling_ae: str,
                  settings: ForwardSettings = ForwardSettings()) -> dict:
    """C-STORE files (SRs, key images) to a destination in one association.

    Args:
        paths: DICOM files written by `write_dicom_results`.
        destination: the receiving node.
        calling_ae: our AE title.
        settings: the association's timeouts.

    Returns:
        {"destination", "sent": [names], "failed": [[name, reason]]}; nothing raised, a failure is logged.
    """
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE
    from pynetdicom.sop_class import ComprehensiveSRStorage, SecondaryCaptureImageStorage

    ae = AE(ae_title=calling_ae)
    ae.connection_timeout, ae.acse_timeout = settings.connect_timeout_s, settings.acse_timeout_s
    ae.dimse_timeout, ae.network_timeout = settings.dimse_timeout_s, settings.network_timeout_s
    for sop_class in (ComprehensiveSRStorage, SecondaryCaptureImageStorage):
        ae.add_requested_context(sop_class, ExplicitVRLittleEndian)  # the syntax `write_study` writes
    record = {"destination": str(destination), "sent": [], "failed": []}
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        record["failed"] = [[p.name, "association not established"] for p in paths]
        return record
    try:
        for path in paths:
            reason = _send(assoc, path)
            if reason is None:
                record["sent"].append(path.name)
            else:
                record["failed"].append([path.name, reason])
    finally:
        if assoc.is_established:
            assoc.release()
    return record


def _send(assoc, path: Path) -> str | None:
    """C-STORE one file; None on success, else why not."""
    try:
        status = assoc.send_c_store(path)
    except (ValueError, AttributeError, OSError, RuntimeError) as error:  # no context, unreadable file, aborted
        return f"{type(error).__name__}: {error}"
    code = getattr(status, "Status", None)
    if code == 0x0000:
        return None
    return "no response (timeout or abort)" if code is None else f"status 0x{code:04X}"


class Outbox:
    """Forwarding jobs on disk, one JSON file each (see the module docstring)."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.folder = self.out / "outbox"

    def add(self, files: list[Path], destination: Destination, series_uid: str) -> str:
        """Queue files for the destination; returns the job's id (its file is `outbox/<id>.json`)."""
        job_id = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}"
        job = {"id": job_id, "series_uid": series_uid, "destination": str(destination),
               "files": [str(p.relative_to(self.out)) for p in files], "delivered": [], "attempts": 0,
               "next_try": time.time(), "last_error": None}
        self.save(job)
        return job_id

    def save(self, job: dict) -> None:
        text = json.dumps(job, indent=2)
        atomic_write(self.folder / f"{job['id']}.json", lambda stream: stream.write(text), binary=False)

    def jobs(self) -> list[dict]:
        """Every job not yet delivered, oldest first (an unreadable job file is logged and left alone)."""
        found = []
        for path in sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []:
            try:
                found.append(json.loads(path.read_text()))
            except (OSError, ValueError) as error:
                log.error("outbox: cannot read %s (%s); left in place", path.name, error)
        return found

    def done(self, job: dict) -> None:
        (self.folder / f"{job['id']}.json").unlink(missing_ok=True)

    def path(self, relative: str) -> Path:
        """A job's file, checked to lie inside the node's folder."""
        return inside(self.out, *Path(relative).parts)


class Forwarder:
    """The outbox's worker thread: sends due jobs, schedules retries (see the module docstring)."""

    def __init__(self, outbox: Outbox, destination: Destination, calling_ae: str,
                 settings: ForwardSettings = ForwardSettings(), on_delivered=None):
        self.outbox, self.destination, self.calling_ae, self.settings = outbox, destination, calling_ae, settings
        self.on_delivered = on_delivered
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="kidneyct-dicom-forward", daemon=True)

    def start(self) -> "Forwarder":
        self._thread.start()
        return self

    def wake(self) -> None:
        """A job was added: look at the outbox now."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            jobs = self.outbox.jobs()
            due = [job for job in jobs if job.get("next_try", 0) <= time.time()]
            for job in due:
                if self._stop.is_set():
                    return
                self.attempt(job)
            if not due:
                wait = min((job.get("next_try", 0) for job in jobs), default=time.time() + 60) - time.time()
                self._wake.wait(min(max(wait, 0.05), 60.0))

    def attempt(self, job: dict) -> bool:
        """One try at a job; True once every file of it is delivered."""
        try:
            pending = [self.outbox.path(p) for p in job["files"] if p not in job["delivered"]]
        except (KeyError, UnsafePath) as error:
            log.error("outbox job %s is malformed (%s); left in place", job.get("id"), error)
            job["next_try"] = time.time() + self.settings.max_retry_s
            self.outbox.save(job)
            return False
        record = forward_files(pending, self.destination, self.calling_ae, self.settings)
        sent = set(record["sent"])
        job["delivered"] += [str(p.relative_to(self.outbox.out)) for p in pending if p.name in sent]
        if len(job["delivered"]) >= len(job["files"]):
            self.outbox.done(job)
            log.info("forwarded %d file(s) of series %s to %s", len(job["files"]), job.get("series_uid"),
                     self.destination)
            if self.on_delivered is not None:
                self.on_delivered(job)
            return True
        job["attempts"] += 1
        delay = min(self.settings.max_retry_s, self.settings.first_retry_s * 2 ** (job["attempts"] - 1))
        job["next_try"] = time.time() + delay
        job["last_error"] = "; ".join(f"{name}: {reason}" for name, reason in record["failed"][:3])
        self.outbox.save(job)
        log.warning("forward of series %s to %s failed (attempt %d: %s); retrying in %.0f s",
                    job.get("series_uid"), self.destination, job["attempts"], job["last_error"], delay)
        return False
