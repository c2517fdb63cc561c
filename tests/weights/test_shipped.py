"""The model shipped inside the package: it loads without a checkpoint argument, carries its model card, and
`kidneyct predict` runs it on the committed real scan (its ONNX export: no torch needed)."""

import json
from pathlib import Path

import kidneyct
from kidneyct.cli import main
from kidneyct.weights import shipped_checkpoint

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "abdomen-ct-30slices.nii.gz"


def test_the_shipped_checkpoint_and_its_export_describe_themselves_alike():
    by_torch, by_onnx = kidneyct.load(), kidneyct.load(backend="onnx")
    assert by_onnx.backend.name == "onnxruntime" and by_onnx.checkpoint.header() == by_torch.checkpoint.header()
    card = by_torch.checkpoint.model_card
    assert "not a medical device" in card.disclaimer and card.weights_licence and card.validation
    assert {v.source for v in card.validation} >= {s.name for s in by_torch.checkpoint.sources}
    assert all(s.licence for s in by_torch.checkpoint.sources)
    # The package stays a few MB to install: fp16 weights, and the fp32 export onnxruntime runs on any CPU.
    assert shipped_checkpoint().stat().st_size < 10_000_000 and shipped_checkpoint(onnx=True).stat().st_size < 20_000_000


def test_predict_without_a_checkpoint_runs_the_shipped_model_on_the_example_scan(tmp_path, capsys):
    assert main(["predict", str(EXAMPLE), "--out", str(tmp_path / "r.json"), "--no-progress"]) == 0
    (study,) = json.loads((tmp_path / "r.json").read_text())["studies"]
    assert study["kind"] == "volume" and study["n_slices"] == 30 and json.loads((tmp_path / "r.json").read_text())[
        "backend"] == "onnxruntime"
    assert all((s["call"] is None) == (not s["in_scope"]) for s in study["slices"])


def test_serve_and_listen_run_the_shipped_model_without_a_checkpoint(tmp_path):
    from fastapi.testclient import TestClient

    from kidneyct.serve import ServeSettings, create_app
    from kidneyct.serve.dicom_node import DicomNode, NodeSettings

    with TestClient(create_app(None, ServeSettings()), base_url="http://127.0.0.1") as client:
        card = client.get("/model").json()
    assert card["name"] == "default.pt" and card["weights_licence"] and card["evaluation"]["per_source"]
    node = DicomNode(None, NodeSettings(out=tmp_path / "node"))
    assert node.facts.checkpoint == "default.pt" and "Held-out" not in node.facts.validation
