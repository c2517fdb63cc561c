"""benchmarks/cv_tumor_size.py: KiTS23 tumors in thirds of their area, each ranked against all normals."""

import csv

import pytest


def _cv_folder(root, name, score_of):
    """A cv folder whose KiTS23 predictions score each slice by `score_of(origin, tumor_px)`, with a manifest."""
    kits = root / "kits23-slices"
    (kits / "Tumor").mkdir(parents=True, exist_ok=True)
    areas = {f"case_{i:05d}.png": (("Tumor", 100 * (i + 1)) if i < 9 else ("Normal", 0)) for i in range(15)}
    with open(kits / "manifest.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "class", "file", "kidney_px", "tumor_px"])
        for file, (origin, area) in areas.items():
            # the three largest tumors' slices show little kidney (a polar mass), the others a whole kidney
            writer.writerow([file[:-4], origin, f"{origin}/{file}", 100 if area >= 700 else 2000, area])
    folder = root / name
    folder.mkdir()
    with open(folder / "predictions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "origin", "source", "group", "repeat", "fold", "p_Tumor"])
        for file, (origin, area) in areas.items():
            writer.writerow([kits / origin / file, origin, "kits23", file, 0, 0, score_of(origin, area)])
        writer.writerow([root / "other.jpg", "Tumor", "kaggle", "s", 0, 0, 0.9])  # other sources are not read
    return folder


def test_each_third_of_the_tumors_is_ranked_against_every_normal(tmp_path, benchmark_script):
    module = benchmark_script("cv_tumor_size")
    # large tumors score above every normal, small ones below: the thirds tell them apart
    found_if_large = _cv_folder(tmp_path, "cv", lambda origin, area: 0.5 if origin == "Normal" else area / 1000)
    table = module.size_table(found_if_large, n_boot=50)
    assert [table[name]["tumor_px"] for name in module.THIRDS] == [[100, 300], [400, 600], [700, 900]]
    assert all(table[name]["tumors"] == 3 and table[name]["normals"] == 6 for name in module.THIRDS)
    assert table["small"]["roc_auc"]["value"] == 0.0 and table["large"]["roc_auc"]["value"] == 1.0

    constant = _cv_folder(tmp_path, "cv-constant", lambda origin, area: 0.5)
    paired = module.size_table(found_if_large, compare=constant, n_boot=50)["large"]["paired"]
    assert paired["delta"] == pytest.approx(0.5)


def test_tumors_on_slices_showing_little_kidney_are_ranked_apart(tmp_path, benchmark_script):
    module = benchmark_script("cv_tumor_size")
    found_if_large = _cv_folder(tmp_path, "cv", lambda origin, area: 0.5 if origin == "Normal" else area / 1000)
    table = module.size_table(found_if_large, n_boot=50)
    assert table["mostly tumor"]["tumors"] == 3 and table["mostly kidney"]["tumors"] == 6
    assert table["mostly tumor"]["normals"] == table["mostly kidney"]["normals"] == 6
    assert table["mostly tumor"]["tumor_px"] == [700, 900]
    assert table["mostly tumor"]["roc_auc"]["value"] == 1.0
