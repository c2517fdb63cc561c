import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kidneyct.cli import main

SRC = Path(__file__).resolve().parents[1] / "src"


def test_models_lists_the_registry(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("seed-cnn", "resnet50", "efficientnet-lite0"))


def test_missing_class_is_a_clean_error(tmp_path, capsys):
    (tmp_path / "Tumor").mkdir()
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert "normal" in capsys.readouterr().err


def test_train_skips_and_reports_corrupt_files(phantom_png, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(phantom_png, data)
    (data / "Tumor" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    (data / "Normal" / "empty.jpg").write_bytes(b"")
    code = main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--image-size", "96",
                 "--epochs", "1", "--no-progress", "--device", "cpu", "--evaluate", "--workers", "1"])
    assert code == 0
    captured = capsys.readouterr()
    assert "skipped 2 unreadable file(s)" in captured.out
    assert "broken.png" in captured.err and "empty.jpg" in captured.err
    metrics = json.loads((tmp_path / "run" / "report" / "metrics.json").read_text())
    skipped = {p.split("/")[-1] for p, _ in metrics["data"]["skipped"]}
    assert skipped == {"broken.png", "empty.jpg"}


def test_predict_command_prints_probabilities(trained_run, phantom_png, capsys):
    image = next((phantom_png / "Normal").glob("*.png"))
    assert main(["predict", "--checkpoint", str(trained_run.best_checkpoint), str(image), "--device", "cpu"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(line["probabilities"]) == {"Tumor", "Normal"}


def test_predict_reads_in_worker_processes_or_in_process_with_the_same_answers(trained_run, phantom_png, capsys,
                                                                                monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    monkeypatch.delenv("OMP_WAIT_POLICY")  # absent, and put back as it was after the test
    outputs = []
    for workers in ("0", "2"):
        assert main(["predict", "--checkpoint", str(trained_run.best_checkpoint), str(phantom_png / "Tumor"),
                     "--device", "cpu", "--no-progress", "--workers", workers]) == 0
        outputs.append([json.loads(line) for line in capsys.readouterr().out.strip().splitlines()])
    assert len(outputs[0]) == len(list((phantom_png / "Tumor").glob("*).png"))) and outputs[0] == outputs[1]
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"  # set for torch, which reads it when it loads
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    main(["predict", "--checkpoint", str(trained_run.best_checkpoint), str(phantom_png / "Tumor"), "--workers", "0"])
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"  # the user's own choice stays
def test_predict_writes_a_study_report(trained_run, tmp_path, capsys):
    import re

    from kidneyct.synthetic.phantom_volume import write_volume

    volume = write_volume(tmp_path / "v", "dicom", seed=3, size=96, lesion="Tumor", below_mm=40, above_mm=40)
    empty = write_volume(tmp_path / "v", "nifti", seed=4, size=96, below_mm=-70, above_mm=100)  # liver level only
    assert not any(empty.kidney)
    out = tmp_path / "report"
    assert main(["predict", "--checkpoint", str(trained_run.best_checkpoint), str(volume.path), str(empty.path),
                 "--device", "cpu", "--report", str(out), "--no-progress"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    studies = {line["input"]: line for line in lines if "kind" in line}
    assert studies[str(empty.path)]["tumor"] is None and studies[str(volume.path)]["tumor_probability"] is not None
    index = (out / "index.html").read_text()
    pages = sorted(out.glob("*.html"))
    assert len(pages) == 3 and "not a medical device" in index and index.count("<a href=") == 2
    page = next(p for p in pages if p.name.startswith(volume.path.name)).read_text()
    driving = studies[str(volume.path)]["driving_slices"]
    shown = {int(i) for i in re.findall(r"src='[^']*/slice-(\d{4})\.png'", page)}
    assert "Key images" in page and len(shown) == min(4, len(driving)) and shown <= set(driving)
    assert "not a medical device" in page and "How the model was validated" in page and "SYNTHETIC" in page
    assert (out / volume.path.name / "probabilities.png").is_file()
    empty_page = next(p for p in pages if p.name.startswith("volume-normal")).read_text()
    assert "No call" in empty_page and "no kidney found" in empty_page


def test_data_groups_and_audit_commands(trained_run, phantom_png, tmp_path, capsys):
    import csv

    from kidneyct.data.survey import audit_split

    assert main(["data", "groups", "--data", str(phantom_png), "--out", str(tmp_path / "new" / "g.csv"),
                 "--workers", "1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    truth = {row["path"]: row["series"] for row in csv.DictReader(open(phantom_png / "phantom.csv"))}
    inferred = {row["path"]: row["group"] for row in csv.DictReader(open(tmp_path / "new" / "g.csv"))}
    assert summary["groups"] == len(set(truth.values())) and set(inferred) == set(truth)
    assert main(["data", "audit", "--split", str(trained_run.out / "split.csv"), "--out", str(tmp_path / "a.json")]) == 0
    assert json.loads((tmp_path / "a.json").read_text())["near_duplicates"] == 0
    assert audit_split(trained_run.out / "split.csv")["near_duplicates"] == 0  # the same, from Python


def test_help_recipes_and_models_import_neither_torch_nor_matplotlib():
    code = """
import contextlib, io, json, sys
import kidneyct.cli as cli
cli.build_parser()
with contextlib.redirect_stdout(io.StringIO()):
    assert cli.main(["recipes"]) == 0 and cli.main(["models"]) == 0
    try:
        cli.main(["--help"])
    except SystemExit as stop:
        assert stop.code == 0
print(json.dumps(sorted(name for name in ("torch", "matplotlib") if name in sys.modules)))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[-1]) == []


def test_recipes_lists_every_recipe_and_marks_the_default(capsys):
    from kidneyct.config import DEFAULT_RECIPE, RECIPES, SOURCES_RECIPE

    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in RECIPES)
    assert f"{DEFAULT_RECIPE}  [the default of train, cv and compare-splits with --data]" in out
    assert f"{SOURCES_RECIPE}  [the default of train, cv and compare-splits with --sources]" in out


def test_an_unavailable_device_is_a_one_line_error(trained_run, phantom_png, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: --device cuda is available")
    image = next((phantom_png / "Normal").glob("*.png"))
    assert main(["predict", "--checkpoint", str(trained_run.best_checkpoint), str(image), "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["kidneyct: error: device 'cuda' requested but CUDA is not available; "
                                        "use --device cpu"]
