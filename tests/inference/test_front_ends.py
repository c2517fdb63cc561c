"""The command line, the Python API, the web API and the DICOM node give the same per-slice and per-study results
on the same inputs (a phantom DICOM series, the real NIfTI scan, single slices): they all call the one prediction
path, kidneyct.inference.run, and add only transport and formatting."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

import kidneyct
from kidneyct.cli import main

REAL_SCAN = Path(__file__).resolve().parents[2] / "examples" / "abdomen-ct-30slices.nii.gz"
SLICE_KEYS = ("index", "probabilities", "call", "in_scope", "scope_reason", "warnings")
STUDY_KEYS = ("kind", "n_slices", "tumor_probability", "tumor", "threshold", "rule", "driving_slices",
              "positive_slices", "in_scope_slices", "warnings")


def _comparable(study: dict) -> dict:
    """A result without the names its front end gives the input and its files (an upload's, a stored copy's)."""
    return {**{k: study[k] for k in STUDY_KEYS}, "slices": [{k: s[k] for k in SLICE_KEYS} for s in study["slices"]]}


def _assert_same(found: dict, expected: dict) -> None:
    """Equal, probabilities to 1e-4: a convolution's last bits depend on the batch a slice was scored in (the
    node scores a series alone, the API with the inputs given beside it)."""
    found, expected = _comparable(found), _comparable(expected)
    for a, b in zip(found["slices"], expected["slices"]):
        assert a.pop("probabilities") == pytest.approx(b.pop("probabilities"), abs=1e-4)
    assert found.pop("tumor_probability") == pytest.approx(expected.pop("tumor_probability"), abs=1e-4)
    assert found == expected


@pytest.fixture(scope="module")
def inputs(phantom_dicom, phantom_png, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("front_ends")
    series = folder / "series"
    shutil.copytree(phantom_dicom / "Tumor" / "tumor-0000", series)
    single = {"png": next((phantom_png / "Tumor").glob("*[0-9]).png")),
              "ct_small": Path(get_testdata_file("CT_small.dcm"))}
    return {"series": series, "scan": REAL_SCAN, **single}


@pytest.fixture(scope="module")
def by_api(trained_run, inputs) -> dict[str, dict]:
    predictor = kidneyct.load(trained_run.best_checkpoint)
    return {name: result.to_dict() for name, result in zip(inputs, predictor.run(inputs.values()))}


def test_an_out_of_scope_slice_gets_no_call_anywhere(by_api):
    slices = [s for study in by_api.values() for s in study["slices"]]
    assert all((s["call"] is None) == (not s["in_scope"]) for s in slices)
    assert not by_api["ct_small"]["slices"][0]["in_scope"]  # a head slice: no kidney, unlike the training slices
    assert by_api["scan"]["kind"] == "volume" and by_api["scan"]["n_slices"] == 30
    assert by_api["series"]["kind"] == "series" and by_api["series"]["rule"]


def test_the_command_line_writes_what_the_python_api_returns(trained_run, inputs, by_api, tmp_path):
    out = tmp_path / "results.json"
    assert main(["predict", "--checkpoint", str(trained_run.best_checkpoint), *map(str, inputs.values()),
                 "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    written = json.loads(out.read_text())["studies"]
    assert [study["input"] for study in written] == [by_api[name]["input"] for name in inputs]
    for name, study in zip(inputs, written):
        _assert_same(study, by_api[name])


def test_the_web_api_answers_what_the_python_api_returns(trained_run, inputs, by_api):
    pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx (dev extra)")
    from fastapi.testclient import TestClient

    from kidneyct.serve import ServeSettings, create_app

    app = create_app(trained_run.best_checkpoint, ServeSettings(device="cpu"))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        for name in ("png", "ct_small"):
            path = inputs[name]
            body = client.post("/predict", files={"file": (path.name, path.read_bytes())}).json()
            _assert_same(body["result"], by_api[name])
            assert body["call"] == by_api[name]["slices"][0]["call"]


def test_the_dicom_node_answers_a_series_as_the_python_api_does(trained_run, inputs, by_api, tmp_path):
    from kidneyct.io.dicom_header import read_header
    from kidneyct.serve.dicom_node import DicomNode, NodeSettings
    from kidneyct.serve.dicom_store import DueSeries

    header = read_header(next(inputs["series"].glob("*.dcm")))
    node = DicomNode(trained_run.best_checkpoint, NodeSettings(out=tmp_path / "node", device="cpu"))
    record = node.answer(DueSeries(header.SeriesInstanceUID, header.StudyInstanceUID, inputs["series"], frozenset()))
    assert record["finding"]["tumor"] == by_api["series"]["tumor"]
    (written,) = json.loads((tmp_path / "node" / "results" / header.SeriesInstanceUID / "results.json").read_text())[
        "studies"]
    _assert_same(written, by_api["series"])
