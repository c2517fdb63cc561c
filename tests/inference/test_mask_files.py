"""Label files of a prediction land on the input's own grid: a volume's NIfTI overlays the scan voxel for voxel."""

import nibabel as nib
import numpy as np
from PIL import Image

from kidneyct.inference.mask_files import write_nifti_labels, write_png_labels
from kidneyct.io import read_slices
from kidneyct.synthetic.phantom_study import write_study


def test_nifti_labels_match_the_volume_they_were_predicted_on(tmp_path):
    """Labels derived from a volume's own lesion mask, read the way predict reads the volume, are written back
    exactly where that mask lies: same shape, same affine, same voxels."""
    study = write_study(tmp_path, "nifti", seed=2, size=48, n_slices=5, lesion_slices=(1, 3))
    truth_path = study.path.with_name(study.path.name.replace(".nii.gz", ".mask.nii.gz"))
    labels = np.stack([(s.pixels > 0).astype(np.uint8) * 2 for s in read_slices(truth_path)])
    out = write_nifti_labels(tmp_path / "labels.nii.gz", labels, study.path)

    written, truth, scan = nib.load(out), nib.load(truth_path), nib.load(study.path)
    assert np.allclose(written.affine, nib.as_closest_canonical(scan).affine)
    expected = nib.as_closest_canonical(truth).get_fdata() > 0
    assert np.array_equal(np.asarray(written.dataobj) == 2, expected) and expected.any()


def test_png_labels_keep_the_mask_convention(tmp_path):
    labels = np.zeros((20, 30), np.uint8)
    labels[5:10, 5:15], labels[6:8, 6:8] = 1, 2
    path = write_png_labels(tmp_path / "slice.png", labels)
    assert np.array_equal(np.asarray(Image.open(path)), labels)
