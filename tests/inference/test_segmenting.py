"""A segmenting checkpoint (lite0-unet) through the one prediction path: both looks on either backend, its kidney
map as the scope gate, no call on unenhanced kidneys, areas and label masks on the input's grid, a DICOM SEG, and
the same answers from the command line, the Python API, the web API and the DICOM node.

The checkpoints are random networks whose kidney map is set (kidney everywhere in the body view, or nowhere; see
conftest.py), so that what each test expects follows from the inputs alone: a body of 150 HU reads as
contrast-enhanced kidney, one of 10 HU as unenhanced."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import kidneyct
from kidneyct.about import DISCLAIMER
from kidneyct.cli import main
from kidneyct.inference.predictor import PredictOptions, Predictor
from kidneyct.inference.scope import UNENHANCED
from kidneyct.study.rule import NO_SCOPE

SIDE = 64
SPACING = 0.8  # mm, rows and columns


def _body(value_hu: float) -> np.ndarray:
    """An axial slice [SIDE, SIDE] in HU: air around an elliptic body of `value_hu`, a brighter blob in it."""
    rows, cols = np.mgrid[:SIDE, :SIDE]
    body = ((rows - 34) / 22) ** 2 + ((cols - 32) / 28) ** 2 <= 1
    hu = np.where(body, value_hu, -1000.0).astype(np.float32)
    hu[30:38, 14:22] += 60.0
    return hu


def _same_areas(found: dict, expected: dict) -> None:
    """Equal but for a pixel or two: a map's last bits, at the mask threshold, depend on the batch it ran in."""
    assert found.keys() == expected.keys()
    for key in ("kidney_px", "tumor_px"):
        assert abs(found[key] - expected[key]) <= 2, key


def _nifti(path: Path, value_hu: float, n: int = 3) -> Path:
    import nibabel as nib

    from kidneyct.io.nifti import from_display

    volume = np.stack([from_display(_body(value_hu)) for _ in range(n)], axis=2).astype(np.int16)
    nib.save(nib.Nifti1Image(volume, np.diag([SPACING, SPACING, 5.0, 1.0])), str(path))
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    from kidneyct.synthetic.dicom_writer import write_ct_series

    root = tmp_path_factory.mktemp("segmenting_inputs")
    pngs = root / "pngs"
    pngs.mkdir()
    for i, value in enumerate((150.0, 120.0)):
        unit = np.clip((_body(value) + 160.0) / 400.0, 0, 1)
        Image.fromarray(np.rint(unit * 255).astype(np.uint8)).save(pngs / f"slice-{i}.png")
    series = root / "series"
    write_ct_series(series, [_body(150.0)] * 3, pixel_spacing=SPACING, patient_id="SEGMENTING", seed=7)
    return {"pngs": pngs, "volume": _nifti(root / "enhanced.nii.gz", 150.0),
            "unenhanced": _nifti(root / "unenhanced.nii.gz", 10.0), "series": series}


@pytest.fixture(scope="module")
def torch_predictor(segmenter) -> Predictor:
    return Predictor.open(segmenter, "cpu", options=PredictOptions(workers=0))


@pytest.fixture(scope="module")
def by_api(torch_predictor, inputs) -> dict[str, dict]:
    names = ["png", "volume", "unenhanced", "series"]
    paths = [inputs["pngs"] / "slice-0.png", inputs["volume"], inputs["unenhanced"], inputs["series"]]
    return {name: result.to_dict() for name, result in zip(names, torch_predictor.run(paths))}


def test_a_segmenting_checkpoint_runs_both_looks_and_keeps_its_maps(torch_predictor, inputs):
    backend = torch_predictor.backend
    assert backend.segmenting and not torch_predictor.judge.needs_features and torch_predictor.judge.look is None
    views = np.stack([torch_predictor.preprocessing.to_uint8(s) for s in kidneyct.io.read_slices(inputs["volume"])])
    output = backend.forward(views)
    assert output.logits.shape == (3, 2) and output.maps.shape == (3, 2, 2 * SIDE, 2 * SIDE)
    assert 0 <= output.maps.min() and output.maps.max() <= 1 and output.kidney_fraction.min() > 0.5
    np.testing.assert_allclose(backend.logits(views), output.logits, atol=1e-5)


def test_torch_and_onnx_backends_agree(segmenter, torch_predictor, by_api, inputs, tmp_path):
    onnx = Predictor.open(segmenter, "cpu", backend="onnx", options=PredictOptions(workers=0))
    assert onnx.backend.name == "onnxruntime" and onnx.backend.segmenting
    views = np.stack([onnx.preprocessing.to_uint8(s) for s in kidneyct.io.read_slices(inputs["volume"])])
    ours, theirs = torch_predictor.backend.forward(views), onnx.backend.forward(views)
    np.testing.assert_allclose(theirs.logits, ours.logits, atol=1e-3)
    np.testing.assert_allclose(theirs.maps, ours.maps, atol=1e-3)
    result = onnx.predict(inputs["volume"]).to_dict()
    for a, b in zip(result["slices"], by_api["volume"]["slices"]):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-4)
        assert a["in_scope"] == b["in_scope"]
    # Its key images come from the tumor map, which the ONNX export has too: no Grad-CAM, no torch needed.
    from kidneyct.inference.dicom_results import write_dicom_results
    from kidneyct.inference.model_facts import ModelFacts

    (study,) = write_dicom_results(onnx.run([inputs["series"]]), tmp_path / "dicom", onnx,
                                   ModelFacts.of(onnx.checkpoint, onnx.backend.source))
    assert study.key_images and study.sr.is_file()


def test_an_enhanced_volume_gets_a_call_with_areas_in_pixels_and_mm2(by_api):
    volume = by_api["volume"]
    assert volume["kind"] == "volume" and volume["tumor"] is not None and volume["in_scope_slices"] == [0, 1, 2]
    for row in volume["slices"]:
        assert row["in_scope"] and row["call"] in ("Tumor", "Normal")
        assert "kidney map" in row["scope_reason"]
        areas = row["areas"]
        assert areas["kidney_px"] > 0 and areas["tumor_px"] <= areas["kidney_px"]
        assert areas["kidney_mm2"] == pytest.approx(areas["kidney_px"] * SPACING ** 2, abs=0.01)


def test_unenhanced_kidneys_get_no_call_with_a_warning(by_api):
    study = by_api["unenhanced"]
    assert study["tumor"] is None and study["tumor_probability"] is None and study["rule"] == UNENHANCED
    assert any("without contrast medium" in w and "HU" in w for w in study["warnings"])
    assert all(row["call"] is None and not row["in_scope"] and row["areas"] is None for row in study["slices"])


def test_an_image_with_no_kidney_is_out_of_scope(blind_segmenter, inputs):
    predictor = kidneyct.load(blind_segmenter, device="cpu")
    image, volume = predictor.run([inputs["pngs"] / "slice-0.png", inputs["volume"]])
    (row,) = image.slices
    assert not row.in_scope and row.call is None and row.areas is None
    assert "no kidney in the model's kidney map" in row.scope_reason and "not assessed" in row.scope_reason
    assert volume.tumor is None and volume.rule == NO_SCOPE and volume.in_scope_slices == []
    assert "not a negative result" in volume.rule  # a mass that replaced the kidney is not found as kidney either


def test_predict_writes_masks_on_each_inputs_grid(segmenter, inputs, by_api, tmp_path):
    import nibabel as nib

    out, masks = tmp_path / "results.json", tmp_path / "masks"
    assert main(["predict", "--checkpoint", str(segmenter), str(inputs["pngs"]), str(inputs["volume"]),
                 "--out", str(out), "--masks-out", str(masks), "--device", "cpu", "--workers", "0",
                 "--no-progress"]) == 0
    document = json.loads(out.read_text())
    assert document["disclaimer"] == DISCLAIMER
    pngs, volume = document["studies"][:2], document["studies"][2]
    for study in pngs:
        (row,) = study["slices"]
        labels = np.asarray(Image.open(row["masks"]["labels"]))
        assert labels.shape == (SIDE, SIDE) and set(np.unique(labels)) <= {0, 1, 2}
        assert (labels > 0).sum() == row["areas"]["kidney_px"] > 0 and row["areas"]["kidney_mm2"] is None
        assert (labels[np.asarray(Image.open(row["source"])) == 0] == 0).all()  # no label in the air
    for a, b in zip(volume["slices"], by_api["volume"]["slices"]):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-4)
    written = nib.load(volume["slices"][0]["masks"]["labels"])
    reference = nib.load(str(inputs["volume"]))
    assert written.shape == reference.shape and np.allclose(written.affine, reference.affine)
    labels = np.asarray(written.dataobj)
    for index, row in enumerate(volume["slices"]):
        assert (labels[:, :, index] > 0).sum() == row["areas"]["kidney_px"]
    assert main(["predict", "--checkpoint", str(segmenter), str(inputs["volume"]), "--out", str(tmp_path / "r.csv"),
                 "--masks-out", str(tmp_path / "m2"), "--device", "cpu", "--workers", "0", "--no-progress"]) == 0
    import csv

    with open(tmp_path / "r.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    for csv_row, row in zip(table, volume["slices"]):  # the CSV carries each slice's areas too
        assert int(csv_row["kidney_px"]) == row["areas"]["kidney_px"]
        assert float(csv_row["tumor_mm2"]) == pytest.approx(row["areas"]["tumor_px"] * SPACING ** 2, abs=0.01)


def test_dicom_out_writes_a_segmentation_beside_the_sr(segmenter, inputs, tmp_path):
    import highdicom as hd
    import nibabel as nib
    import pydicom

    out = tmp_path / "results.json"
    assert main(["predict", "--checkpoint", str(segmenter), str(inputs["series"]), "--out", str(out),
                 "--masks-out", str(tmp_path / "masks"), "--dicom-out", str(tmp_path / "dicom"), "--device", "cpu",
                 "--workers", "0", "--no-progress"]) == 0
    (study,) = json.loads(out.read_text())["studies"]
    row = study["slices"][0]
    (folder,) = (tmp_path / "dicom").iterdir()
    assert Path(row["masks"]["dicom_seg"]).parent == folder and len(list(folder.glob("SR-*.dcm"))) == 1
    seg = hd.seg.segread(row["masks"]["dicom_seg"])
    key_images = list(folder.glob("SC-*.dcm"))
    assert key_images
    for key_image in key_images:  # a segmenting model's key images show its tumor map, not a Grad-CAM
        assert "tumor map key images" in pydicom.dcmread(key_image, stop_before_pixels=True).SeriesDescription
    assert "not a diagnosis" in seg.SeriesDescription
    sources = sorted(inputs["series"].glob("*.dcm"))

    uids = [pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in sources]
    back = seg.get_pixels_by_source_instance(uids, combine_segments=True, skip_overlap_checks=True)
    volume = np.asarray(nib.load(row["masks"]["labels"]).dataobj)  # [column, row, slice] on the series' grid
    assert np.array_equal(back, volume.transpose(2, 1, 0))
    assert (back > 0).sum(axis=(1, 2)).tolist() == [s["areas"]["kidney_px"] for s in study["slices"]]


def test_heatmaps_of_a_segmenting_model_are_its_tumor_map(torch_predictor, inputs, tmp_path):
    predictor = torch_predictor.with_options(heatmaps=str(tmp_path / "cams"))
    (row,) = predictor.predict(inputs["pngs"] / "slice-0.png").slices
    assert Path(row.heatmap).is_file()
    views = np.stack([predictor.preprocessing.to_uint8(s) for s in kidneyct.io.read_slices(inputs["volume"])])
    np.testing.assert_allclose(predictor.explainer().heatmaps(views, [0, 0, 0]),
                               predictor.backend.forward(views).maps[:, 1], atol=1e-6)


def test_the_web_api_and_the_dicom_node_answer_as_predict_does(segmenter, inputs, by_api, tmp_path):
    pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx (dev extra)")
    from fastapi.testclient import TestClient

    from kidneyct.io.dicom_header import read_header
    from kidneyct.serve import ServeSettings, create_app
    from kidneyct.serve.dicom_node import DicomNode, NodeSettings
    from kidneyct.serve.dicom_store import DueSeries

    path = inputs["pngs"] / "slice-0.png"
    with TestClient(create_app(segmenter, ServeSettings(device="cpu")), base_url="http://127.0.0.1") as client:
        body = client.post("/predict", files={"file": (path.name, path.read_bytes())}).json()
    expected = by_api["png"]["slices"][0]
    assert body["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-4)
    _same_areas(body["slice"]["areas"], expected["areas"])
    assert body["disclaimer"] == DISCLAIMER

    header = read_header(next(inputs["series"].glob("*.dcm")))
    node = DicomNode(segmenter, NodeSettings(out=tmp_path / "node", device="cpu"))
    record = node.answer(DueSeries(header.SeriesInstanceUID, header.StudyInstanceUID, inputs["series"], frozenset()))
    assert record["finding"]["tumor"] == by_api["series"]["tumor"] and record["disclaimer"] == DISCLAIMER
    (written,) = json.loads((tmp_path / "node" / "results" / header.SeriesInstanceUID / "results.json").read_text())[
        "studies"]
    for a, b in zip(written["slices"], by_api["series"]["slices"]):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-4)
        _same_areas(a["areas"], b["areas"])
    assert list((tmp_path / "node" / "dicom").rglob("SEG-*.dcm"))
