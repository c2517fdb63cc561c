"""The DICOM Segmentation of kidney and tumor maps: valid, on the source grid, readable by pydicom and highdicom."""

import shutil
import subprocess

import numpy as np
import pydicom
import pytest

from kidneyct.inference.dicom_seg import KIDNEY, TUMOR, build_segmentation, label_map
from kidneyct.synthetic.phantom_study import write_study


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    study = write_study(tmp_path_factory.mktemp("seg"), "dicom", seed=4, size=64, n_slices=4, lesion_slices=(1, 2))
    return [pydicom.dcmread(p) for p in sorted(study.path.glob("*.dcm"))]


def test_segmentation_reads_back_with_pydicom_and_highdicom(series, tmp_path):
    import highdicom as hd

    kidney = np.zeros((len(series), 64, 64), np.float32)
    tumor = np.zeros_like(kidney)
    kidney[1:3, 20:40, 10:30] = 0.9
    tumor[2, 25:30, 15:20] = 0.8
    labels = label_map(kidney, tumor)
    path = tmp_path / "seg.dcm"
    build_segmentation(series, labels, "lite0-unet").save_as(path)

    seg = hd.seg.segread(path)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["Kidney", "Kidney tumor"]
    assert seg.StudyInstanceUID == series[0].StudyInstanceUID
    source_uids = [s.SOPInstanceUID for s in series]
    back = seg.get_pixels_by_source_instance(source_uids, combine_segments=True, skip_overlap_checks=True)
    assert np.array_equal(back, labels)  # every slice, pixel for pixel, on the source grid
    assert (back == TUMOR).sum() == 25 and (back == KIDNEY).any()
    assert "not a diagnosis" in pydicom.dcmread(path).SeriesDescription

    if shutil.which("dciodvfy"):
        report = subprocess.run(["dciodvfy", "-new", str(path)], capture_output=True, text=True)
        assert "Error" not in report.stderr + report.stdout, report.stderr


def test_empty_maps_still_make_a_segmentation(series):
    labels = np.zeros((len(series), 64, 64), np.uint8)
    assert build_segmentation(series, labels, "lite0-unet").NumberOfFrames >= 1
