"""Bad input, one table, two doors: every case goes through `kidneyct predict` (CLI) and `POST /predict`
(API). Bad files give a clear message naming the problem and no crash: the CLI batch reports them as
skipped and still writes every good result, the API answers a 4xx JSON error. Good-but-unusual files
(16-bit, RGBA, CMYK, a PNG named .jpg, a DICOM named .png) are simply read, by their content."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from kidneyct.cli import main
from kidneyct.io import file_kind
from kidneyct.synthetic import bad_files as bad
from kidneyct.synthetic.bad_files import dicom_bytes, gradient, image_bytes, nifti_bytes, nifti_header

NIFTI_REFUSED = "NIfTI volumes are not accepted"  # the API's answer (415) to every volume


def _dicom(tmp: Path, modality: str = "CT", strip_pixels: bool = False) -> bytes:
    return dicom_bytes(Modality=modality, PixelData=None if strip_pixels else b"\0" * 32 * 32 * 2)


def _with_element(data: bytes, tag: tuple[int, int], value: bytes, vr_length: int | None = None) -> bytes:
    """`data` (explicit VR little endian) with one short-form element's value replaced by `value`."""
    header = struct.pack("<HH", *tag)
    at = data.index(header, 132)
    old = struct.unpack("<H", data[at + 6:at + 8])[0]
    length = len(value) if vr_length is None else vr_length
    return data[:at + 6] + struct.pack("<H", length) + value + data[at + 8 + old:]


def _apng() -> bytes:
    frames = [Image.fromarray(gradient()), Image.fromarray(255 - gradient())]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="PNG", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def _jpeg_side(side: int) -> bytes:
    """A real JPEG whose SOF0 header is patched to declare side x side pixels."""
    data = bytearray(image_bytes(gradient(256), "JPEG", quality=90))
    at = data.index(b"\xff\xc0")
    data[at + 5:at + 9] = struct.pack(">HH", side, side)
    return bytes(data)


def _png_text_bomb() -> bytes:
    """A zTXt chunk inflating to 64 MiB ahead of a valid image (Pillow caps text chunks)."""
    png = image_bytes(gradient())
    text = b"comment\0\0" + zlib.compress(b"\0" * (64 * 1024 * 1024), 9)
    return png[:33] + bad.png_chunk(b"zTXt", text) + png[33:]


def _png_bad_crc() -> bytes:
    data = bytearray(image_bytes(gradient()))
    data[data.index(b"IDAT") + 6] ^= 0xFF  # a data byte: the chunk's CRC no longer matches
    return bytes(data)


def _nifti_inf_intercept() -> bytes:
    header = bytearray(nifti_header((16, 16, 2), np.int16))
    struct.pack_into("<ff", header, 112, 1.0, float("inf"))  # scl_slope, scl_inter
    return bytes(header) + bytes(16 * 16 * 2 * 2)


def _nan_volume() -> bytes:
    volume = np.zeros((16, 16, 2), np.float32)
    volume[3, 3, 1] = np.nan
    return nifti_bytes(volume)


def _cmyk_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(gradient()).convert("CMYK").save(buffer, format="JPEG")
    return buffer.getvalue()


def _dicom_rgb() -> bytes:
    return dicom_bytes(SamplesPerPixel=3, PhotometricInterpretation="RGB", PlanarConfiguration=0,
                       PixelData=b"\0" * 32 * 32 * 2 * 3)


@dataclass(frozen=True)
class Case:
    id: str
    filename: str
    build: Callable[[Path], bytes]
    cli_error: str | None  # regex in the CLI's "skipped" reason; None: the file is read and predicted
    api_status: int
    api_error: str | None  # regex in the API's JSON "detail"


def _refused(id_, filename, build, reason, status=422, api_reason=None) -> Case:
    return Case(id_, filename, build, reason, status, reason if api_reason is None else api_reason)


def _volume(id_, filename, build, reason) -> Case:
    return Case(id_, filename, build, reason, 415, NIFTI_REFUSED)


def _good(id_, filename, build) -> Case:
    return Case(id_, filename, build, None, 200, None)


CASES = [
    # nothing there, or damaged
    _refused("zero-byte", "empty.png", lambda t: b"", "empty \\(0 bytes\\)", 400),
    _refused("truncated-jpeg", "cut.jpg", lambda t: image_bytes(gradient(256), "JPEG")[:2000], "corrupt or truncated"),
    _refused("text-named-png", "notes.png", lambda t: b"this is not an image at all\n" * 20, "not a readable image"),
    _refused("html-named-jpg", "page.jpg", lambda t: b"<html><body>hello</body></html>\n" * 10,
             "not a readable image"),
    _refused("png-bad-crc", "crc.png", lambda t: _png_bad_crc(), "corrupt or truncated"),
    _refused("png-text-bomb", "text.png", lambda t: _png_text_bomb(), "corrupt or truncated|too large"),
    # formats kidneyct does not read, whatever their name
    _refused("tiff-named-png", "scan.png", lambda t: image_bytes(gradient(), "TIFF"), "TIFF content", 415),
    _refused("tiff-named-tif", "scan.tif", lambda t: image_bytes(gradient(), "TIFF"), "TIFF content", 415),
    _refused("gif-named-png", "anim.png", lambda t: image_bytes(gradient(), "GIF"), "GIF content", 415),
    _refused("webp-named-png", "photo.png", lambda t: image_bytes(gradient(), "WEBP"), "WebP content", 415),
    _refused("bmp-named-png", "paint.png", lambda t: image_bytes(gradient(), "BMP"), "BMP content", 415),
    _refused("ico-named-png", "icon.png", lambda t: image_bytes(gradient(), "ICO"), "ICO content", 415),
    _refused("pdf-named-png", "report.png", lambda t: b"%PDF-1.4\n" + b"0" * 500, "PDF content", 415),
    _refused("zip-named-dcm", "study.dcm", lambda t: b"PK\3\4" + b"\0" * 500, "ZIP content", 415),
    # several frames: which would be the slice?
    _refused("animated-png", "cine.png", lambda t: _apng(), "holds 2 frames"),
    _refused("dicom-multiframe", "frames.dcm", lambda t: bad.multiframe_dicom(4, 32), "multi-frame"),
    # too small, too large, bombs (refused from the header, before decoding)
    _refused("png-1x1", "dot.png", lambda t: image_bytes(np.zeros((1, 1), np.uint8)), "too small"),
    _refused("dicom-1x1", "dot.dcm", lambda t: dicom_bytes(np.zeros((1, 1), np.float32)), "too small"),
    _volume("nifti-1x1", "dot.nii.gz", lambda t: nifti_bytes(np.zeros((1, 1, 3), np.int16)), "too small"),
    _refused("decompression-bomb", "bomb.png", lambda t: bad.png_bomb(), "30000x30000|decompression bomb"),
    _refused("jpeg-huge-side", "wide.jpg", lambda t: _jpeg_side(60000), "pixel limit|decompression bomb"),
    _refused("dicom-huge-side", "wide.dcm", lambda t: dicom_bytes(Rows=30000, Columns=30000), "pixel limit"),
    _refused("dicom-deflate-bomb", "deflated.dcm", lambda t: bad.deflated_dicom_bomb(1024), "decoded-size budget"),
    _volume("nifti-header-bomb", "huge.nii", lambda t: bad.nifti_header_bomb(), "decoded-size budget"),
    _volume("nifti-gz-bomb", "zeros.nii.gz", lambda t: bad.nifti_gz_bomb(1024), "decoded-size budget"),
    # DICOM attributes and pixels
    _refused("dicom-without-pixels", "nopixels.dcm", lambda t: _dicom(t, strip_pixels=True), "no pixel data"),
    _refused("dicom-mr", "brain.dcm", lambda t: _dicom(t, modality="MR"), "modality is MR, not CT"),
    _refused("dicom-rgb", "colour.dcm", lambda t: _dicom_rgb(), "single grey slice"),
    _refused("dicom-nan-slope", "nan.dcm", lambda t: dicom_bytes(RescaleSlope="nan"), "rescale .* must be finite"),
    _refused("dicom-inf-intercept", "inf.dcm", lambda t: dicom_bytes(RescaleIntercept="inf"),
             "rescale .* must be finite"),
    _refused("dicom-text-slope", "text.dcm", lambda t: _with_element(dicom_bytes(), (0x0028, 0x1053), b"abc "),
             "rescale .* not numbers|malformed"),
    _refused("dicom-malformed-rows", "rows.dcm",
             lambda t: _with_element(dicom_bytes(), (0x0028, 0x0010), b"\x20\0\x20\0"), "malformed|cannot decode"),
    _refused("dicom-short-pixels", "short.dcm", lambda t: dicom_bytes(PixelData=b"\0" * 100), "cannot decode"),
    _refused("dicom-unknown-syntax", "syntax.dcm", lambda t: dicom_bytes(TransferSyntaxUID="1.2.3.4"),
             "cannot decode|corrupt|malformed"),
    # NIfTI volumes (the API takes none)
    _volume("nifti-4d", "v4d.nii.gz", lambda t: nifti_bytes(np.zeros((16, 16, 3, 2), np.float32)),
            "expected a 3-D volume"),
    _volume("corrupt-gzip", "broken.nii.gz", lambda t: gzip.compress(b"x" * 500)[:40], "NIfTI"),
    _volume("nifti-zero-slices", "empty.nii", lambda t: nifti_header((16, 16, 0)), "holds no voxels"),
    _volume("nifti-nan-voxels", "nan.nii.gz", lambda t: _nan_volume(), "non-finite"),
    _volume("nifti-inf-intercept", "inf.nii", lambda t: _nifti_inf_intercept(), "intercept"),
    _volume("nifti-complex", "complex.nii.gz", lambda t: nifti_bytes(np.zeros((16, 16, 2), np.complex64)),
            "not grey values"),
    _volume("nifti-truncated", "cut.nii", lambda t: nifti_bytes(np.zeros((64, 64, 4), np.int16), gz=False)[:5000],
            "corrupt NIfTI data|not a readable"),
    # unusual but good: read by their content
    _good("png-named-jpg", "slice.jpg", lambda t: image_bytes(gradient())),
    _good("dicom-named-png", "ct.png", lambda t: dicom_bytes()),
    _good("dicom-no-preamble", "bare.dcm", lambda t: dicom_bytes()[132:]),  # PACS dumps: DICOM by its first element
    _good("jpeg-named-dcm", "photo.dcm", lambda t: image_bytes(gradient(), "JPEG")),
    _good("png-16-bit", "deep.png", lambda t: image_bytes(gradient().astype(np.uint16) * 257)),
    _good("png-rgba", "alpha.png",
          lambda t: image_bytes(np.dstack([gradient()] * 3 + [np.full((64, 64), 255, np.uint8)]))),
    _good("png-grey-alpha", "la.png", lambda t: image_bytes(np.dstack([gradient()] * 2), "PNG")),
    _good("jpeg-cmyk", "print.jpg", lambda t: _cmyk_jpeg()),
    _good("png-trailing-bytes", "tail.png", lambda t: image_bytes(gradient()) + b"\0" * 1000),
]
CASE_IDS = [c.id for c in CASES]


def test_the_table_holds_at_least_40_kinds_of_bad_input():
    assert len({c.id for c in CASES}) == len(CASES) and sum(c.cli_error is not None for c in CASES) >= 40


@pytest.fixture(scope="module")
def client(trained_run):
    from fastapi.testclient import TestClient

    from kidneyct.serve import create_app

    with TestClient(create_app(trained_run.best_checkpoint), base_url="http://127.0.0.1") as test_client:
        yield test_client


def _write(case: Case, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    scratch = folder.parent / f"{folder.name}-scratch"  # builders' own files stay out of the batch
    scratch.mkdir(exist_ok=True)
    path = folder / case.filename
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid values these cases set on purpose
        path.write_bytes(case.build(scratch))
    return path


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the damage it reads past
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_bad_input_through_the_cli_batch(case, trained_run, tmp_path, capsys):
    good = tmp_path / "good" / "slice.png"
    good.parent.mkdir()
    good.write_bytes(image_bytes(gradient()))
    path = _write(case, tmp_path / "in")
    out = tmp_path / "out" / "results.csv"
    code = main(["predict", "--checkpoint", str(trained_run.best_checkpoint), str(good), str(path),
                 "--device", "cpu", "--no-progress", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0 and "Traceback" not in captured.err, captured.err
    rows = {r["source"]: r for r in csv.DictReader(open(out))}
    assert str(good) in rows  # the good result is written whatever its neighbour did
    if case.cli_error is None:
        assert str(path) in rows and "skipped" not in captured.err
        assert sum(float(v) for k, v in rows[str(path)].items() if k.startswith("p_")) == pytest.approx(1, abs=1e-5)
    else:
        assert str(path) not in rows
        skipped = {r["path"]: r["reason"] for r in csv.DictReader(open(out.with_suffix(".skipped.csv")))}
        assert list(skipped) == [str(path)] and re.search(case.cli_error, skipped[str(path)]), skipped
        assert f"skipped {path}: " in captured.err


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_bad_input_through_the_api(case, client, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = case.build(tmp_path)
    response = client.post("/predict", files={"file": (case.filename, data, "application/octet-stream")})
    assert response.status_code == case.api_status, response.text
    body = response.json()
    if case.api_error is None:
        assert body["call"] in (*body["classes"], None) and body["filename"] == case.filename
        assert sum(body["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    else:
        assert re.search(case.api_error, body["detail"]), body["detail"]
        assert "kidneyct-upload-" not in body["detail"]  # names the client's file, not the server's temp file
        assert body["detail"].startswith(f"{case.filename}: ")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_batch_reports_every_bad_file_and_writes_every_good_result(trained_run, tmp_path, capsys):
    folder = tmp_path / "batch"
    for case in CASES:
        _write(case, folder)
    good = sorted(str(folder / c.filename) for c in CASES if c.cli_error is None)
    bad_files = sorted(str(folder / c.filename) for c in CASES if c.cli_error is not None)
    code = main(["predict", "--checkpoint", str(trained_run.best_checkpoint), str(folder), "--device", "cpu",
                 "--no-progress", "--out", str(tmp_path / "out" / "results.json")])
    captured = capsys.readouterr()
    assert code == 0 and "Traceback" not in captured.err, captured.err
    payload = json.loads((tmp_path / "out" / "results.json").read_text())
    read = {row["source"] for study in payload["studies"] for row in study["slices"]}
    skipped = {row["path"] for study in payload["studies"] for row in study["skipped"]}
    # A folder is walked for files named as images (scan.tif is not listed); those named .dcm form one
    # series (whose slices are DICOM ones only); every other file is read by its content.
    series = {p for p in good + bad_files if p.endswith(".dcm")}
    assert set(good) - series <= read and not read & set(bad_files)
    assert {p for p in bad_files if file_kind(p)} - series <= skipped
