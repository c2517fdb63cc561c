"""A segmenting model trains end to end through `train` on a masked source and stores how it looks."""

from dataclasses import replace

import numpy as np
import pytest

from kidneyct.checkpoint import read_checkpoint
from kidneyct.config import recipe_config
from kidneyct.training.train import train


@pytest.fixture(scope="module")
def masked_phantoms(tmp_path_factory):
    from kidneyct.synthetic.phantom import generate_dataset

    root = tmp_path_factory.mktemp("masked")
    generate_dataset(root, n=32, seed=2, size=128, classes=["Tumor", "Normal"], slices_per_series=(1, 1),
                     progress=False, masks=True)
    return root


def test_the_segmenting_recipe_trains_and_records_its_looks(masked_phantoms, tmp_path):
    config = recipe_config("lite0-unet-zoom", str(masked_phantoms), str(tmp_path / "run"), image_size=64, epochs=2,
                           batch_size=8, classes="tumor,normal", device="cpu", progress=False, workers=1)
    result = train(config)
    stored = read_checkpoint(result.best_checkpoint)
    assert stored.outputs.maps == ("kidney", "tumor") and stored.outputs.kidney_finder == "kidney map"
    assert stored.outputs.segmentation.work_size == 64 and stored.preprocessing.image_size == 128  # the body view
    assert stored.preprocessing.body_crop and not stored.preprocessing.kidney_crop
    assert stored.study.features is None  # its kidney map is its scope gate
    assert stored.progress.epoch == 2 and np.isfinite(stored.progress.history[-1].train_loss)
    assert stored.sources[0].masked > 0
    assert np.isfinite(stored.calibration.temperature)

    from kidneyct.experiments.evaluate import evaluate

    pooled = evaluate(result.best_checkpoint, out=tmp_path / "report", device="cpu", progress=False,
                      n_boot=20).per_source["rows"]["pooled"]
    assert pooled["kidney_dice_slices"] > 0 and 0.0 <= pooled["kidney_dice"] <= 1.0  # its maps are scored


def test_segmenting_models_refuse_what_does_not_apply(masked_phantoms, tmp_path):
    config = recipe_config("lite0-unet-zoom", str(masked_phantoms), str(tmp_path / "run"), kidney_crop=True,
                           acquisition="mild", device="cpu", progress=False)
    with pytest.raises(ValueError, match="--kidney-crop, --acquisition do not apply"):
        train(config)


def test_synthetic_lesions_of_a_segmenting_model_are_tumors_in_its_masked_crops(masked_phantoms, tmp_path):
    from kidneyct.training.settings import segmenter_settings

    config = recipe_config("lite0-unet-zoom", str(masked_phantoms), str(tmp_path / "run"), synthetic_lesions=0.3)
    assert segmenter_settings(config).augmentation.synthetic_tumors == 0.3
    assert segmenter_settings(replace(config, augment=False)).augmentation is None
    changed = segmenter_settings(replace(config, replacing_tumors=0.25, enhancing_tumors=0.3,
                                         pasted_tumors=0.5, pasted_inside=True)).augmentation
    assert (changed.replacing_tumors, changed.enhancing_tumors, changed.pasted_tumors) == (0.25, 0.3, 0.5)
    assert changed.pasted_inside and not segmenter_settings(config).augmentation.pasted_inside


@pytest.mark.parametrize("recipe, synthetic, option", [("lite0-unet-zoom", 0.0, "replacing_tumors"),
                                                      ("seed-cnn-96-kidney-ls-bal", 0.5, "enhancing_tumors"),
                                                      ("lite0-unet-zoom", 0.0, "pasted_tumors")])
def test_tumor_looks_need_a_segmenting_model_with_synthetic_tumors(masked_phantoms, tmp_path, recipe, synthetic, option):
    config = recipe_config(recipe, str(masked_phantoms), str(tmp_path / "run"), synthetic_lesions=synthetic,
                           kidney_crop=False, device="cpu", progress=False, **{option: 0.25})
    with pytest.raises(ValueError, match="--" + option.replace("_", "-")):
        train(config)


def test_pasted_inside_needs_pasted_tumors(masked_phantoms, tmp_path):
    config = recipe_config("lite0-unet-zoom", str(masked_phantoms), str(tmp_path / "run"), synthetic_lesions=0.5,
                           pasted_inside=True, device="cpu", progress=False)
    with pytest.raises(ValueError, match="--pasted-tumors"):
        train(config)


def test_midline_centre_refines_a_midline_band(masked_phantoms, tmp_path):
    from kidneyct.training.settings import segmenter_settings

    config = recipe_config("lite0-unet-zoom", str(masked_phantoms), str(tmp_path / "run"), midline_band=0.2,
                           midline_centre=True, device="cpu", progress=False)
    zoom = segmenter_settings(config).zoom
    assert (zoom.midline, zoom.midline_centre) == (0.2, True)
    with pytest.raises(ValueError, match="--midline-band"):
        train(replace(config, midline_band=0.0))


def test_boxes_of_unmasked_slices_are_drawn_only_for_the_rows_an_epoch_draws_and_only_when_stale():
    import torch

    from kidneyct.labels import MASK_UNKNOWN
    from kidneyct.models.registry import ModelConfig, create_model
    from kidneyct.training.segmenter import SegmenterSettings, SegmenterTrainer, TrainingSet

    rng = np.random.default_rng(0)
    views = rng.integers(0, 255, (6, 64, 64), dtype=np.uint8)
    masks = np.full((6, 64, 64), MASK_UNKNOWN, np.uint8)
    masks[0] = 0
    masks[0, 20:30, 10:20] = 1  # row 0 has a kidney mask: its boxes come from it, never from the model
    data = TrainingSet(views, masks, np.array([0, 1, 1, 1, 1, 1]), np.array(["a"] * 6))
    model = create_model(ModelConfig("lite0-unet", num_classes=2, image_size=64, pretrained="none"))
    trainer = SegmenterTrainer(model, data, 0, SegmenterSettings(work_size=32, refresh_every=3), 0, torch.device("cpu"))
    trainer.refresh_boxes(np.array([0, 1, 2]), epoch=2)
    assert set(trainer.drawn_at) == {1, 2}
    trainer.refresh_boxes(np.array([1, 3]), epoch=3)  # row 1 drawn one epoch ago: still fresh
    assert trainer.drawn_at == {1: 2, 2: 2, 3: 3}
    trainer.refresh_boxes(np.array([1]), epoch=5)
    assert trainer.drawn_at[1] == 5


def test_the_body_view_both_looks_cut_from_follows_view_scale(masked_phantoms, tmp_path):
    from kidneyct.training.settings import preprocessing

    config = recipe_config("lite0-unet-zoom", str(masked_phantoms), str(tmp_path / "run"), image_size=64)
    assert preprocessing(config).image_size == 128  # twice the work size, the recipe's
    assert preprocessing(replace(config, view_scale=3.0)).image_size == 192  # a kidney's zoom at the view's sharpness
    classifier = recipe_config("seed-cnn-96-kidney-ls-bal", str(masked_phantoms), str(tmp_path / "c"), view_scale=3.0)
    assert preprocessing(classifier).image_size == 96  # classifiers see the image at their own size


def test_the_tumor_bank_holds_the_training_splits_tumors_only_when_pasting():
    import torch

    from kidneyct.labels import MASK_UNKNOWN
    from kidneyct.models.registry import ModelConfig, create_model
    from kidneyct.training.segmenter import SegmenterSettings, SegmenterTrainer, TrainingSet
    from kidneyct.training.zoom_batches import ZoomAugmentation

    views = np.full((4, 64, 64), 120, np.uint8)
    masks = np.zeros((4, 64, 64), np.uint8)
    masks[:, 20:40, 10:26] = 1
    masks[0, 25:33, 14:22] = 2  # one tumor slice
    masks[3] = MASK_UNKNOWN
    data = TrainingSet(views, masks, np.array([0, 1, 1, 0]), np.array(["a"] * 4))
    model = create_model(ModelConfig("lite0-unet", num_classes=2, image_size=64, pretrained="none"))

    def trainer(pasted: float) -> SegmenterTrainer:
        augmentation = ZoomAugmentation(synthetic_tumors=0.5, pasted_tumors=pasted)
        return SegmenterTrainer(model, data, 0, SegmenterSettings(work_size=32, augmentation=augmentation), 0,
                                torch.device("cpu"))

    assert trainer(0.0).bank is None
    bank = trainer(0.5).bank
    assert len(bank) == 1 and bank.masks[0].sum() > 0


def test_a_segmenting_run_with_imagenet_weights_resumes(masked_phantoms, tmp_path):
    """Its early encoder stages are frozen: the resumed optimizer must see the same trainable parameters."""
    config = recipe_config("lite0-unet-zoom", str(masked_phantoms), str(tmp_path / "run"), image_size=64, epochs=1,
                           batch_size=8, classes="tumor,normal", device="cpu", progress=False, workers=1)
    train(config)
    result = train(replace(config, epochs=2), resume=True, extend_epochs=2)
    assert [h.epoch for h in result.history] == [1, 2]


def _weights(path):
    return read_checkpoint(path).state_dict


def test_the_weight_average_becomes_the_final_weights_and_survives_an_interruption(masked_phantoms, tmp_path,
                                                                                   monkeypatch):
    """--weight-average: the final weights are the moving average of the second half's steps, not the last
    step's; a run interrupted in its second half resumes the same average (stored in last.pt)."""
    import torch

    from kidneyct.training.segmenter import SegmenterTrainer

    config = recipe_config("lite0-unet-zoom", str(masked_phantoms), str(tmp_path / "avg"), image_size=64, epochs=4,
                           batch_size=8, classes="tumor,normal", device="cpu", progress=False, workers=1,
                           pretrained="none", weight_average=0.5)
    averaged = _weights(train(config).best_checkpoint)
    last_step = _weights(train(replace(config, out=str(tmp_path / "plain"), weight_average=0.0)).best_checkpoint)
    assert any(not torch.equal(averaged[k], last_step[k]) for k in averaged)  # same steps, another final weight

    interrupted = replace(config, out=str(tmp_path / "resumed"))
    train_epoch = SegmenterTrainer.train_epoch

    def stopped_at_epoch_4(self, epoch, *args, **kwargs):
        if epoch == 4:
            raise KeyboardInterrupt
        return train_epoch(self, epoch, *args, **kwargs)

    monkeypatch.setattr(SegmenterTrainer, "train_epoch", stopped_at_epoch_4)
    with pytest.raises(KeyboardInterrupt):
        train(interrupted)
    monkeypatch.setattr(SegmenterTrainer, "train_epoch", train_epoch)
    assert read_checkpoint(tmp_path / "resumed" / "last.pt").resume.average is not None  # kept from epoch 3
    resumed = _weights(train(interrupted, resume=True).best_checkpoint)
    for name, value in averaged.items():
        assert torch.allclose(resumed[name].float(), value.float(), atol=1e-5), name


def test_the_weight_average_needs_a_segmenting_model(masked_phantoms, tmp_path):
    config = recipe_config("seed-cnn-96-kidney-ls-bal", str(masked_phantoms), str(tmp_path / "c"),
                           weight_average=0.998, device="cpu", progress=False)
    with pytest.raises(ValueError, match="--weight-average"):
        train(config)
