"""Bad input, one table, two doors: every case goes through `kidneyct predict` (CLI) and `POST /predict`
(API). Bad files give a clear message naming the problem and no crash; a batch reports them and still
writes every good result. Good-but-unusual files (16-bit, RGBA, a PNG named .jpg) are simply read."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from kidneyct.cli import main


def _slice_uint8(size: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (((xx + yy) * 255) // (2 * size - 2)).astype(np.uint8)


def _png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format="PNG") if mode else Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def _jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(_slice_uint8(256)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _bomb_png(side: int = 30000) -> bytes:
    """A tiny file declaring a side x side image: the header alone must stop it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1024))
            + chunk(b"IEND", b""))


def _dicom(tmp: Path, modality: str = "CT", strip_pixels: bool = False) -> bytes:
    import pydicom

    from kidneyct.synthetic.dicom_writer import write_ct_series

    (path,) = write_ct_series(tmp / f"dicom-{modality}-{strip_pixels}", [np.full((32, 32), 40.0, np.float32)],
                              modality=modality)
    if strip_pixels:
        ds = pydicom.dcmread(path)
        del ds.PixelData
        ds.save_as(path)
    return path.read_bytes()


def _nifti_4d(tmp: Path) -> bytes:
    path = tmp / "v4d.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 3, 2), np.float32), np.eye(4)), str(path))
    return path.read_bytes()


@dataclass(frozen=True)
class Case:
    id: str
    filename: str
    build: Callable[[Path], bytes]
    cli_error: str | None  # regex in the CLI's "skipped" line; None: the file is read and predicted
    api_status: int
    api_error: str | None  # regex in the API's JSON "detail"


CASES = [
    Case("zero-byte", "empty.png", lambda t: b"", "empty \\(0 bytes\\)", 400, "empty \\(0 bytes\\)"),
    Case("truncated-jpeg", "cut.jpg", lambda t: _jpeg_bytes()[:2000], "corrupt or truncated", 422,
         "corrupt or truncated"),
    Case("text-named-png", "notes.png", lambda t: b"this is not an image at all\n" * 20,
         "not a readable image", 422, "not a readable image"),
    Case("png-named-jpg", "slice.jpg", lambda t: _png_bytes(_slice_uint8()), None, 200, None),
    Case("decompression-bomb", "bomb.png", lambda t: _bomb_png(), "decompression bomb|pixel limit", 422,
         "decompression bomb|30000x30000"),
    Case("png-16-bit", "deep.png", lambda t: _png_bytes(_slice_uint8().astype(np.uint16) * 257), None, 200, None),
    Case("png-rgba", "alpha.png",
         lambda t: _png_bytes(np.dstack([_slice_uint8()] * 3 + [np.full((64, 64), 255, np.uint8)]), "RGBA"),
         None, 200, None),
    Case("dicom-without-pixels", "nopixels.dcm", lambda t: _dicom(t, strip_pixels=True), "no pixel data", 422,
         "no pixel data"),
    Case("dicom-mr", "brain.dcm", lambda t: _dicom(t, modality="MR"), "modality is MR, not CT", 422,
         "modality is MR, not CT"),
    Case("nifti-4d", "v4d.nii.gz", _nifti_4d, "expected a 3-D volume", 415, "NIfTI volumes are not accepted"),
    Case("corrupt-gzip", "broken.nii.gz", lambda t: gzip.compress(b"x" * 500)[:40], "NIfTI", 415,
         "NIfTI volumes are not accepted"),
]


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
    path.write_bytes(case.build(scratch))
    return path


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_through_the_cli(case, trained_run, tmp_path, capsys):
    path = _write(case, tmp_path / "in")
    code = main(["predict", "--checkpoint", str(trained_run.best_checkpoint), str(path), "--device", "cpu",
                 "--no-progress"])
    captured = capsys.readouterr()
    if case.cli_error is None:
        assert code == 0, captured.err
        row = json.loads(captured.out.strip().splitlines()[-1])
        assert row["source"] == str(path) and sum(row["probabilities"].values()) == pytest.approx(1, abs=1e-5)
        assert "skipped" not in captured.err
    else:
        assert code == 1 and captured.out.strip() == ""
        skipped = [line for line in captured.err.splitlines() if line.startswith("skipped ")]
        assert len(skipped) == 1 and str(path) in skipped[0], captured.err
        assert re.search(case.cli_error, skipped[0]), skipped[0]
        assert "Traceback" not in captured.err


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_through_the_api(case, client, tmp_path):
    data = case.build(tmp_path)
    response = client.post("/predict", files={"file": (case.filename, data, "application/octet-stream")})
    assert response.status_code == case.api_status, response.text
    body = response.json()
    if case.api_error is None:
        assert body["predicted"] in body["classes"] and body["filename"] == case.filename
        assert sum(body["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    else:
        assert re.search(case.api_error, body["detail"]), body["detail"]
        assert "kidneyct-upload-" not in body["detail"]  # names the client's file, not the server's temp file
        assert body["detail"].startswith(f"{case.filename}: ")


def test_batch_reports_every_bad_file_and_writes_every_good_result(trained_run, tmp_path, capsys):
    folder = tmp_path / "batch"
    for case in CASES:
        _write(case, folder)
    good = sorted(str(folder / c.filename) for c in CASES if c.cli_error is None)
    bad = sorted(str(folder / c.filename) for c in CASES if c.cli_error is not None)
    code = main(["predict", "--checkpoint", str(trained_run.best_checkpoint), str(folder), "--device", "cpu",
                 "--no-progress", "--out", str(tmp_path / "out" / "results.csv")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rows = list(csv.DictReader(open(tmp_path / "out" / "results.csv")))
    assert sorted(r["source"] for r in rows) == good
    skipped = {r["path"]: r["reason"] for r in csv.DictReader(open(tmp_path / "out" / "results.skipped.csv"))}
    # The DICOM files of one folder form a series: each bad one is reported by its own name, and the
    # series as a whole (no readable slice left) by the folder's.
    assert sorted(set(skipped) - {str(folder)}) == bad, skipped
    assert "no readable slice" in skipped[str(folder)]
    for path in bad:
        assert f"skipped {path}: " in captured.err
