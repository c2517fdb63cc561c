import json

import numpy as np
import pytest

from kidneyct.evaluation.localisation import grid_body_mask, mass_inside, peak, pointing_hits
from kidneyct.preprocess import window_to_uint8
from kidneyct.synthetic.phantom import render_slice, sample_patient


def test_pointing_counts_peaks_inside_or_near_the_mask():
    mask = np.zeros((4, 20, 20), bool)
    mask[:, 5:9, 5:9] = True
    heatmaps = np.zeros((4, 20, 20))
    heatmaps[0, 6, 7] = 1.0  # inside
    heatmaps[1, 10, 7] = 1.0  # 2 px below the mask
    heatmaps[2, 18, 18] = 1.0  # far away
    # heatmaps[3] stays all zero: no peak, no hit
    assert pointing_hits(heatmaps, mask, 0).tolist() == [True, False, False, False]
    assert pointing_hits(heatmaps, mask, 3).tolist() == [True, True, False, False]
    assert peak(heatmaps[3]) is None and peak(heatmaps[1]) == (10, 7)


def test_mass_inside_is_the_share_of_the_heatmap_in_the_region():
    heatmaps = np.zeros((2, 10, 10))
    heatmaps[0, :5] = 1.0
    heatmaps[0, 5:] = 3.0
    region = np.zeros((2, 10, 10), bool)
    region[:, 5:] = True
    shares = mass_inside(heatmaps, region)
    assert shares[0] == pytest.approx(0.75) and np.isnan(shares[1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grid_body_mask_covers_the_phantom_body_and_leaves_out_the_table(seed):
    rng = np.random.default_rng(seed)
    patient = sample_patient(rng, 128)
    patient.table.update(present=True, y=patient.body.cy + patient.body.b + 6, rise=4.0, thickness=2.0)
    hu, _ = render_slice(patient, 0.0)
    yy, xx = np.mgrid[0:128, 0:128].astype(np.float32)
    body = patient.body.r2(xx, yy) <= 1.0
    found = grid_body_mask(window_to_uint8(hu))
    assert (found & body).sum() / (found | body).sum() > 0.9
    table = (hu > 100) & ~body & (yy > patient.body.cy + patient.body.b)
    assert table.any() and not (found & table).any()


def test_grid_body_mask_on_real_slices(real_data):
    from kidneyct.io import read_raster
    from kidneyct.preprocess import Preprocessing

    files = sorted(real_data.rglob("*.jpg"))
    prep = Preprocessing(128)
    for path in files[:: max(1, len(files) // 20)]:  # axial and some coronal slices
        image = prep.to_uint8(read_raster(path))
        mask = grid_body_mask(image)
        assert 0.1 < mask.mean() < 0.85, path
        assert image[~mask].mean() < 20 < image[mask].mean(), path  # outside: air and the thin table


def test_localisation_benchmark_runs_on_a_small_phantom_set(tmp_path, capsys, benchmark_script):
    import csv

    report = benchmark_script("localisation").main([
        "--out", str(tmp_path), "--n", "60", "--phantom-size", "96", "--model", "seed-cnn", "--image-size", "96",
        "--epochs", "2", "--no-finetune", "--slices-per-series", "1", "2", "--no-ablation"])
    assert json.loads(capsys.readouterr().out) == json.loads((tmp_path / "localisation.json").read_text())
    phantoms = report["phantoms"]
    assert phantoms["cam_layer"] == "features.12" and phantoms["cam_grid"] == {"offset_px": 38.5, "stride_px": 16.0}
    assert phantoms["cam_average"] == {"flip": True, "shift_px": 5}
    rows = list(csv.DictReader(open(tmp_path / "phantom-run" / "split.csv")))
    for split in ("val", "test"):
        result = phantoms[split]
        assert result["tumor_slices"] == sum(r["split"] == split and r["label"] == "Tumor" for r in rows) > 0
        assert 0 <= result["correctly_classified"] <= result["tumor_slices"]
        for key in ("peak_inside_mask", "peak_within_tolerance", "mass_inside_body"):
            assert result[key] is None if result["correctly_classified"] == 0 else 0 <= result[key] <= 1
        if result["correctly_classified"]:
            assert result["peak_inside_mask"] <= result["peak_within_tolerance"]

