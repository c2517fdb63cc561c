"""The one prediction path: series order, studies, thresholds, written results and inputs that fail."""

import csv
import json

import numpy as np

import kidneyct
from kidneyct.checkpoint import OperatingPoint
from kidneyct.inference.writers import write_results


def _slices(results):
    return [s for r in results for s in r.slices]


def test_series_is_read_in_anatomical_order_and_loses_only_its_bad_file(tmp_path, trained_run):
    import pydicom

    from kidneyct.synthetic.dicom_writer import write_ct_series

    rng = np.random.default_rng(0)
    folder = tmp_path / "series"
    images = [np.full((64, 64), -1000.0) + rng.normal(0, 5, (64, 64)) for _ in range(5)]
    write_ct_series(folder, images, shuffle_files=True)  # file names do not follow the anatomy
    broken = sorted(folder.glob("*.dcm"))[2]
    broken.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00garbage")
    study = kidneyct.load(trained_run.best_checkpoint).predict(folder)
    heights = [float(pydicom.dcmread(s.source).ImagePositionPatient[2]) for s in study.slices]
    assert heights == sorted(heights) and [s.source for s in study.slices] != sorted(s.source for s in study.slices)
    assert study.kind == "series" and study.n_slices == 4 and [p for p, _ in study.skipped] == [str(broken)]
    indices = [s.index for s in study.slices]
    assert indices == sorted(indices) and len(set(indices)) == 4 and max(indices) <= 4
    # Air only: no kidney anywhere, so no slice is in scope and neither the slices nor the study get a call.
    assert not study.in_scope_slices and study.tumor is None and all(s.call is None for s in study.slices)


def test_results_are_written_as_csv_with_sidecars_and_as_json(study_tree, tmp_path, trained_run):
    _, series, volume = study_tree
    (tmp_path / "data" / "png" / "Tumor" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    predictor = kidneyct.load(trained_run.best_checkpoint).with_options(batch_size=4)
    results = list(predictor.run([tmp_path / "data"]))
    written = write_results(results, tmp_path / "out" / "results.csv", predictor.summary())
    assert [p.name for p in written] == ["results.csv", "results.studies.csv", "results.skipped.csv"]
    rows = list(csv.DictReader(open(written[0])))
    assert len(rows) == 4 + 6 + 5 and {"p_Tumor", "p_Normal", "call", "slice_index", "in_scope"} <= set(rows[0])
    assert all((r["call"] == "") == (r["in_scope"] == "0") for r in rows)  # no call out of scope
    studies = {r["input"]: r for r in csv.DictReader(open(written[1]))}
    assert int(studies[str(series.path)]["n_slices"]) == 6 and int(studies[str(volume.path)]["n_slices"]) == 5
    assert "broken.png" in open(written[2]).read()
    document = json.loads(write_results(results, tmp_path / "out" / "results.json", predictor.summary())[0].read_text())
    assert [r["kind"] for r in document["studies"]].count("unread") == 1 and len(document["studies"]) == 4 + 2 + 1
    assert document == {**predictor.summary().to_dict(), "studies": [r.to_dict() for r in results]}
    assert "not a medical device" in document["disclaimer"]


def test_predict_applies_the_checkpoint_threshold(trained_run, phantom_png):
    predictor = kidneyct.load(trained_run.best_checkpoint)
    inputs = [phantom_png / "Tumor", phantom_png / "Normal"]
    plain = _slices(predictor.run(inputs))
    tumor = np.array([s.probabilities["Tumor"] for s in plain])
    cut = float(np.median(tumor))
    predictor.checkpoint.operating_point = OperatingPoint(cut, "as if the checkpoint had recorded it")
    called = _slices(predictor.run(inputs))
    assert predictor.summary().threshold == cut
    assert [s.call == "Tumor" for s in called if s.in_scope] == list(tumor[[s.in_scope for s in called]] >= cut)
    assert all(s.call == "Tumor" for s in _slices(predictor.with_options(threshold=0.0).run(inputs)) if s.in_scope)


def test_one_failing_input_is_skipped_with_its_reason_and_the_rest_is_written(trained_run, tmp_path, monkeypatch):
    from kidneyct.inference import pipeline
    from kidneyct.synthetic.bad_files import gradient, image_bytes

    names = ["a.png", "odd.png", "c.png", b"\xff\xfename.png".decode("utf-8", "surrogateescape")]
    for name in names:
        (tmp_path / name).write_bytes(image_bytes(gradient()))
    read_item = pipeline.read_item

    def failing(item):  # an error no reader anticipated, as a NIfTI with zero slices once raised
        if item.path.name == "odd.png":
            raise IndexError("tuple index out of range")
        return read_item(item)

    monkeypatch.setattr(pipeline, "read_item", failing)  # 4 inputs: read in worker processes, forked with it
    predictor = kidneyct.load(trained_run.best_checkpoint)
    results = list(predictor.run([tmp_path / n for n in names]))
    assert [r.kind for r in results] == ["image", "unread", "image", "image"]
    assert results[1].skipped == [(str(tmp_path / "odd.png"), "failed: IndexError: tuple index out of range")]
    written = write_results(results, tmp_path / "out" / "results.csv", predictor.summary())
    rows = list(csv.DictReader(open(written[0], encoding="utf-8")))
    assert len(rows) == 3 and rows[-1]["source"].endswith("\\udcff\\udcfename.png")  # escaped, still UTF-8
    assert not list((tmp_path / "out").glob(".*.tmp"))  # written through atomic temporaries, none left
    text = write_results(results, tmp_path / "out" / "results.json", predictor.summary())[0].read_text("ascii")
    assert "\\udcff\\udcfename.png" in text


def test_a_failing_forward_pass_skips_only_its_input(trained_run, tmp_path):
    from kidneyct.synthetic.bad_files import gradient, image_bytes

    predictor = kidneyct.load(trained_run.best_checkpoint)
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / name).write_bytes(image_bytes(gradient() if name != "b.png" else 255 - gradient()))
    original = predictor.backend.logits

    def picky(images, batch_size=256):  # fails on any batch holding b.png's (bright corner) image
        if (images[:, 0, 0] > 128).any():
            raise RuntimeError("a kernel failed")
        return original(images, batch_size)

    predictor.backend.logits = picky
    results = list(predictor.run([tmp_path / n for n in ("a.png", "b.png", "c.png")]))
    assert [s.source for s in _slices(results)] == [str(tmp_path / "a.png"), str(tmp_path / "c.png")]
    assert results[1].kind == "unread"
    assert results[1].skipped == [(str(tmp_path / "b.png"), "failed: RuntimeError: a kernel failed")]


def test_a_series_without_modality_is_predicted_with_the_warning(tmp_path, trained_run):
    import pydicom

    from kidneyct.io.dicom import NO_MODALITY
    from kidneyct.synthetic.dicom_writer import write_ct_series

    for path in write_ct_series(tmp_path / "series", [np.full((64, 64), 40.0)] * 3):
        ds = pydicom.dcmread(path)
        del ds.Modality  # nothing says it is CT
        ds.save_as(path)
    predictor = kidneyct.load(trained_run.best_checkpoint).with_options(workers=0)
    (study,) = predictor.run([tmp_path / "series"])
    assert study.kind == "series" and len(study.slices) == 3
    assert NO_MODALITY in study.warnings and all(NO_MODALITY in s.warnings for s in study.slices)
