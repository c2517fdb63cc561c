"""The web app through FastAPI's TestClient (no port): endpoints, limits, and what the server refuses."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kidneyct.checkpoint import OperatingPoint
from kidneyct.serve import ServeSettings, create_app

pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx (dev extra)")
from fastapi.testclient import TestClient  # noqa: E402


@pytest.fixture(scope="module")
def app(trained_run):
    return create_app(trained_run.best_checkpoint, ServeSettings(max_upload_bytes=256 * 1024, max_image_side=1024))


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app, base_url="http://127.0.0.1") as test_client:
        yield test_client


@pytest.fixture(scope="module")
def slice_png(phantom_png) -> tuple[str, bytes]:
    path = next((phantom_png / "Tumor").glob("*[0-9]).png"))
    return path.name, path.read_bytes()


def _png(side: int, noise: bool = False) -> bytes:
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (side, side), dtype=np.uint8) if noise else np.zeros((side, side), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_health_and_model_card(client, trained_run):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["classes"] == ["Tumor", "Normal"]
    card = client.get("/model").json()
    assert card["classes"] == ["Tumor", "Normal"] and card["architecture"]["model"] == "seed-cnn"
    assert card["training_data"]["synthetic"] is True and card["training_data"]["split_kind"] == "grouped"
    assert card["evaluation"]["validation_at_best_epoch"]["val_accuracy"] >= 0
    assert "temperature" in card["evaluation"]["calibration"]
    assert "not a medical device" in card["disclaimer"]
    assert str(trained_run.out) not in str(card)  # the card names the dataset, not the server's folders


def test_predict_matches_the_python_api(client, slice_png, trained_run):
    import kidneyct

    name, data = slice_png
    response = client.post("/predict", files={"file": (name, data, "image/png")})
    assert response.status_code == 200
    body = response.json()
    (expected,) = kidneyct.load(trained_run.best_checkpoint).predict(Image.open(io.BytesIO(data))).slices
    assert body["probabilities"] == pytest.approx(expected.probabilities, abs=1e-6)
    assert (body["call"], body["in_scope"], body["scope_reason"]) == (expected.call, expected.in_scope,
                                                                      expected.scope_reason)
    assert body["threshold"] is None and body["filename"] == name and body["slice"]["source"] == name
    assert {"read", "queue", "inference", "total"} <= set(body["timing_ms"])
    assert body["image"] == {"kind": "png", "width": 128, "height": 128, "modality": None}


def test_predict_applies_the_models_operating_threshold(app, client, slice_png):
    service = app.state.service
    name, data = slice_png
    previous = service.predictor.checkpoint.operating_point
    try:  # as if the checkpoint recorded threshold 0: everything is tumor
        service.predictor.checkpoint.operating_point = OperatingPoint(0.0, "everything is tumor")
        body = client.post("/predict", files={"file": (name, data, "image/png")}).json()
        assert body["threshold"] == 0.0 and body["call"] in ("Tumor", None) and "Tumor when" in body["threshold_rule"]
        assert (body["call"] == "Tumor") == body["in_scope"]
    finally:
        service.predictor.checkpoint.operating_point = previous


@pytest.mark.parametrize("view, size", [("overlay", (256, 256)), ("input", (256, 256)), ("panel", (512, 296))])
def test_explain_returns_png_views(client, slice_png, view, size):
    name, data = slice_png
    response = client.post(f"/explain?view={view}", files={"file": (name, data, "image/png")})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.size == size
    assert response.headers["x-call"] in ("Tumor", "Normal", "") and response.headers["x-heatmap-class"]
    rgb = np.asarray(image.convert("RGB")).astype(int)
    colourful = np.abs(rgb[..., 0] - rgb[..., 2]).mean() > 5  # jet heatmap vs a grey slice
    assert colourful == (view != "input")


def test_explain_rejects_an_unknown_view(client, slice_png):
    name, data = slice_png
    assert client.post("/explain?view=secret", files={"file": (name, data, "image/png")}).status_code == 422


def test_upload_above_the_size_limit_is_413(client):
    big = _png(700, noise=True)  # ~490 kB uncompressed PNG against a 256 kB limit
    assert len(big) > 256 * 1024
    response = client.post("/predict", files={"file": ("big.png", big, "image/png")})
    assert response.status_code == 413
    assert response.json()["detail"] == f"upload exceeds the {256 * 1024}-byte limit"
    assert client.get("/health").status_code == 200  # and the server carries on


def test_streamed_upload_without_length_above_the_limit_is_413(client):
    def chunks():  # a chunked body: no Content-Length to refuse it by, so it is counted as it arrives
        yield b"--b\r\nContent-Disposition: form-data; name=file; filename=x.png\r\n\r\n"
        for _ in range(40):
            yield b"\0" * 16384
        # No closing boundary: a server that read to the end would answer 400, not 413.

    response = client.post("/predict", content=chunks(),
                           headers={"content-type": "multipart/form-data; boundary=b"})
    assert response.status_code == 413 and "byte limit" in response.json()["detail"]


def test_upload_just_below_the_limit_is_accepted_by_size(client):
    data = _png(64) + b"\0" * (256 * 1024 - len(_png(64)))  # trailing bytes after IEND: still a PNG
    response = client.post("/predict", files={"file": ("edge.png", data, "image/png")})
    assert response.status_code == 200, response.text


def test_image_above_the_side_limit_is_refused_from_its_header(client):
    wide = _png(1100)
    assert len(wide) < 256 * 1024  # zeros compress: the header, not the upload size, is what is refused
    response = client.post("/predict", files={"file": ("wide.png", wide, "image/png")})
    assert response.status_code == 422
    assert response.json()["detail"] == "wide.png: image is 1100x1100 pixels, above the 1024-pixel limit"


def test_unknown_type_and_missing_file_are_4xx(client):
    response = client.post("/predict", files={"file": ("notes.txt", b"plain text", "text/plain")})
    assert response.status_code == 415 and "unsupported file type" in response.json()["detail"]
    assert client.post("/predict").status_code == 422  # no file field: FastAPI's validation error


def test_client_file_names_are_labels_never_paths(client, slice_png, tmp_path):
    """A name pointing at a file on the server must not make the server read that file."""
    secret = tmp_path / "secret.png"
    secret.write_bytes(slice_png[1])  # a perfectly readable image the client names but does not send
    response = client.post("/predict", files={"file": (str(secret), b"", "image/png")})
    assert response.status_code == 400 and response.json()["detail"] == "secret.png: file is empty (0 bytes)"
    response = client.post("/predict", files={"file": ("../../etc/passwd.png", slice_png[1], "image/png")})
    assert response.status_code == 200 and response.json()["filename"] == "passwd.png"


def test_uploads_leave_no_temporary_files(client, slice_png, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    name, data = slice_png
    assert client.post("/predict", files={"file": (name, data, "image/png")}).status_code == 200
    assert client.post("/predict", files={"file": ("bad.png", b"xx" * 50, "image/png")}).status_code == 422
    assert not list(tmp_path.glob("kidneyct-upload-*"))


def test_slow_inference_times_out_with_504(trained_run, slice_png):
    app = create_app(trained_run.best_checkpoint, ServeSettings(request_timeout_s=0.3))
    predictor = app.state.service.predictor.backend
    original = predictor.logits
    release = threading.Event()

    def slow(images, batch_size=256):
        release.wait(5)
        return original(images, batch_size)

    predictor.logits = slow
    name, data = slice_png
    with TestClient(app, base_url="http://127.0.0.1") as client:
        started = time.perf_counter()
        response = client.post("/predict", files={"file": (name, data, "image/png")})
        elapsed = time.perf_counter() - started
        release.set()
        assert response.status_code == 504 and "0.3 s limit" in response.json()["detail"]
        assert elapsed < 3
        predictor.logits = original
        assert client.post("/predict", files={"file": (name, data, "image/png")}).status_code == 200


def test_requests_beyond_the_queue_limit_get_503(trained_run, slice_png):
    app = create_app(trained_run.best_checkpoint, ServeSettings(max_pending=1, request_timeout_s=10))
    predictor = app.state.service.predictor.backend
    original, entered, release = predictor.logits, threading.Event(), threading.Event()

    def blocking(images, batch_size=256):
        entered.set()
        release.wait(10)
        return original(images, batch_size)

    predictor.logits = blocking
    name, data = slice_png
    with TestClient(app, base_url="http://127.0.0.1") as client:
        results = {}
        first = threading.Thread(target=lambda: results.setdefault("first", client.post(
            "/predict", files={"file": (name, data, "image/png")})))
        first.start()
        assert entered.wait(10)
        second = client.post("/predict", files={"file": (name, data, "image/png")})
        release.set()
        first.join(10)
        assert second.status_code == 503 and "busy" in second.json()["detail"]
        assert results["first"].status_code == 200


def test_non_ct_dicom_is_refused_unless_allowed_then_warned(trained_run, tmp_path):
    from kidneyct.synthetic.dicom_writer import write_ct_series

    (path,) = write_ct_series(tmp_path / "mr", [np.full((32, 32), 300.0, np.float32)], modality="MR")
    data = path.read_bytes()
    with TestClient(create_app(trained_run.best_checkpoint), base_url="http://127.0.0.1") as client:
        response = client.post("/predict", files={"file": ("mr.dcm", data, "application/dicom")})
        assert response.status_code == 422 and "modality is MR" in response.json()["detail"]
    allowed = create_app(trained_run.best_checkpoint, ServeSettings(allow_non_ct_dicom=True))
    with TestClient(allowed, base_url="http://127.0.0.1") as client:
        body = client.post("/predict", files={"file": ("mr.dcm", data, "application/dicom")}).json()
        assert body["image"]["modality"] == "MR" and "trained on CT" in body["warnings"][0]


def test_ct_dicom_upload_without_a_suffix_is_sniffed(client, tmp_path):
    from kidneyct.synthetic.dicom_writer import write_ct_series

    (path,) = write_ct_series(tmp_path / "ct", [np.full((32, 32), 40.0, np.float32)])
    response = client.post("/predict", files={"file": ("IM0001", path.read_bytes(), "application/octet-stream")})
    assert response.status_code == 200 and response.json()["image"]["kind"] == "dcm"


def _evil_checkpoint(folder: Path) -> Path:
    import pickle

    class Exploit:
        def __reduce__(self):
            return (print, ("this would run code",))

    path = folder / "evil.pt"
    path.write_bytes(pickle.dumps({"format": "kidneyct-checkpoint", "x": Exploit()}))
    return path


def test_serve_refuses_a_checkpoint_needing_arbitrary_unpickling(tmp_path, capsys, monkeypatch):
    from kidneyct.cli import main
    from kidneyct.errors import CheckpointError

    path = _evil_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="refused"):
        create_app(path)
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("a refused checkpoint must not be served"))
    assert main(["serve", "--checkpoint", str(path), "--port", "0"]) == 2
    captured = capsys.readouterr()
    assert "refused" in captured.err and "this would run code" not in captured.out + captured.err


def test_serve_command_binds_to_loopback_by_default(trained_run, monkeypatch):
    import uvicorn

    from kidneyct.cli import main

    calls = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.update(app=app, **kwargs))
    assert main(["serve", "--checkpoint", str(trained_run.best_checkpoint), "--max-upload-mb", "1",
                 "--timeout", "5"]) == 0
    assert calls["host"] == "127.0.0.1" and calls["port"] == 8000
    settings = calls["app"].state.settings
    assert settings.max_upload_bytes == 1024 * 1024 and settings.request_timeout_s == 5


def test_page_docs_and_static_files_are_served_and_offline(client):
    page = client.get("/")
    assert page.status_code == 200 and 'type="file"' in page.text and "/static/app.js" in page.text
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/static-docs/swagger-ui-bundle.js" in docs.text
    assert "cdn" not in docs.text.lower()  # the docs work offline too
    assert client.get("/static-docs/swagger-ui-bundle.js").status_code == 200
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/explain", "/health", "/model"} <= set(schema["paths"])
    from kidneyct.serve.app import STATIC as static

    for file in static.iterdir():
        text = file.read_text()
        assert client.get(f"/static/{file.name}").text == text
        assert "http://" not in text and "https://" not in text, f"{file.name} reaches outside the server"


def test_predict_says_whether_the_slice_is_in_scope(trained_run, tmp_path, slice_png):
    from kidneyct.training.study_settings import refit_study_settings

    refit_study_settings(trained_run.best_checkpoint, tmp_path / "ckpt.pt")  # with the scope statistics
    with TestClient(create_app(tmp_path / "ckpt.pt", ServeSettings()), base_url="http://127.0.0.1") as client:
        name, data = slice_png
        body = client.post("/predict", files={"file": (name, data, "image/png")}).json()
        assert body["in_scope"] is True and body["scope_reason"]
        noise = client.post("/predict", files={"file": ("noise.png", _png(128, noise=True), "image/png")}).json()
        assert noise["in_scope"] is False and "unlike the training slices" in noise["scope_reason"]
        assert set(noise["probabilities"]) == {"Tumor", "Normal"}  # the model's answer is still shown
