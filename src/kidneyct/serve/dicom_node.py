"""`kidneyct listen`: a DICOM node. A Storage SCP (pynetdicom) accepts CT Image Storage and Verification
(C-ECHO) and refuses every other SOP class at association. Instances are stored per series
(`dicom_store`); a series quiet for `idle_seconds` is answered by one worker thread that owns the model:
kidneyct.inference.run over the series, results CSV/JSON, the DICOM SR and key images
(`inference.dicom_results`), optionally C-STOREd to a forward destination (`dicom_forward`), and
`answer.json` last.

Every association runs in pynetdicom's own thread and only stores files; inference never runs there.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

from kidneyct.about import DISCLAIMER
from kidneyct.inference.dicom_results import StudyFiles, write_dicom_results
from kidneyct.inference.model_facts import ModelFacts
from kidneyct.inference.predictor import PredictOptions, Predictor
from kidneyct.inference.results import StudyResult
from kidneyct.inference.writers import write_results
from kidneyct.io.atomic import atomic_write
from kidneyct.serve.dicom_forward import Destination, forward_files
from kidneyct.serve.dicom_store import DueSeries, SeriesRegistry, store_instance
from kidneyct.serve.network import is_loopback

log = logging.getLogger(__name__)


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
    max_associations: int = 16

    def __post_init__(self):
        self.out = Path(self.out)
        if not 0 < len(self.ae_title) <= 16:
            raise ValueError(f"AE title must have 1-16 characters, got {self.ae_title!r}")
        if self.idle_seconds < 0:
            raise ValueError("idle seconds must not be negative")


def _ct_transfer_syntaxes() -> list[str]:
    """Transfer syntaxes whose pixel data this installation can decode (pydicom and its plugins)."""
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

    ae = AE(ae_title=settings.ae_title)
    ae.maximum_associations = settings.max_associations
    ae.require_called_aet = True  # an association meant for another AE title is rejected
    ae.add_supported_context(CTImageStorage, _ct_transfer_syntaxes())
    ae.add_supported_context(Verification)
    return ae


class DicomNode:
    """The Storage SCP, its series registry and the one worker thread that runs the model.

    Args:
        checkpoint: a kidneyct PyTorch checkpoint (Grad-CAM key images need it); None: the model shipped with
            kidneyct.
        settings: NodeSettings.
        on_answer: called (in the worker thread) with each series' answer record.
    """

    def __init__(self, checkpoint: str | Path | None, settings: NodeSettings, on_answer=None):
        self.settings = settings
        # workers=0: read in the worker thread; forking reader processes from a server full of threads is unsafe.
        self.predictor = Predictor.open(checkpoint, settings.device, options=PredictOptions(
            threshold=settings.threshold, top_k=settings.top_k, workers=0))
        if self.predictor.backend.segmenting:  # a DICOM SEG of its kidney and tumor maps beside the SR
            self.predictor = self.predictor.with_options(dicom_seg=str(settings.out / "dicom"))
        self.facts = ModelFacts.of(self.predictor.checkpoint, self.predictor.backend.source)
        self.registry = SeriesRegistry(settings.out / "incoming")
        self.on_answer = on_answer
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="kidneyct-dicom-worker", daemon=True)
        self._server = None

    @property
    def port(self) -> int:
        """The bound port (the one the OS chose when settings.port is 0)."""
        return self._server.server_address[1]

    def start(self) -> "DicomNode":
        """Bind and serve in background threads; returns at once."""
        from pynetdicom import evt

        if not is_loopback(self.settings.host):
            log.warning("listening on %s: reachable from other machines; kidneyct has no authentication",
                        self.settings.host)
        ae = _application_entity(self.settings)
        handlers = [(evt.EVT_C_STORE, store_instance, [self.registry]), (evt.EVT_C_ECHO, lambda event: 0x0000)]
        self._server = ae.start_server((self.settings.host, self.settings.port), block=False, evt_handlers=handlers)
        self._worker.start()
        log.info("%s listening on %s:%d (idle %gs; %s)", self.settings.ae_title, self.settings.host, self.port,
                 self.settings.idle_seconds, DISCLAIMER)
        return self

    def stop(self) -> None:
        """Stop accepting associations and let the worker finish its current series."""
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
        if self._worker.is_alive():
            self._worker.join(timeout=60)

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
        folder = settings.out / "results" / series.series_uid
        for name in ("results.json", "results.csv"):
            write_results(results, folder / name, self.predictor.summary())
        studies = write_dicom_results(results, settings.out / "dicom", self.predictor, self.facts)
        record = _record(series, results, studies)
        if settings.forward is not None and studies:
            segs = sorted({Path(row.masks["dicom_seg"]) for r in results for row in r.slices if "dicom_seg" in row.masks})
            files = [p for s in studies for p in (*s.key_images, s.sr)] + segs
            record["forward"] = forward_files(files, settings.forward, settings.ae_title)
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
    forwarded = f"; forwarded {record['forward']['sent']}" if record["forward"] else ""
    if finding["tumor"] is None:
        log.info("series %s: %d slices, no kidney found: no call%s", record["series_uid"], record["slices_read"],
                 forwarded)
        return
    log.info("series %s: %d slices, kidney tumor %s (p=%.3f, threshold %g)%s", record["series_uid"],
             record["slices_read"], "present" if finding["tumor"] else "absent", finding["tumor_probability"],
             finding["threshold"], forwarded)
