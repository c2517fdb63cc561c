"""Batch prediction: series, studies, thresholds and the written results."""

import numpy as np

import kidneyct


def test_series_is_read_in_anatomical_order_and_loses_only_its_bad_file(tmp_path, trained_run):
    from kidneyct.inference.batch import predict_inputs
    from kidneyct.synthetic.dicom_writer import write_ct_series

    rng = np.random.default_rng(0)
    folder = tmp_path / "series"
    images = [np.full((64, 64), -1000.0) + rng.normal(0, 5, (64, 64)) for _ in range(5)]
    write_ct_series(folder, images, shuffle_files=True)  # file names do not follow the anatomy
    broken = sorted(folder.glob("*.dcm"))[2]
    broken.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00garbage")
    result = predict_inputs(kidneyct.load(trained_run.best_checkpoint), [folder], progress=False)
    import pydicom

    heights = [float(pydicom.dcmread(s.source).ImagePositionPatient[2]) for s in result.slices]
    assert heights == sorted(heights) and [s.source for s in result.slices] != sorted(s.source for s in result.slices)
    assert len(result.slices) == 4 and len(result.studies) == 1 and result.studies[0].n_slices == 4
    assert [p for p, _ in result.skipped] == [str(broken)]
    indices = [s.slice_index for s in result.slices]
    assert indices == sorted(indices) and len(set(indices)) == 4 and max(indices) <= 4


def test_results_are_written_as_csv_with_sidecars_and_as_json(study_tree, tmp_path, trained_run):
    import csv
    import json

    from kidneyct.inference.batch import predict_inputs

    _, series, volume = study_tree
    (tmp_path / "data" / "png" / "Tumor" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    result = predict_inputs(kidneyct.load(trained_run.best_checkpoint), [tmp_path / "data"], batch_size=4,
                            progress=False)
    written = result.write(tmp_path / "out" / "results.csv")
    assert [p.name for p in written] == ["results.csv", "results.studies.csv", "results.skipped.csv"]
    rows = list(csv.DictReader(open(written[0])))
    assert len(rows) == 4 + 6 + 5 and {"p_Tumor", "p_Normal", "predicted", "slice_index"} <= set(rows[0])
    studies = {r["input"]: r for r in csv.DictReader(open(written[1]))}
    assert int(studies[str(series.path)]["n_slices"]) == 6 and int(studies[str(volume.path)]["n_slices"]) == 5
    assert len(studies[str(series.path)]["driving_slices"].split()) == 3
    assert "broken.png" in open(written[2]).read()
    payload = json.loads(result.write(tmp_path / "out" / "results.json")[0].read_text())
    assert len(payload["slices"]) == 15 and len(payload["studies"]) == 2 and len(payload["skipped"]) == 1
    assert "not a medical device" in payload["disclaimer"]


def test_predict_applies_the_checkpoint_threshold(trained_run, phantom_png):
    from kidneyct.inference.batch import predict_inputs

    predictor = kidneyct.load(trained_run.best_checkpoint)
    inputs = [phantom_png / "Tumor", phantom_png / "Normal"]
    plain = predict_inputs(predictor, inputs, progress=False)
    tumor = np.array([s.probabilities["Tumor"] for s in plain.slices])
    cut = float(np.median(tumor))
    predictor.loaded.threshold = cut  # as if the checkpoint had recorded it
    result = predict_inputs(predictor, inputs, progress=False)
    assert result.threshold == cut
    assert [s.predicted == "Tumor" for s in result.slices] == list(tumor >= cut)
    overridden = predict_inputs(predictor, inputs, threshold=0.0, progress=False)
    assert all(s.predicted == "Tumor" for s in overridden.slices)


def test_one_failing_input_is_skipped_with_its_reason_and_the_rest_is_written(trained_run, tmp_path, monkeypatch):
    import csv

    from kidneyct.inference import batch, pipeline
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
    result = batch.predict_inputs(predictor, [tmp_path / n for n in names], progress=False)
    assert result.skipped == [(str(tmp_path / "odd.png"), "failed: IndexError: tuple index out of range")]
    written = result.write(tmp_path / "out" / "results.csv")
    rows = list(csv.DictReader(open(written[0], encoding="utf-8")))
    assert len(rows) == 3 and rows[-1]["source"].endswith("\\udcff\\udcfename.png")  # escaped, still UTF-8
    assert not list((tmp_path / "out").glob(".*.tmp"))  # written through atomic temporaries, none left
    payload = result.write(tmp_path / "out" / "results.json")[0].read_text(encoding="ascii")
    assert "\\udcff\\udcfename.png" in payload


def test_a_failing_forward_pass_skips_only_its_input(trained_run, tmp_path):
    from kidneyct.inference.batch import predict_inputs
    from kidneyct.synthetic.bad_files import gradient, image_bytes

    predictor = kidneyct.load(trained_run.best_checkpoint)
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / name).write_bytes(image_bytes(gradient() if name != "b.png" else 255 - gradient()))
    original = predictor.logits_uint8

    def picky(images, batch_size=256):  # fails on any batch holding b.png's (bright corner) image
        if (images[:, 0, 0] > 128).any():
            raise RuntimeError("a kernel failed")
        return original(images, batch_size)

    predictor.logits_uint8 = picky
    result = predict_inputs(predictor, [tmp_path / n for n in ("a.png", "b.png", "c.png")], progress=False)
    assert [s.source for s in result.slices] == [str(tmp_path / "a.png"), str(tmp_path / "c.png")]
    assert result.skipped == [(str(tmp_path / "b.png"), "failed: RuntimeError: a kernel failed")]


def test_a_series_without_modality_is_predicted_with_the_warning(tmp_path, trained_run):
    import pydicom

    from kidneyct.inference.batch import predict_inputs
    from kidneyct.io.dicom import NO_MODALITY
    from kidneyct.synthetic.dicom_writer import write_ct_series

    for path in write_ct_series(tmp_path / "series", [np.full((64, 64), 40.0)] * 3):
        ds = pydicom.dcmread(path)
        del ds.Modality  # nothing says it is CT
        ds.save_as(path)
    result = predict_inputs(kidneyct.load(trained_run.best_checkpoint), [tmp_path / "series"], progress=False,
                            workers=0)
    (study,) = result.studies
    assert NO_MODALITY in study.warnings and len(result.slices) == 3
