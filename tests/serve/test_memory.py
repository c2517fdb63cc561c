"""No upload of at most 20 MB raises the server's memory by more than 512 MiB: decompression bombs are
refused from their headers (or, deflated DICOM, after inflating no further than the budget), and the
largest images the limits admit stay well inside it. Peak resident memory is measured per request
(Linux: VmHWM, reset before each)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from kidneyct.serve import ServeSettings, create_app
from kidneyct.synthetic import bad_files as bad
from kidneyct.synthetic.fuzz import peak_rss_mib, reset_peak_rss

pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx (dev extra)")
from fastapi.testclient import TestClient  # noqa: E402

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak RSS through /proc (Linux)")
LIMIT_MIB = 512


def _largest_png() -> bytes:
    side = 4096  # the default side limit; RGBA: 64 MiB decoded, the default budget
    ramp = np.broadcast_to(np.linspace(0, 255, side, dtype=np.uint8), (side, side))
    return bad.image_bytes(np.dstack([ramp, ramp.T, ramp, np.full((side, side), 255, np.uint8)]))


def _deflated_large_dicom() -> bytes:
    import pydicom

    return bad.dicom_bytes(np.zeros((4096, 4096), np.float32),
                           TransferSyntaxUID=pydicom.uid.DeflatedExplicitVRLittleEndian)


UPLOADS = {  # name: (builder, expected status)
    "deflated-dicom-1gib.dcm": (lambda: bad.deflated_dicom_bomb(1024), 422),
    "deflated-dicom-3gib.dcm": (lambda: bad.deflated_dicom_bomb(3072), 422),
    "multiframe-19mb.dcm": (bad.multiframe_dicom, 422),
    "bomb.png": (bad.png_bomb, 422),
    "zeros-1gib.nii.gz": (lambda: bad.nifti_gz_bomb(1024), 415),
    "largest.png": (_largest_png, 200),
    "deflated-4096.dcm": (_deflated_large_dicom, 200),
}


@pytest.fixture(scope="module")
def client(trained_run):
    with TestClient(create_app(trained_run.best_checkpoint, ServeSettings()), base_url="http://127.0.0.1") as c:
        yield c


@pytest.mark.parametrize("name", list(UPLOADS))
def test_one_upload_raises_memory_by_less_than_512_mib(client, name):
    build, status = UPLOADS[name]
    data = build()
    assert len(data) <= 20 * 1024 * 1024
    client.get("/health")  # the app's own first-request allocations are not the upload's
    reset_peak_rss()
    baseline = peak_rss_mib()
    response = client.post("/predict", files={"file": (name, data, "application/octet-stream")})
    rise = peak_rss_mib() - baseline
    assert response.status_code == status, response.text
    assert rise < LIMIT_MIB, f"{name}: +{rise:.0f} MiB"
