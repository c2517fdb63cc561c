"""Options are checked when the command line is parsed: a run that cannot finish never starts, and the
error names the option."""

from __future__ import annotations

import argparse

import pytest

from kidneyct.cli import main
from kidneyct.cli_types import device, float_range, int_range, origin, output_file, output_folder


@pytest.mark.parametrize("argv, option", [
    (["predict", "IN", "--batch-size", "0"], "--batch-size"),
    (["predict", "IN", "--batch-size", "-3"], "--batch-size"),
    (["predict", "IN", "--top-k", "0"], "--top-k"),
    (["predict", "IN", "--threshold", "nan"], "--threshold"),
    (["predict", "IN", "--threshold", "1.5"], "--threshold"),
    (["predict", "IN", "--max-decoded-mb", "0"], "--max-decoded-mb"),
    (["predict", "IN", "--device", "gpu"], "--device"),
    (["predict", "IN", "--out", "results.txt"], "--out"),
    (["predict", "IN", "--out", "{file}/results.csv"], "--out"),
    (["predict", "IN", "--cam", "{file}"], "--cam"),
    (["serve", "--port", "70000"], "--port"),
    (["serve", "--port", "-1"], "--port"),
    (["serve", "--timeout", "0"], "--timeout"),
    (["serve", "--timeout", "inf"], "--timeout"),
    (["serve", "--max-upload-mb", "-1"], "--max-upload-mb"),
    (["serve", "--max-side", "8"], "--max-side"),
    (["serve", "--max-pending", "0"], "--max-pending"),
    (["serve", "--max-connections", "0"], "--max-connections"),
    (["serve", "--body-timeout", "nan"], "--body-timeout"),
    (["serve", "--allow-origin", "evil.example"], "--allow-origin"),
    (["serve", "--allow-origin", "http://a.example/path"], "--allow-origin"),
    (["explain", "IN", "--out", "{file}"], "--out"),
    (["explain", "IN", "--out", "o", "--batch-size", "0"], "--batch-size"),
    (["export", "--out", "model.txt"], "--out"),
    (["export", "--out", "m.onnx", "--opset", "3"], "--opset"),
    (["evaluate", "--bootstrap", "0"], "--bootstrap"),
    (["evaluate", "--device", "cuda:x"], "--device"),
])
def test_invalid_options_are_refused_at_parse_time(argv, option, tmp_path, capsys):
    checkpoint, file = tmp_path / "model.pt", tmp_path / "a-file"
    checkpoint.write_bytes(b"not read before the options pass"), file.write_text("x")
    argv = [a.replace("{file}", str(file)) for a in argv]
    with pytest.raises(SystemExit) as exited:
        main([argv[0], "--checkpoint", str(checkpoint), *argv[1:]])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and "Traceback" not in err, err


def test_a_missing_checkpoint_is_refused_before_anything_loads(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--checkpoint", str(tmp_path / "missing.pt"), "x.png"])
    assert "missing.pt: no such file" in capsys.readouterr().err


def test_types_accept_what_they_should():
    assert int_range(1, 10)("10") == 10 and float_range(0, 1)("0") == 0.0
    with pytest.raises(argparse.ArgumentTypeError):
        float_range(0, 1, low_open=True)("0")
    assert [device(d) for d in ("auto", "cpu", "cuda", "cuda:1", "mps")] == ["auto", "cpu", "cuda", "cuda:1", "mps"]
    assert origin("HTTP://LocalHost:3000/") == "http://localhost:3000"
    with pytest.raises(argparse.ArgumentTypeError, match="outside"):
        int_range(0, 65535)("65536")


def test_outputs_must_be_writable_where_they_would_go(tmp_path):
    assert output_file(".csv")(str(tmp_path / "new" / "deeper" / "r.csv"))  # folders are made later
    assert output_folder(str(tmp_path / "new-folder")) and output_folder(str(tmp_path))
    (tmp_path / "plain").write_text("x")
    with pytest.raises(argparse.ArgumentTypeError, match="is a file"):
        output_file(".csv")(str(tmp_path / "plain" / "r.csv"))
    with pytest.raises(argparse.ArgumentTypeError, match="not a folder"):
        output_folder(str(tmp_path / "plain"))
    with pytest.raises(argparse.ArgumentTypeError, match="is a folder"):
        output_file()(str(tmp_path))


@pytest.mark.parametrize("argv", [["train", "--data", "D", "--model", "seed-cnn", "--image-size", "64"],
                                  ["cv", "--data", "D", "--image-size", "32"], ["demo-train", "--image-size", "48"]])
def test_an_image_size_below_the_models_minimum_ends_the_parse(argv, tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--out", str(out)])
    assert exited.value.code == 2 and not out.exists()  # no half-made run folder
    assert "needs at least 94 px" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "cv", "compare-splits"])
@pytest.mark.parametrize("option, value", [("--epochs", "0"), ("--lr", "nan"), ("--batch-size", "-1"),
                                           ("--synthetic-lesions", "1.5"), ("--label-smoothing", "1"),
                                           ("--val-fraction", "0"), ("--device", "gpu0")])
def test_training_options_are_checked_when_parsed(command, option, value, capsys):
    from kidneyct.cli import main

    with pytest.raises(SystemExit) as stopped:
        main([command, "--data", "anywhere", option, value])
    assert stopped.value.code == 2
    assert option in capsys.readouterr().err
