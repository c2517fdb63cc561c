"""`kidneyct listen`: a DICOM node. A Storage SCP (pynetdicom) accepts CT Image Storage and Verification
(C-ECHO) from the peers it allows and refuses every other SOP class at association. Instances are checked
and stored per series (`dicom_store`) within the node's limits (`dicom_wire`, `dicom_peers`); a series quiet
for `idle_seconds` is answered by one worker thread that owns the model: kidneyct.inference.run over the
series, results CSV/JSON, the DICOM SR and key images (`inference.dicom_results`), queued in the outbox for
the forward destination (`dicom_forward`, which sends from a thread of its own), and `answer.json` last.

Every association runs in pynetdicom's own thread and only stores files; inference never runs there.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path

from kidneyct.about import DISCLAIMER
from kidneyct.config import SERVE_MAX_DECODED_MB, SERVE_MAX_SIDE
from kidneyct.inference.dicom_results import StudyFiles, write_dicom_results
from kidneyct.inference.model_facts import ModelFacts
from kidneyct.inference.predictor import PredictOptions, Predictor
from kidneyct.inference.results import StudyResult
from kidneyct.inference.writers import write_results
from kidneyct.io.atomic import atomic_write
from kidneyct.io.paths import inside
from kidneyct.serve.dicom_forward import Destination, ForwardSettings, Forwarder, Outbox
from kidneyct.serve.dicom_peers import Peer, screen_association
from kidneyct.serve.dicom_store import DueSeries, SeriesRegistry, StoreLimits, store_instance
from kidneyct.serve.dicom_wire import GuardedServer, WireLimits
from kidneyct.serve.network import is_loopback

log = logging.getLogger(__name__)

MIB = 1024 * 1024
PRESSURE_SHARE = 0.75  # connections open, as a share of the total, beyond which a new one gets the short ACSE timeout
PRESSURE_ACSE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class NodeLimits:
    """What peers may cost the node (see `kidneyct listen --help`). Over a byte limit an instance is answered
    Out of Resources (0xA700) and the node goes on serving."""

    max_instance_bytes: int = 64 * MIB  # one instance's dataset as received
    max_association_bytes: int = 2048 * MIB  # one association's instances together
    max_series_bytes: int = 512 * MIB  # one series (what one answer reads), decoded size
    max_decoded_bytes: int = SERVE_MAX_DECODED_MB * MIB  # one instance's pixels decoded: the web app's budget
    max_side: int = SERVE_MAX_SIDE  # pixels per side, as in the web app
    max_pdu_bytes: int = 1 * MIB
    max_associations: int = 32  # open at once, in all
    max_peer_associations: int = 8  # open at once from one address
    acse_timeout_s: float = 10.0  # to send the association request (2 s when the node is nearly full)
    idle_timeout_s: float = 30.0  # an association silent this long, or stalled inside a PDU, is ended
    dimse_timeout_s: float = 30.0

    def __post_init__(self):
        sizes = (self.max_instance_bytes, self.max_association_bytes, self.max_series_bytes, self.max_decoded_bytes,
                 self.max_pdu_bytes, self.max_side, self.max_associations, self.max_peer_associations)
        if min(sizes) < 1 or min(self.acse_timeout_s, self.idle_timeout_s, self.dimse_timeout_s) <= 0:
            raise ValueError(f"node limits and timeouts must be positive, got {self}")


@dataclass
class NodeSettings:
    """How `kidneyct listen` runs (see `kidneyct listen --help`)."""

    out: Path
    ae_title: str = "KIDNEYCT"
    host: str = "127.0.0.1"
    port: int = 11112
    idle_seconds: float = 5.0
    forward: Destination | None = None
    threshold: float | None = None
    top_k: int | None = None  # None: the checkpoint's study rule
    device: str = "cpu"
    allowed_peers: tuple[Peer, ...] = ()  # --allow-ae; empty: any calling AE title
    limits: NodeLimits = field(default_factory=NodeLimits)
    forwarding: ForwardSettings = field(default_factory=ForwardSettings)

    def __post_init__(self):
        self.out = Path(self.out)
        if not 0 < len(self.ae_title) <= 16:
            raise ValueError(f"AE title must have 1-16 characters, got {self.ae_title!r}")
        if self.idle_seconds < 0:
            raise ValueError("idle seconds must not be negative")


def _ct_transfer_syntaxes() -> list[str]:
    """Transfer syntaxes whose pixel data this installation can decode (pydicom and its plugins). Deflated
    Explicit VR Little Endian is among them: the node inflates it through the bounded reader
    (`io.dicom_limits`), which refuses a dataset inflating beyond the budget from its elements' headers."""
    from pydicom.pixels.decoders.base import get_decoder
    from pydicom.uid import AllTransferSyntaxes

    usable = []
    for uid in AllTransferSyntaxes:
        try:
            if get_decoder(uid).is_available:
                usable.append(uid)
        except NotImplementedError:  # video and other syntaxes pydicom has no decoder for
            continue
    return usable


def _application_entity(settings: NodeSettings):
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage, Verification

    limits = settings.limits
    ae = AE(ae_title=settings.ae_title)
    ae.maximum_associations = limits.max_associations
    ae.require_called_aet = True  # an association meant for another AE title is rejected
    ae.acse_timeout, ae.network_timeout, ae.dimse_timeout = (limits.acse_timeout_s, limits.idle_timeout_s,
                                                             limits.dimse_timeout_s)
    ae.add_supported_context(CTImageStorage, _ct_transfer_syntaxes())
    ae.add_supported_context(Verification)
    return ae


def _under_pressure(event, server_of) -> None:
    """EVT_CONN_OPEN handler: when the node is nearly full, a new connection has 2 s to ask for an
    association, so connections that never do cannot hold the rest out for the whole ACSE timeout."""
    server = server_of()
    if server is not None and server.open_connections() >= PRESSURE_SHARE * server.max_total:
        event.assoc.acse_timeout = min(event.assoc.acse_timeout, PRESSURE_ACSE_TIMEOUT_S)


class DicomNode:
    """The Storage SCP, its series registry and the one worker thread that runs the model.

    Args:
        checkpoint: a kidneyct PyTorch checkpoint (Grad-CAM key images need it); None: the model shipped with
            kidneyct.
        settings: NodeSettings.
        on_answer: called (in the worker thread) with each series' answer record.
        on_forwarded: called (in the forwarder's thread) with each outbox job once it is delivered.
    """

    def __init__(self, checkpoint: str | Path | None, settings: NodeSettings, on_answer=None, on_forwarded=None):
        self.settings = settings
        # workers=0: read in the worker thread; forking reader processes from a server full of threads is unsafe.
        self.predictor = Predictor.open(checkpoint, settings.device, options=PredictOptions(
            threshold=settings.threshold, top_k=settings.top_k, workers=0))
        if self.predictor.backend.segmenting:  # a DICOM SEG of its kidney and tumor maps beside the SR
            self.predictor = self.predictor.with_options(dicom_seg=str(settings.out / "dicom"))
        self.facts = ModelFacts.of(self.predictor.checkpoint, self.predictor.backend.source)
        self.registry = SeriesRegistry(settings.out / "incoming")
        limits = settings.limits
        self.store_limits = StoreLimits(limits.max_instance_bytes, limits.max_series_bytes, limits.max_decoded_bytes,
                                        limits.max_side)
        self.outbox = Outbox(settings.out)
        self.forwarder = None if settings.forward is None else Forwarder(
            self.outbox, settings.forward, settings.ae_title, settings.forwarding, on_forwarded)
        self.on_answer = on_answer
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="kidneyct-dicom-worker", daemon=True)
        self._server = None
        self._process_settings = None

    @property
    def port(self) -> int:
        """The bound port (the one the OS chose when settings.port is 0)."""
        return self._server.server_address[1]

    def start(self) -> "DicomNode":
        """Bind and serve in background threads; returns at once."""
        import pydicom
        from pynetdicom import _config, evt

        settings, limits = self.settings, self.settings.limits
        if not is_loopback(settings.host):
            log.warning("listening on %s: reachable from other machines; kidneyct has no TLS%s", settings.host,
                        "" if settings.allowed_peers else " and, without --allow-ae, accepts any calling AE title")
        # Instances go to a temporary file as they arrive, never whole into memory. pynetdicom has this switch
        # for the whole process only; the node owns its process (and an SCP's event.dataset reads it the same).
        self._process_settings = (_config.STORE_RECV_CHUNKED_DATASET, pydicom.config.settings.reading_validation_mode)
        _config.STORE_RECV_CHUNKED_DATASET = True
        # pydicom warns (and logs) once per distinct invalid value it reads, and keeps every warning it gave in
        # a registry that never shrinks: a peer sending ever new invalid UIDs grew the node by ~350 bytes each
        # and its log by a line each. The node checks what it relies on itself (UIDs, sizes, VRs of copied values).
        pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
        ae = _application_entity(settings)
        handlers = [(evt.EVT_C_STORE, store_instance, [self.registry, self.store_limits]),
                    (evt.EVT_C_ECHO, lambda event: 0x0000),
                    (evt.EVT_REQUESTED, screen_association, [settings.allowed_peers]),
                    (evt.EVT_CONN_OPEN, _under_pressure, [lambda: self._server])]
        wire = WireLimits(limits.max_pdu_bytes, limits.max_instance_bytes, limits.max_association_bytes,
                          limits.idle_timeout_s)
        self._server = ae.make_server((settings.host, settings.port), evt_handlers=handlers,
                                      server_class=GuardedServer, wire=wire,
                                      max_peer=limits.max_peer_associations, max_total=limits.max_associations)
        threading.Thread(target=self._server.serve_forever, name="kidneyct-dicom-accept", daemon=True).start()
        self._worker.start()
        if self.forwarder is not None:
            self.forwarder.start()
        log.info("%s listening on %s:%d (idle %gs; peers: %s; %s)", settings.ae_title, settings.host, self.port,
                 settings.idle_seconds, ", ".join(map(str, settings.allowed_peers)) or "any AE title", DISCLAIMER)
        return self

    def stop(self) -> None:
        """Stop accepting associations and let the worker finish its current series."""
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
        if self._worker.is_alive():
            self._worker.join(timeout=60)
        if self.forwarder is not None:
            self.forwarder.stop()
        if self._process_settings is not None:  # as they were (a process that embeds the node goes on)
            import pydicom
            from pynetdicom import _config

            _config.STORE_RECV_CHUNKED_DATASET, pydicom.config.settings.reading_validation_mode = self._process_settings

    def serve_forever(self) -> None:
        """Start, then block until interrupted (Ctrl-C or SIGTERM, as from a service manager)."""
        self.start()
        signal.signal(signal.SIGTERM, lambda *_: self._stop.set())  # the CLI calls this from the main thread
        try:
            while not self._stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            log.info("stopping")
        finally:
            self.stop()

    def _work(self) -> None:
        while not self._stop.is_set():
            due = self.registry.due(self.settings.idle_seconds)
            if not due:
                self._stop.wait(0.1)
                continue
            for series in due:
                if self._stop.is_set():  # stopping: the rest stay stored in incoming/, unanswered
                    break
                record = self.answer(series)
                self.registry.mark_answered(series)
                if record is not None and self.on_answer is not None:
                    self.on_answer(record)

    def answer(self, series: DueSeries) -> dict | None:
        """Predict one quiet series and write (and forward) its results; None when that failed (logged).

        Args:
            series: the registry's snapshot of the series.

        Returns:
            The answer record also written to results/<series>/answer.json.
        """
        try:
            return self._answer(series)
        except Exception as error:  # the node must outlive any one series: log it and go on
            log.error("series %s: no answer (%s: %s)", series.series_uid, type(error).__name__, error,
                      exc_info=not isinstance(error, OSError))
            return None

    def _answer(self, series: DueSeries) -> dict:
        settings = self.settings
        results = list(self.predictor.run([series.folder]))
        for path, reason in (skip for result in results for skip in result.skipped):
            log.warning("series %s: skipped %s: %s", series.series_uid, Path(path).name, reason)
        folder = inside(settings.out / "results", series.series_uid)
        for name in ("results.json", "results.csv"):
            write_results(results, folder / name, self.predictor.summary())
        studies = write_dicom_results(results, settings.out / "dicom", self.predictor, self.facts)
        record = _record(series, results, studies)
        if self.forwarder is not None and studies:
            segs = sorted({Path(row.masks["dicom_seg"]) for r in results for row in r.slices if "dicom_seg" in row.masks})
            files = [p for s in studies for p in (*s.key_images, s.sr)] + segs
            job = self.outbox.add(files, settings.forward, series.series_uid)  # durable before the answer is
            record["forward"] = {"destination": str(settings.forward), "queued": len(files), "outbox_job": job}
            self.forwarder.wake()
        text = json.dumps(record, indent=2)
        atomic_write(folder / "answer.json", lambda stream: stream.write(text), binary=False)
        _log_answer(record)
        return record


def _record(series: DueSeries, results: list[StudyResult], studies: list[StudyFiles]) -> dict:
    study = next((r for r in results if r.is_study and r.slices), None)
    return {
        "disclaimer": DISCLAIMER,
        "series_uid": series.series_uid, "study_uid": series.study_uid, "instances": len(series.instances),
        "slices_read": sum(r.n_slices for r in results),
        "skipped": [{"path": Path(p).name, "reason": r} for result in results for p, r in result.skipped],
        "finding": None if study is None else {
            "tumor": study.tumor, "tumor_probability": study.tumor_probability, "threshold": study.threshold,
            "driving_slices": study.driving_slices},
        "dicom": [s.to_dict() for s in studies],
        "forward": None,
    }


def _log_answer(record: dict) -> None:
    finding = record["finding"]
    if finding is None:
        log.warning("series %s: no readable CT slice among %d instances", record["series_uid"], record["instances"])
        return
    queued = f"; {record['forward']['queued']} file(s) queued for {record['forward']['destination']}" \
        if record["forward"] else ""
    if finding["tumor"] is None:
        log.info("series %s: %d slices, no kidney found: no call%s", record["series_uid"], record["slices_read"],
                 queued)
        return
    log.info("series %s: %d slices, kidney tumor %s (p=%.3f, threshold %g)%s", record["series_uid"],
             record["slices_read"], "present" if finding["tumor"] else "absent", finding["tumor_probability"],
             finding["threshold"], queued)
