import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from kidneyct.cli import main
from kidneyct.evaluation.localisation import peak
from kidneyct.inference.explain import GradCamExplainer
from kidneyct.models import ModelConfig, create_model, list_models
from kidneyct.preprocess import Preprocessing
from kidneyct.synthetic.phantom import generate_dataset


class BrightnessModel(nn.Module):
    """Logit 0 = mean brightness through an identity convolution: Grad-CAM must light up the bright spot."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
        nn.init.zeros_(self.conv.weight)
        self.conv.weight.data[0, 0, 1, 1] = 1.0

    def forward(self, x):
        score = self.conv(x).mean((2, 3))
        return torch.cat([score, -score], 1)


def test_heatmap_peaks_where_the_evidence_is_and_is_scaled_to_unit_range():
    images = np.zeros((2, 32, 32), np.uint8)
    images[0, 20:24, 5:9] = 255
    images[1, 3:6, 25:30] = 200
    heatmaps = GradCamExplainer(BrightnessModel(), Preprocessing(32), "conv").heatmaps(images, [0, 0])
    assert heatmaps.shape == (2, 32, 32)
    assert 20 <= peak(heatmaps[0])[0] < 24 and 5 <= peak(heatmaps[0])[1] < 9
    assert 3 <= peak(heatmaps[1])[0] < 6 and 25 <= peak(heatmaps[1])[1] < 30
    assert heatmaps.min() == 0.0 and heatmaps.max() == pytest.approx(1.0)
    # Class 1 (its logit falls with brightness) has no positive evidence anywhere: an all-zero map.
    assert not GradCamExplainer(BrightnessModel(), Preprocessing(32), "conv").heatmaps(images, [1, 1]).any()


@pytest.mark.parametrize("spec", list_models(), ids=lambda spec: spec.name)
def test_every_registered_model_has_a_working_default_cam_layer(spec):
    if spec.maps:  # its heatmaps are its own tumor map (test_segmenting.py), Grad-CAM only on a layer given
        assert not spec.cam_layer
        return
    torch.manual_seed(0)
    model = create_model(ModelConfig(spec.name, 2, 96, pretrained="none")).eval()
    prep = Preprocessing(96, mean=spec.mean, std=spec.std)
    images = np.random.default_rng(0).integers(0, 256, (3, 96, 96), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # MONAI only warns when a hook never fires
        heatmaps = GradCamExplainer(model, prep, spec.cam_layer).heatmaps(images, [0, 1, 0])
    assert heatmaps.shape == (3, 96, 96) and np.isfinite(heatmaps).all()
    assert heatmaps.min() >= 0 and heatmaps.max() <= 1
    assert all(p.grad is None for p in model.parameters())  # the explainer works on its own copy


def test_flip_and_shift_average_puts_every_map_back_in_place():
    """For a model whose evidence is the image itself, every mirrored or shifted map moved back is the
    plain map: the augmented heatmap equals it away from the borders. Misaligned maps would smear it."""
    rng = np.random.default_rng(0)
    images = np.zeros((3, 48, 48), np.uint8)
    images[:, 8:40, 8:40] = rng.integers(0, 200, (3, 32, 32), dtype=np.uint8)  # asymmetric content
    images[:, 30, 12] = 255  # one maximum (ties would make the peak arbitrary)
    plain = GradCamExplainer(BrightnessModel(), Preprocessing(48), "conv", flip=False, shift=0)
    augmented = GradCamExplainer(BrightnessModel(), Preprocessing(48), "conv")
    assert augmented.flip and augmented.shift_px == 2  # defaults: 5% of the side
    expected, found = plain.heatmaps(images, [0, 0, 0]), augmented.heatmaps(images, [0, 0, 0])
    np.testing.assert_allclose(found[:, 4:-4, 4:-4], expected[:, 4:-4, 4:-4], atol=1e-5)
    assert [peak(h) for h in found] == [peak(h) for h in expected]


def test_grid_is_measured_for_every_efficientnet_cam_layer():
    """The receptive-field grid must survive MONAI's hooks (it once came back None for bn2, which fell
    back to a plain resize and misplaced every peak by up to half a cell)."""
    model = create_model(ModelConfig("efficientnet-lite0", 2, 96, pretrained="none")).eval()
    prep = Preprocessing(96)
    for layer in ("backbone.blocks.5", "backbone.conv_head", "backbone.bn2"):
        assert GradCamExplainer(model, prep, layer, flip=False, shift=0).grid == (0.0, 32.0), layer


def test_unknown_layer_is_a_clear_error():
    with pytest.raises(ValueError, match="no layer 'nope'"):
        GradCamExplainer(BrightnessModel(), Preprocessing(32), "nope")


def test_explain_command_writes_one_overlay_per_slice(trained_run, phantom_png, tmp_path, capsys):
    image = next((phantom_png / "Tumor").glob("*[0-9]).png"))
    generate_dataset(tmp_path / "vol", n=3, seed=0, size=64, classes=["Tumor"], fmt="nifti",
                     slices_per_series=(3, 3), progress=False)
    volume = next((tmp_path / "vol" / "Tumor").glob("*[0-9].nii.gz"))
    out = tmp_path / "cams"
    assert main(["explain", "--checkpoint", str(trained_run.best_checkpoint), str(image), str(volume),
                 "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    written = sorted(p.name for p in out.glob("*.png"))
    stem = volume.name.split(".")[0]
    assert written == sorted([f"{image.name.split('.')[0]}.cam.png"] +
                             [f"{stem}.slice-{i:04d}.cam.png" for i in range(3)])
    overlay = np.asarray(Image.open(out / written[0]).convert("RGB"))
    assert overlay.shape == (256 + 40, 2 * 256, 3)
    left, right = overlay[40:, :256].astype(int), overlay[40:, 256:].astype(int)
    assert np.abs(left - right).mean() > 5  # the right half carries the heatmap colours
    assert np.abs(left[..., 0] - left[..., 2]).max() <= 1  # the left half is the grey slice
    printed = capsys.readouterr().out
    assert all(name in printed for name in written)
    assert "Tumor" in printed or "Normal" in printed or "no call" in printed


def test_predict_cam_option_links_each_slice_to_its_overlay(trained_run, phantom_png, tmp_path):
    import csv

    images = sorted((phantom_png / "Normal").glob("*[0-9]).png"))[:3]
    out = tmp_path / "results.csv"
    assert main(["predict", "--checkpoint", str(trained_run.best_checkpoint), *map(str, images), "--out", str(out),
                 "--cam", str(tmp_path / "cams"), "--device", "cpu", "--no-progress"]) == 0
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 3
    for row in rows:
        assert row["heatmap"].endswith(".cam.png") and Image.open(row["heatmap"]).size == (512, 296)
