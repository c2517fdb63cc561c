"""What the web app does with an upload, without any HTTP: sniff, bound, read, predict, explain.

The server never opens a path a client names. Upload bytes go to a temporary file this module creates
(its suffix chosen from the content, not the client's name), are read with the same readers as the CLI,
and the file is gone before the answer leaves.
"""

from __future__ import annotations

import io
import logging
import math
import os
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image

from kidneyct.about import DISCLAIMER
from kidneyct.config import SERVE_MAX_DECODED_MB, SERVE_MAX_SIDE
from kidneyct.errors import ImageReadError, UnsupportedFormat, UploadError
from kidneyct.inference.model_facts import model_card
from kidneyct.inference.overlay import OVERLAY_SIDE, overlay_image, write_overlay
from kidneyct.inference.pipeline import Prepared
from kidneyct.inference.predictor import PredictOptions, Predictor
from kidneyct.inference.results import StudyResult
from kidneyct.inference.run import prepare_input, score
from kidneyct.io import CTSlice, InputItem, read_slices
from kidneyct.io.budget import read_limits
from kidneyct.io.sniff import HEADER_BYTES, sniff_format
from kidneyct.labels import positive_index
from kidneyct.models import get_spec

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class ServeSettings:
    """Limits and runtime choices of one app. Every limit answers with a 4xx JSON error, never a crash."""

    max_upload_bytes: int = 20 * 1024 * 1024  # 413 beyond this (checked before the body is parsed)
    max_image_side: int = SERVE_MAX_SIDE  # pixels per side, checked from the header before any pixel is decoded
    max_decoded_bytes: int = SERVE_MAX_DECODED_MB * 1024 * 1024  # one upload's decoded size, from its header
    request_timeout_s: float = 30.0  # per request, queueing included: 504 beyond it
    body_timeout_s: float = 60.0  # receiving one request's body: 408 beyond it (a client sending 1 byte/s)
    header_timeout_s: float = 10.0  # receiving a request's headers: the connection is closed beyond it
    max_pending: int = 64  # requests waiting for or in inference at once: 503 beyond it
    max_connections: int = 256  # open connections; a new one replaces the longest-waiting idle one beyond it
    max_connections_per_client: int = 32  # open connections of one client address; more are closed on arrival
    busy_header_timeout_s: float = 1.0  # the header deadline once 3/4 of max_connections are open
    workers: int = 4  # threads decoding uploads; inference itself runs one request at a time
    device: str = "cpu"
    cam_layer: str | None = None  # Grad-CAM target layer (default: the model's)
    allow_non_ct_dicom: bool = False  # MR, PET... DICOM: refused unless set (the models know CT only)
    token: str | None = None  # bearer token required on the API (not on the page, /health or the docs)
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS  # Host headers served ('*': any); DNS rebinding defence
    allowed_origins: tuple[str, ...] = ()  # cross-origin pages allowed to POST (same-origin always is)

    def __post_init__(self):
        numbers = (self.max_upload_bytes, self.max_decoded_bytes, self.request_timeout_s, self.body_timeout_s,
                   self.header_timeout_s, self.busy_header_timeout_s)
        if not all(math.isfinite(n) and n > 0 for n in numbers) or self.max_image_side < 16:
            raise ValueError("sizes, budget and timeouts must be finite and positive, the image side >= 16")
        if min(self.max_pending, self.workers, self.max_connections, self.max_connections_per_client) < 1:
            raise ValueError("max_pending, workers, max_connections and max_connections_per_client must be at least 1")
        problem = None if self.token is None else token_problem(self.token)
        if problem is not None:
            raise ValueError(f"the token {problem}: make one with `python -c 'import secrets; "
                             "print(secrets.token_urlsafe())'`")


MIN_TOKEN_LENGTH, MIN_TOKEN_DISTINCT = 16, 8


def token_problem(token: str) -> str | None:
    """Why a bearer token is too weak to guard the API, or None. It must be at least 16 printable characters
    without spaces, of at least 8 different ones: sixteen spaces or `aaaaaaaaaaaaaaaa` are no secret.

    Args:
        token: the --token or $KIDNEYCT_TOKEN value.
    """
    if not token.strip():
        return "is blank"
    if any(c.isspace() or not c.isprintable() for c in token):
        return "contains spaces or control characters"
    if len(token) < MIN_TOKEN_LENGTH:
        return f"has {len(token)} characters; at least {MIN_TOKEN_LENGTH} are needed"
    if len(set(token)) < MIN_TOKEN_DISTINCT:
        return f"uses only {len(set(token))} different characters; at least {MIN_TOKEN_DISTINCT} are needed"
    return None


ACCEPTED = "JPG, PNG or DICOM (one slice)"
# The formats the API accepts, each with the suffix its temporary file gets (and the `kind` answers report).
UPLOAD_SUFFIXES = {"png": "png", "jpeg": "jpg", "dicom": "dcm"}


def sniff_kind(data: bytes, filename: str) -> str:
    """'png', 'jpg' or 'dcm', decided by `sniff_format` like every file the CLI reads: the bytes first,
    the client's file name only as a hint for content no magic number identifies."""
    try:
        kind = sniff_format(filename, head=data[:HEADER_BYTES])
    except UnsupportedFormat as error:
        raise UploadError(415, f"{filename}: {error.reason}") from None
    if kind == "nifti":
        raise UploadError(415, f"{filename}: NIfTI volumes are not accepted by the API ({ACCEPTED}); "
                               "use `kidneyct predict` for volumes")
    if kind not in UPLOAD_SUFFIXES:
        raise UploadError(415, f"{filename}: unsupported file type: expected {ACCEPTED}; the content is none of them")
    return UPLOAD_SUFFIXES[kind]


@dataclass
class ReadUpload:
    filename: str
    kind: str
    width: int
    height: int
    modality: str | None
    read_ms: float
    prepared: Prepared  # the model's input and the scope gate's look, ready for scoring


class InferenceService:
    """One model per app: the predictor and a lock around it (PyTorch modules with hooks are not safe to share
    between threads mid-forward). Uploads are read here; predicting them is kidneyct.inference.run's."""

    def __init__(self, checkpoint: str | Path | None, settings: ServeSettings):
        self.settings = settings
        # CheckpointError if unsafe; None: the model shipped with kidneyct
        self.predictor = Predictor.open(checkpoint, settings.device, options=PredictOptions(
            cam_layer=settings.cam_layer, max_decoded_bytes=settings.max_decoded_bytes, workers=0))
        self.checkpoint = self.predictor.backend.source
        self.classes = list(self.predictor.classes)
        self._lock = threading.Lock()
        self.card = model_card(self.predictor.checkpoint, self.checkpoint,
                               get_spec(self.predictor.checkpoint.model.name).description)

    @property
    def threshold(self) -> float | None:
        return self.predictor.threshold

    def read(self, data: bytes, filename: str) -> ReadUpload:
        """The upload's one slice as the model's input, read within the app's limits.

        Args:
            data: the uploaded bytes.
            filename: the client's name for them: a label in messages, never a path to open.

        Returns:
            The model input and facts about the image. Raises UploadError (4xx) for anything unusable.
        """
        started = time.perf_counter()
        filename = Path(filename or "upload").name[:200]
        if not data:
            raise UploadError(400, f"{filename}: file is empty (0 bytes)")
        if len(data) > self.settings.max_upload_bytes:
            raise UploadError(413, f"{filename}: upload of {len(data)} bytes exceeds the "
                                   f"{self.settings.max_upload_bytes}-byte limit")
        kind = sniff_kind(data, filename)
        ct_slice = replace(self._read_slice(data, kind, filename), source=filename)
        height, width = ct_slice.pixels.shape[:2]
        # The locator runs here, in the decoding threads; the slice's warnings (modality, the reader's own, such
        # as a DICOM without Modality) come with its result from the one prediction path.
        prepared = prepare_input(self.predictor, InputItem(Path(filename), "image", slices=(ct_slice,)))
        if prepared.images is None:
            raise UploadError(422, f"{filename}: {prepared.skipped[-1][1]}")
        return ReadUpload(filename, kind, int(width), int(height), ct_slice.modality,
                          (time.perf_counter() - started) * 1000, prepared)

    def _read_slice(self, data: bytes, kind: str, filename: str) -> CTSlice:
        """The readers of the CLI on a temporary file this server names, within the app's read limits."""
        handle, temporary = tempfile.mkstemp(prefix="kidneyct-upload-", suffix=f".{kind}")
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(data)
            with read_limits(self.settings.max_decoded_bytes, self.settings.max_image_side):
                slices = read_slices(temporary, allow_non_ct=self.settings.allow_non_ct_dicom)
        except ImageReadError as error:  # name the client's file, not the server's temporary one
            status = 415 if isinstance(error, UnsupportedFormat) else 422
            raise UploadError(status, f"{filename}: {error.reason}") from None
        except MemoryError:
            raise UploadError(422, f"{filename}: too large to decode within the server's memory") from None
        except Exception as error:  # a reader bug must not turn a malformed upload into a 500
            log.exception("reading %s raised %s; answered 422", filename, type(error).__name__)
            raise UploadError(422, f"{filename}: unreadable ({type(error).__name__})") from None
        finally:
            Path(temporary).unlink(missing_ok=True)
        return slices[0]

    def predict(self, upload: ReadUpload) -> dict:
        """The upload's StudyResult (one slice) with what the web API adds: the file's facts and the timings."""
        started = time.perf_counter()
        with self._lock:
            locked = time.perf_counter()
            result = score(self.predictor, [upload.prepared])[0]
        done = time.perf_counter()
        return answer(result, self.predictor, upload, {
            "read": round(upload.read_ms, 2), "queue": round((locked - started) * 1000, 2),
            "inference": round((done - locked) * 1000, 2)})

    def explain(self, upload: ReadUpload, view: str = "overlay") -> tuple[bytes, dict]:
        """PNG bytes and the answer. view: 'overlay' (heatmap over the model's input), 'input' (the model's input
        alone, for previews of files a browser cannot show, e.g. DICOM) or 'panel' (input and overlay side by
        side with the call and probability, as `kidneyct explain`). The heatmap is the call's, or the tumor
        class's for a slice out of scope (which has no call)."""
        result = self.predict(upload)
        image = upload.prepared.images[0]
        side = max(OVERLAY_SIDE, image.shape[0])
        if view == "input":
            png = Image.fromarray(image).resize((side, side), Image.Resampling.BILINEAR)
            return _png_bytes(png), result
        target = heatmap_class(self.predictor, result["slice"]["call"])
        with self._lock:
            heatmap = self.predictor.explainer().heatmaps(image[None], [self.classes.index(target)])[0]
        if view == "panel":
            label = target if result["slice"]["call"] else f"out of scope, no call: p({target})"
            with tempfile.TemporaryDirectory(prefix="kidneyct-cam-") as folder:
                path = write_overlay(image, heatmap, label, result["probabilities"][target], Path(folder) / "cam.png",
                                     upload.filename)
                return path.read_bytes(), result
        png = Image.fromarray(overlay_image(image, heatmap)).resize((side, side), Image.Resampling.BILINEAR)
        return _png_bytes(png), result


def heatmap_class(predictor: Predictor, call: str | None) -> str:
    """The class a heatmap shows: the call, or without one the tumor class (where the model would see one)."""
    pos = positive_index(predictor.classes)
    return call or predictor.classes[pos if pos is not None else 0]


def answer(result: StudyResult, predictor: Predictor, upload: ReadUpload, timing_ms: dict) -> dict:
    """The web API's answer: the StudyResult's slice, flattened for the page, with the upload's facts."""
    row = result.slices[0]
    pos = positive_index(predictor.classes)
    rule = (f"{predictor.classes[pos]} when its probability >= threshold, else the most probable other class"
            if predictor.threshold is not None and pos is not None else "argmax")
    return {
        "filename": upload.filename, "classes": predictor.classes, "probabilities": row.probabilities,
        "call": row.call, "in_scope": row.in_scope, "scope_reason": row.scope_reason,
        "threshold": predictor.threshold, "threshold_rule": f"{rule}; no call out of scope",
        "image": {"kind": upload.kind, "width": upload.width, "height": upload.height, "modality": upload.modality},
        "timing_ms": timing_ms, "warnings": row.warnings, "slice": row.to_dict(), "result": result.to_dict(),
        "disclaimer": DISCLAIMER,
    }


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
