"""What the DICOM node does with each instance it is sent: check it, store it (atomically, one file per
SOP Instance UID, one folder per series) and note its series' arrival, with no model involved. The
series registry tells the node's worker which series have gone quiet and still need an answer."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from kidneyct.io.atomic import atomic_write
from kidneyct.io.dicom_header import series_identity

log = logging.getLogger(__name__)

# C-STORE statuses (PS3.4 B.2.3 and PS3.7 C.4.2)
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700  # the instance could not be stored (full disk, unwritable folder)
DATASET_DOES_NOT_MATCH = 0xA900  # e.g. an MR image sent as CT Image Storage
CANNOT_UNDERSTAND = 0xC210  # the dataset cannot be decoded


@dataclass
class SeriesState:
    """One series as the node has received it so far."""

    series_uid: str
    study_uid: str
    folder: Path
    received: set[str] = field(default_factory=set)  # SOP Instance UIDs stored
    answered: set[str] = field(default_factory=set)  # those the last answer was made from
    last_seen: float = 0.0  # time.monotonic() of the last instance
    instances: int = 0  # stores, repeats included
    senders: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class DueSeries:
    """A snapshot of a quiet series for the worker: what its answer will be made from."""

    series_uid: str
    study_uid: str
    folder: Path
    instances: frozenset[str]


class SeriesRegistry:
    """Series of received instances, shared by the association threads and the worker (one lock)."""

    def __init__(self, incoming: Path):
        self.incoming = Path(incoming)
        self._lock = threading.Lock()
        self._series: dict[str, SeriesState] = {}

    def folder(self, series_uid: str) -> Path:
        """Where the series' instances are stored (one file per SOP Instance UID).

        Args:
            series_uid: the Series Instance UID (derived when the dataset's is blank).

        Returns:
            The folder, `incoming/<series_uid>`.
        """
        return self.incoming / series_uid

    def note(self, series_uid: str, study_uid: str, sop_uid: str, sender: str) -> None:
        """Record that an instance of the series was stored (a repeat adds nothing new to answer).

        Args:
            series_uid: its series.
            study_uid: its study.
            sop_uid: its SOP Instance UID.
            sender: the calling AE title.
        """
        with self._lock:
            state = self._series.setdefault(series_uid, SeriesState(series_uid, study_uid, self.folder(series_uid)))
            state.received.add(sop_uid)
            state.last_seen = time.monotonic()
            state.instances += 1
            state.senders.add(sender)

    def due(self, idle_seconds: float) -> list[DueSeries]:
        """Series quiet for `idle_seconds` that hold instances their last answer did not see.

        Args:
            idle_seconds: the quiet time after the last instance.

        Returns:
            Snapshots, the longest-quiet first.
        """
        now = time.monotonic()
        with self._lock:
            ready = [s for s in self._series.values()
                     if now - s.last_seen >= idle_seconds and not s.received <= s.answered]
            ready.sort(key=lambda s: s.last_seen)
            return [DueSeries(s.series_uid, s.study_uid, s.folder, frozenset(s.received)) for s in ready]

    def mark_answered(self, due: DueSeries) -> None:
        """The answer to `due` is done (written, or failed and logged): wait for new instances.

        Args:
            due: the snapshot `due()` returned; instances that arrived since keep the series pending.
        """
        with self._lock:
            self._series[due.series_uid].answered |= due.instances


def store_instance(event, registry: SeriesRegistry) -> int:
    """The node's C-STORE handler: decode, check, store atomically, note the series.

    Args:
        event: pynetdicom's EVT_C_STORE event.
        registry: the node's series registry.

    Returns:
        The C-STORE status: success, or a failure the sender sees (nothing is stored then).
    """
    sender = str(event.assoc.requestor.ae_title).strip()
    sop_uid = str(event.request.AffectedSOPInstanceUID)
    try:
        ds = event.dataset
        ds.file_meta = event.file_meta
        for _ in ds.iterall():  # pydicom parses lazily: meet a damaged element here, not while saving
            pass
        modality = str(ds.get("Modality", "") or "").upper()
        # the request carries the SOP UIDs: fill what an anonymiser blanked in the dataset
        ds.SOPInstanceUID = str(ds.get("SOPInstanceUID", "") or "") or sop_uid
        ds.SOPClassUID = str(ds.get("SOPClassUID", "") or "") or str(event.request.AffectedSOPClassUID)
        study_uid, series_uid = series_identity(ds)
    except Exception as error:  # a damaged stream fails in many ways inside pydicom
        log.warning("refused instance %s from %s: cannot decode the dataset (%s: %s)", sop_uid, sender,
                    type(error).__name__, error)
        return CANNOT_UNDERSTAND
    if modality and modality != "CT":
        log.warning("refused instance %s from %s: modality %s sent as CT Image Storage", sop_uid, sender, modality)
        return DATASET_DOES_NOT_MATCH
    path = registry.folder(series_uid) / f"{sop_uid}.dcm"
    try:
        atomic_write(path, lambda stream: ds.save_as(stream, enforce_file_format=True))
    except OSError as error:
        log.error("could not store instance %s from %s in %s: %s", sop_uid, sender, path.parent, error)
        return OUT_OF_RESOURCES
    except Exception as error:  # an element pydicom cannot encode again
        log.warning("refused instance %s from %s: cannot encode the dataset (%s: %s)", sop_uid, sender,
                    type(error).__name__, error)
        return CANNOT_UNDERSTAND
    registry.note(series_uid, study_uid, sop_uid, sender)
    return SUCCESS
