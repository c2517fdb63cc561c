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
