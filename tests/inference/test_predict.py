import numpy as np
import pytest

import kidneyct
from kidneyct.synthetic.phantom import generate_dataset


def test_load_predict_on_png_array_and_volume(trained_run, phantom_png, tmp_path):
    predictor = kidneyct.load(trained_run.best_checkpoint)
    image = next((phantom_png / "Tumor").glob("*[0-9]).png"))
    probs = predictor.predict(image)
    assert set(probs) == {"Tumor", "Normal"} and sum(probs.values()) == pytest.approx(1, abs=1e-5)
    from PIL import Image

    array = np.asarray(Image.open(image))
    assert predictor.predict(array) == pytest.approx(probs, abs=1e-5)  # same preprocessing either way
    generate_dataset(tmp_path, n=6, seed=0, size=64, classes=["Tumor", "Normal"], fmt="nifti",
                     slices_per_series=(3, 3), progress=False)
    volume = next((tmp_path / "Tumor").glob("*[0-9].nii.gz"))
    per_slice = predictor.predict(volume)
    assert isinstance(per_slice, list) and len(per_slice) == 3


def test_checkpoint_needing_arbitrary_unpickling_is_refused(tmp_path):
    import pickle

    from kidneyct.errors import CheckpointError
    from kidneyct.models.checkpoint import read_checkpoint

    class Exploit:
        def __reduce__(self):
            return (print, ("this would run code",))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"format": "kidneyct-checkpoint", "x": Exploit()}))
    with pytest.raises(CheckpointError, match="refused"):
        read_checkpoint(path)


# ----------------------------------------------------------------------------------------------
# Batch prediction: input expansion, series, studies, writers


def _study_tree(root):
    """A folder with PNG slices (and a mask beside one), a DICOM series sub-folder, a NIfTI volume and junk."""
    from kidneyct.synthetic.phantom_study import write_study

    generate_dataset(root / "png", n=4, seed=0, size=64, classes=["Tumor", "Normal"], progress=False,
                     slices_per_series=(2, 2))
    series = write_study(root / "dicom", "dicom", seed=1, size=64, n_slices=6, lesion_slices=(2, 3))
    volume = write_study(root / "nifti", "nifti", seed=2, size=64, n_slices=5, lesion_slices=(1, 2))
    (root / "notes.txt").write_text("not an image")
    return series, volume


def test_folders_expand_to_images_series_and_volumes(tmp_path):
    from kidneyct.io import expand_inputs

    series, volume = _study_tree(tmp_path)
    items, skipped = expand_inputs([tmp_path, tmp_path / "missing.png"])
    kinds = {item.path: item.kind for item in items}
    assert kinds[series.path] == "series" and kinds[volume.path] == "volume"
    images = [p for p, kind in kinds.items() if kind == "image"]
    assert len(images) == 4 and not any(".mask." in p.name for p in images)
    assert len(items) == 6  # no mask file, no notes.txt, and the DICOM files only as their series
    assert skipped == [(str(tmp_path / "missing.png"), "file not found")]


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


def test_study_aggregation_is_the_top_k_mean_and_names_its_slices():
    from kidneyct.inference.study import aggregate_study

    probs = np.array([0.1, 0.2, 0.9, 0.8, 0.05, 0.7, 0.1])
    indices = [10, 11, 12, 13, 14, 15, 16]
    probability, called, driving, description = aggregate_study(probs, indices, 0.5, top_k=3)
    assert probability == pytest.approx((0.9 + 0.8 + 0.7) / 3) and called
    assert driving == [12, 13, 15] and "mean of the 3 highest" in description
    probability, called, driving, _ = aggregate_study(probs, indices, 0.85, top_k=3)
    assert not called  # 0.8 < 0.85: one confident slice alone does not make the study positive
    assert aggregate_study(np.array([0.3, 0.6]), [0, 1], 0.5, top_k=3)[2] == [0, 1]  # k capped by length


def test_results_are_written_as_csv_with_sidecars_and_as_json(tmp_path, trained_run):
    import csv
    import json

    from kidneyct.inference.batch import predict_inputs

    series, volume = _study_tree(tmp_path / "data")
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
