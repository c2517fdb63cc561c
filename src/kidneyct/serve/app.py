"""The FastAPI app: `create_app(checkpoint, settings)` loads the model once and owns its thread pool.

No module-level state: two apps in one process (as in the tests) share nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware

from kidneyct.about import DISCLAIMER, __version__
from kidneyct.errors import UploadError
from kidneyct.serve.guard import RequestGuard
from kidneyct.serve.service import InferenceService, ServeSettings, heatmap_class

log = logging.getLogger(__name__)

MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the file itself
STATIC = Path(str(resources.files("kidneyct") / "serve" / "static"))

ERROR_RESPONSES = {
    400: {"description": "Empty upload or malformed request"},
    401: {"description": "The server has a token and the request did not carry it"},
    403: {"description": "A cross-origin request from a page the server does not allow"},
    408: {"description": "The body did not arrive within the server's deadline"},
    413: {"description": "Upload larger than the server's limit"},
    415: {"description": "Not a JPG, PNG or DICOM file"},
    422: {"description": "Unreadable, damaged or oversized image (the message says which)"},
    503: {"description": "Too many requests waiting for the model"},
    504: {"description": "The request took longer than the per-request timeout"},
}


class AdmissionLimit:
    """Requests admitted and not finished (a timed-out request counts until its thread is done): 503 beyond
    the limit."""

    def __init__(self, limit: int):
        self.limit, self.count, self.lock = limit, 0, threading.Lock()

    def admit(self) -> None:
        with self.lock:
            if self.count >= self.limit:
                raise UploadError(503, f"server busy: {self.count} requests already waiting; retry shortly")
            self.count += 1

    def release(self, *_ignored) -> None:
        with self.lock:
            self.count -= 1


class RequestRunner:
    """Runs a request's blocking work (decoding, inference) on the app's own thread pool, admitted under the
    pending limit and answered with a 504 after the per-request timeout."""

    def __init__(self, settings: ServeSettings):
        self.timeout_s = settings.request_timeout_s
        self.executor = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="kidneyct-serve")
        self.admission = AdmissionLimit(settings.max_pending)

    async def run(self, function, *args):
        """`function(*args, deadline=...)` on the pool; the job checks the deadline (time.monotonic())
        between its stages, so work that timed out stops instead of running on unobserved."""
        self.admission.admit()
        try:
            future = self.executor.submit(function, *args, deadline=time.monotonic() + self.timeout_s)
        except RuntimeError:  # executor shut down
            self.admission.release()
            raise UploadError(503, "server is shutting down")
        future.add_done_callback(self.admission.release)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_s)
        except (asyncio.TimeoutError, TimeoutError):
            future.cancel()  # not started yet: never runs; running: finishes unobserved
            raise UploadError(504, f"request took longer than the {self.timeout_s:g} s limit")

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


class BodyLimit:
    """413 (JSON, like every other error) for request bodies above the limit: refused from Content-Length
    before anything is read, and counted as chunks arrive for bodies sent without one."""

    def __init__(self, app, max_body_size: int, upload_limit: int):
        self.app, self.max_body_size = app, max_body_size
        self.detail = f"upload exceeds the {upload_limit}-byte limit"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_size:
            body = json.dumps({"detail": self.detail}).encode()
            await send({"type": "http.response.start", "status": 413,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
            return await send({"type": "http.response.body", "body": body})
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_size:
                    # An HTTPException passes FastAPI's body parsing untouched and becomes a JSON answer.
                    raise HTTPException(413, self.detail, headers={"Connection": "close"})
            return message

        await self.app(scope, counted, send)


def create_app(checkpoint: str | Path | None, settings: ServeSettings | None = None) -> FastAPI:
    """An app serving one checkpoint (None: the model shipped with kidneyct). Raises CheckpointError for a
    missing, foreign or unsafe checkpoint (it is read with weights_only=True: nothing in it can run code)."""
    settings = settings or ServeSettings()
    service = InferenceService(checkpoint, settings)
    runner = RequestRunner(settings)

    @asynccontextmanager
    async def lifespan(_app):
        yield
        runner.shutdown()

    # FastAPIOffline: FastAPI whose /docs and /redoc serve Swagger UI and ReDoc from the package, no CDN.
    app = FastAPIOffline(
        static_url="/static-docs",
        title="kidneyct",
        version=__version__,
        description=f"Kidney tumor classification of CT slices. {DISCLAIMER}",
        lifespan=lifespan,
    )
    _add_middleware(app, settings)
    app.state.service = service
    app.state.settings = settings
    _add_error_handlers(app)
    _add_routes(app, service, runner)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _add_middleware(app: FastAPI, settings: ServeSettings) -> None:
    """Outermost first: security headers, origin, token and body deadline (RequestGuard); the Host
    allow-list; CORS answers for the allowed origins; the body size limit."""
    app.add_middleware(BodyLimit, max_body_size=settings.max_upload_bytes + MULTIPART_OVERHEAD,
                       upload_limit=settings.max_upload_bytes)
    if settings.allowed_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.allowed_origins),
                           allow_methods=["GET", "POST"], allow_headers=["Authorization"],
                           expose_headers=["X-Call", "X-Heatmap-Class", "X-Probability"])
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(settings.allowed_hosts))
    app.add_middleware(RequestGuard, token=settings.token, allowed_origins=settings.allowed_origins,
                       body_timeout_s=settings.body_timeout_s)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, error: RequestValidationError):
        # FastAPI's own answer repeats every invalid value: for an upload under another field name, the upload.
        problems = ["{}: {}".format(".".join(map(str, e.get("loc", ()))), e.get("msg", "invalid"))[:200]
                    for e in error.errors()[:5]]
        return JSONResponse({"detail": "invalid request: " + "; ".join(problems)}, status_code=422)

    @app.exception_handler(UploadError)
    async def upload_error(_request: Request, error: UploadError):
        return JSONResponse({"detail": error.message}, status_code=error.status)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, error: Exception):
        log.exception("unexpected error while serving a request")
        return JSONResponse({"detail": f"internal error ({type(error).__name__})"}, status_code=500)


async def _upload_bytes(file: UploadFile, limit: int) -> tuple[bytes, str]:
    # The multipart parser spooled the upload to memory or a temporary file of its own; read it back,
    # at most one byte past the limit.
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise UploadError(413, f"upload exceeds the {limit}-byte limit")
    return data, file.filename or "upload"


def _in_time(deadline: float) -> None:
    if time.monotonic() > deadline:  # the client already has its 504: spend nothing more on the request
        raise UploadError(504, "request timed out")


def _predict_job(service: InferenceService, data: bytes, filename: str, deadline: float) -> dict:
    started = time.perf_counter()
    _in_time(deadline)
    upload = service.read(data, filename)
    _in_time(deadline)
    result = service.predict(upload)
    result["timing_ms"]["total"] = round((time.perf_counter() - started) * 1000, 2)
    return result


def _explain_job(service: InferenceService, data: bytes, filename: str, view: str,
                 deadline: float) -> tuple[bytes, dict]:
    _in_time(deadline)
    upload = service.read(data, filename)
    _in_time(deadline)
    return service.explain(upload, view)


def _add_routes(app: FastAPI, service: InferenceService, runner: RequestRunner) -> None:
    limit = service.settings.max_upload_bytes

    @app.get("/health", summary="Liveness: the model is loaded")
    async def health():
        return {"status": "ok", "model": service.card["architecture"]["model"], "classes": service.classes,
                "version": __version__}

    @app.get("/model", summary="Model card: classes, architecture, training data, metrics, intended use")
    async def model():
        return service.card

    @app.post("/predict", summary="Class probabilities for one CT slice (JPG, PNG or DICOM)",
              responses=ERROR_RESPONSES)
    async def predict(file: UploadFile = File(..., description="one JPG, PNG or DICOM slice")):
        data, filename = await _upload_bytes(file, limit)
        return await runner.run(_predict_job, service, data, filename)

    @app.post("/explain", summary="Grad-CAM overlay PNG for one CT slice", responses={
        200: {"content": {"image/png": {}}, "description": "the overlay, or the model's input for view=input"},
        **ERROR_RESPONSES})
    async def explain(file: UploadFile = File(..., description="one JPG, PNG or DICOM slice"),
                      view: Literal["overlay", "input", "panel"] = Query(
                          "overlay", description="overlay: heatmap over the model's input; input: the model's "
                                                 "input alone; panel: both side by side with a caption")):
        data, filename = await _upload_bytes(file, limit)
        png, result = await runner.run(_explain_job, service, data, filename, view)
        shown = heatmap_class(service.predictor, result["call"])  # no call out of scope: the tumor class's map
        headers = {"X-Call": result["call"] or "", "X-Heatmap-Class": shown,
                   "X-Probability": f"{result['probabilities'][shown]:.6f}"}
        return Response(png, media_type="image/png", headers=headers)

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "index.html")
