import json

from kidneyct.cli import main


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


def test_data_groups_and_audit_commands(trained_run, phantom_png, tmp_path, capsys):
    import csv

    assert main(["data", "groups", str(phantom_png), "--out", str(tmp_path / "new" / "g.csv"), "--workers", "1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    truth = {row["path"]: row["series"] for row in csv.DictReader(open(phantom_png / "phantom.csv"))}
    inferred = {row["path"]: row["group"] for row in csv.DictReader(open(tmp_path / "new" / "g.csv"))}
    assert summary["groups"] == len(set(truth.values())) and set(inferred) == set(truth)
    assert main(["data", "audit", "--split", str(trained_run.out / "split.csv"), "--out", str(tmp_path / "a.json")]) == 0
    assert json.loads((tmp_path / "a.json").read_text())["near_duplicates"] == 0
