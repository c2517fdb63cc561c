import numpy as np
import pytest
from PIL import Image

from kidneyct.data.catalogue import build_catalogue, parse_classes
from kidneyct.errors import DatasetError


def _folder(root, layout):
    for relative, count in layout.items():
        folder = root / relative
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.fromarray(np.full((16, 16), i * 10, np.uint8)).save(folder / f"img{i}.png")


def test_classes_matched_case_insensitively_at_any_depth(tmp_path):
    _folder(tmp_path, {"outer/CT-KIDNEY/Tumor": 3, "outer/CT-KIDNEY/normal": 2, "outer/CT-KIDNEY/Cyst": 1})
    catalogue = build_catalogue(tmp_path, "TUMOR,Normal")
    assert catalogue.classes == ["Tumor", "normal"]
    assert catalogue.counts() == {"Tumor": 3, "normal": 2}


def test_all_means_the_four_kaggle_classes(tmp_path):
    _folder(tmp_path, {"Normal": 1, "Cyst": 1, "Tumor": 1, "Stone": 1})
    assert build_catalogue(tmp_path, "all").classes == ["Normal", "Cyst", "Tumor", "Stone"]
    assert parse_classes(None) == ["tumor", "normal"]


def test_missing_class_names_what_was_found(tmp_path):
    _folder(tmp_path, {"Tumor": 1, "Normal": 1})
    with pytest.raises(DatasetError, match="stone.*not found.*Normal, Tumor"):
        build_catalogue(tmp_path, "tumor,stone")


def test_empty_folder_and_empty_class_are_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="is empty"):
        build_catalogue(tmp_path, None)
    (tmp_path / "Tumor").mkdir()
    _folder(tmp_path, {"Normal": 1})
    with pytest.raises(DatasetError, match="holds no JPG"):
        build_catalogue(tmp_path, None)


def test_ambiguous_class_folders_are_refused(tmp_path):
    _folder(tmp_path, {"a/Tumor": 1, "a/Normal": 1, "b/Tumor": 1, "b/Normal": 1})
    with pytest.raises(DatasetError, match="matches 2 folders"):
        build_catalogue(tmp_path, None)


def test_masks_and_hidden_files_are_not_samples(tmp_path):
    _folder(tmp_path, {"Tumor": 2, "Normal": 1})
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "Tumor" / "img0.mask.png")
    (tmp_path / "Tumor" / ".DS_Store").write_bytes(b"junk")
    (tmp_path / "Tumor" / "notes.txt").write_text("not an image")
    assert build_catalogue(tmp_path, None).counts() == {"Tumor": 2, "Normal": 1}


def test_phantom_volumes_count_once_per_slice(tmp_path):
    from kidneyct.synthetic.phantom import generate_dataset

    generate_dataset(tmp_path, n=8, seed=0, size=64, classes=["Tumor", "Normal"], fmt="nifti",
                     slices_per_series=(4, 4), progress=False)
    catalogue = build_catalogue(tmp_path, None)
    assert catalogue.counts() == {"Tumor": 4, "Normal": 4}
    assert len({s.group for s in catalogue.samples}) == 2  # one group per volume
