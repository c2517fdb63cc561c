"""What the DICOM node does with each instance it is sent: check it, store it (atomically, one file per
SOP Instance UID, one folder per series) and note its series' arrival, with no model involved. The
series registry tells the node's worker which series have gone quiet and still need an answer.

pynetdicom writes each instance to a temporary file as it arrives (never whole into memory; the node's
`GuardedSocket` stops writing past the instance limit). Before anything is stored:
- the UIDs that name files and folders must be UIDs (digits and dots, at most 64 characters): the request's
  Affected SOP Instance UID, and the dataset's Study and Series Instance UIDs unless blank (then derived, as
  `predict` derives them); the dataset's SOP Instance UID, when given, must be the request's;
- the instance must fit the limits: its bytes as received, its pixels' decoded size and sides from the
  header (the web app's budget; a deflated dataset is inflated through the bounded reader), and its series'
  decoded size so far;
- every element but the large deferred ones (pixels) is parsed, so damage shows here, not at prediction.
Over a limit the answer is Out of Resources; a malformed or misnamed instance is "cannot understand".
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from kidneyct.errors import ImageReadError, OverBudget, UnsafePath
from kidneyct.io.atomic import atomic_write
from kidneyct.io.budget import read_limits
from kidneyct.io.dicom_header import is_valid_uid, series_identity
from kidneyct.io.dicom_limits import check_pixel_header, open_dataset
from kidneyct.io.paths import inside
from kidneyct.serve.dicom_wire import guard_of

log = logging.getLogger(__name__)

# C-STORE statuses (PS3.4 B.2.3 and PS3.7 C.4.2)
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700  # over a limit, or the instance could not be stored (full disk, unwritable folder)
DATASET_DOES_NOT_MATCH = 0xA900  # e.g. an MR image sent as CT Image Storage
CANNOT_UNDERSTAND = 0xC210  # the dataset cannot be decoded
INVALID_UID = 0xC211  # a UID that is not one (a path, letters, too long): "cannot understand", distinctly
_PREAMBLE_AND_META_HEADER = 128 + 4 + 12  # preamble, 'DICM', the group length element


@dataclass(frozen=True)
class StoreLimits:
    """What one instance and one series may cost (see `kidneyct listen --help`)."""

    max_instance_bytes: int  # the dataset as received
    max_series_bytes: int  # a series' instances together, each at the larger of received and decoded size
    max_decoded_bytes: int  # one instance's pixels, decoded: the web app's budget
    max_side: int


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
    costs: dict[str, int] = field(default_factory=dict)  # bytes per SOP Instance UID, stored or being stored

    @property
    def cost(self) -> int:
        return sum(self.costs.values())


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
        """Where the series' instances are stored: `incoming/<series_uid>`, checked to stay inside.

        Args:
            series_uid: a valid Series Instance UID (derived when the dataset's is blank).
        """
        return inside(self.incoming, series_uid)

    def _state(self, series_uid: str, study_uid: str) -> SeriesState:
        return self._series.setdefault(series_uid, SeriesState(series_uid, study_uid, self.folder(series_uid)))

    def admit(self, series_uid: str, study_uid: str, sop_uid: str, cost: int, limit: int) -> bool:
        """Reserve `cost` bytes for an instance unless its series would exceed `limit` (a repeated instance
        replaces its former cost). False: refuse the instance."""
        with self._lock:
            state = self._state(series_uid, study_uid)
            if state.cost - state.costs.get(sop_uid, 0) + cost > limit:
                if not state.costs:  # nothing of it stored: keep no state for it
                    del self._series[series_uid]
                return False
            state.costs[sop_uid] = cost
            return True

    def withdraw(self, series_uid: str, sop_uid: str) -> None:
        """Give back the reservation of an instance that could not be stored (unless an earlier copy is)."""
        with self._lock:
            state = self._series.get(series_uid)
            if state is not None and sop_uid not in state.received:
                state.costs.pop(sop_uid, None)

    def note(self, series_uid: str, study_uid: str, sop_uid: str, sender: str) -> None:
        """Record that an instance of the series was stored (a repeat adds nothing new to answer).

        Args:
            series_uid: its series.
            study_uid: its study.
            sop_uid: its SOP Instance UID.
            sender: the calling AE title and address.
        """
        with self._lock:
            state = self._state(series_uid, study_uid)
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
                     if s.received and now - s.last_seen >= idle_seconds and not s.received <= s.answered]
            ready.sort(key=lambda s: s.last_seen)
            return [DueSeries(s.series_uid, s.study_uid, s.folder, frozenset(s.received)) for s in ready]

    def mark_answered(self, due: DueSeries) -> None:
        """The answer to `due` is done (written, or failed and logged): wait for new instances.

        Args:
            due: the snapshot `due()` returned; instances that arrived since keep the series pending.
        """
        with self._lock:
            self._series[due.series_uid].answered |= due.instances


class Refused(Exception):
    """An instance the node does not store: the C-STORE status and why (logged with the sender)."""

    def __init__(self, status: int, reason: str):
        self.status, self.reason = status, reason
        super().__init__(reason)


@dataclass(frozen=True)
class Received:
    """An instance that passed the checks: where it belongs and what it costs its series."""

    study_uid: str
    series_uid: str
    sop_uid: str
    cost: int


def _shown(text: str) -> str:
    """A value from the network as a log may show it: escaped, cut."""
    return ascii(text[:80])


def _dataset_bytes(path: Path) -> int:
    """The dataset's size in the temporary file pynetdicom wrote (file meta left out)."""
    from pydicom.filereader import read_file_meta_info

    meta = read_file_meta_info(path)
    return path.stat().st_size - _PREAMBLE_AND_META_HEADER - int(meta.get("FileMetaInformationGroupLength", 0))


def _parse_elements(ds) -> None:
    """Convert every element but the deferred large values (pixels), recursing into sequences: pydicom
    parses lazily, and a damaged element must fail here rather than at prediction."""
    for tag in list(ds.keys()):
        raw = ds.get_item(tag)
        if getattr(raw, "value", True) is None and getattr(raw, "length", 0):
            continue  # deferred: read from the file only when used
        element = ds[tag]
        if element.VR == "SQ":
            for item in element.value:
                _parse_elements(item)


def _check_uids(ds, request_uid: str) -> tuple[str, str]:
    """(Study, Series) Instance UIDs naming the instance's folders; Refused when any UID is not one."""
    given = str(ds.get("SOPInstanceUID", "") or "")
    if given and given != request_uid:
        raise Refused(INVALID_UID, f"dataset's SOP Instance UID {_shown(given)} is not the request's")
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID"):
        value = str(ds.get(keyword, "") or "")
        if value and not is_valid_uid(value):
            raise Refused(INVALID_UID, f"{keyword} {_shown(value)} is not a UID (digits and dots, at most 64)")
    return series_identity(ds)


def check_instance(path: Path, request_uid: str, limits: StoreLimits) -> Received:
    """Everything the node checks before storing an instance (see the module docstring).

    Args:
        path: the temporary file pynetdicom wrote.
        request_uid: the C-STORE request's Affected SOP Instance UID.
        limits: the node's limits.

    Returns:
        Where the instance belongs; Refused with the status to answer otherwise.
    """
    if not is_valid_uid(request_uid):
        raise Refused(INVALID_UID, f"SOP Instance UID {_shown(request_uid)} is not a UID (digits and dots, at most 64)")
    size = _dataset_bytes(path)
    if size > limits.max_instance_bytes:
        raise Refused(OUT_OF_RESOURCES, f"instance of more than {limits.max_instance_bytes:,} bytes (--max-instance-mb)")
    try:
        with read_limits(limits.max_decoded_bytes, limits.max_side):
            ds = open_dataset(path)
            _parse_elements(ds)
            modality = str(ds.get("Modality", "") or "").upper()
            if modality and modality != "CT":
                raise Refused(DATASET_DOES_NOT_MATCH, f"modality {_shown(modality)} sent as CT Image Storage")
            check_pixel_header(path, ds)
            study_uid, series_uid = _check_uids(ds, request_uid)
            decoded = int(ds.Rows) * int(ds.Columns) * max(1, int(ds.get("BitsAllocated", 16) or 16) // 8)
    except OverBudget as error:
        raise Refused(OUT_OF_RESOURCES, error.reason) from None
    except ImageReadError as error:
        raise Refused(CANNOT_UNDERSTAND, error.reason) from None
    except Refused:
        raise
    except Exception as error:  # a damaged stream fails in many ways inside pydicom
        raise Refused(CANNOT_UNDERSTAND, f"cannot decode the dataset ({type(error).__name__}: {error})") from None
    return Received(study_uid, series_uid, request_uid, max(size, decoded))


def store_instance(event, registry: SeriesRegistry, limits: StoreLimits) -> int:
    """The node's C-STORE handler: check, store atomically, note the series.

    Args:
        event: pynetdicom's EVT_C_STORE event (the dataset in a temporary file: `event.dataset_path`).
        registry: the node's series registry.
        limits: the node's limits.

    Returns:
        The C-STORE status: success, or a failure the sender sees (nothing is stored then).
    """
    assoc = event.assoc
    sender = f"{str(assoc.requestor.ae_title).strip()}@{assoc.requestor.address}"
    request_uid = str(event.request.AffectedSOPInstanceUID or "")
    guard = guard_of(assoc)
    try:
        if guard is not None and guard.over_association_limit:
            raise Refused(OUT_OF_RESOURCES, f"the association sent more than {guard.limits.max_association_bytes:,} "
                                            "bytes of instances (--max-association-mb)")
        source = Path(event.dataset_path)
        received = check_instance(source, request_uid, limits)
        path = inside(registry.folder(received.series_uid), f"{received.sop_uid}.dcm")
        if not registry.admit(received.series_uid, received.study_uid, received.sop_uid, received.cost,
                              limits.max_series_bytes):
            raise Refused(OUT_OF_RESOURCES, f"series {received.series_uid} would exceed "
                                            f"{limits.max_series_bytes:,} bytes (--max-series-mb)")
    except Refused as refusal:
        log.warning("refused instance %s from %s: %s", _shown(request_uid), sender, refusal.reason)
        return refusal.status
    except UnsafePath as error:  # cannot happen to valid UIDs; kept as the last line of defence
        log.error("refused instance %s from %s: %s", _shown(request_uid), sender, error)
        return INVALID_UID
    try:
        with open(source, "rb") as stream_in:  # the file as received: pynetdicom's file meta and the dataset
            atomic_write(path, lambda stream: shutil.copyfileobj(stream_in, stream, 1024 * 1024))
    except OSError as error:
        registry.withdraw(received.series_uid, received.sop_uid)
        log.error("could not store instance %s from %s in %s: %s", received.sop_uid, sender, path.parent, error)
        return OUT_OF_RESOURCES
    registry.note(received.series_uid, received.study_uid, received.sop_uid, sender)
    return SUCCESS
