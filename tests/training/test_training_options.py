from dataclasses import replace
"""The experiment options of issue 7: body crop, intensity jitter, TTA, label smoothing, balanced sampling,
augmentation presets and recipes."""

import json

import numpy as np
import pytest
import torch

import kidneyct
from kidneyct.cli import main
from kidneyct.config import RECIPES, TrainConfig, apply_recipe
from kidneyct.data.cache import cache_key
from kidneyct.data.catalogue import Sample
from kidneyct.io import CTSlice
from kidneyct.checkpoint import read_checkpoint
from kidneyct.models.forward import predict_logits
from kidneyct.preprocess import AUGMENTATIONS, Augmentation, Preprocessing, body_mask, crop_to_body
from kidneyct.training.settings import augmentation_policy
from kidneyct.training.train import train


def _body_with_table(size=128):
    """A bright ellipse (body) left of centre, a thin table line below it, noise specks elsewhere."""
    yy, xx = np.mgrid[:size, :size]
    image = np.zeros((size, size), np.float32)
    body = ((yy - 50) / 30.0) ** 2 + ((xx - 45) / 25.0) ** 2 <= 1
    image[body] = 0.6
    image[40:50, 40:50] = 0.05  # dark gas inside the body: kept (holes are filled)
    image[100:102, 5:120] = 0.8  # the table: thin, not connected
    image[5, 120] = 1.0  # a speck
    return image


def test_body_crop_keeps_the_body_and_drops_table_and_background():
    image = _body_with_table()
    mask = body_mask(image)
    assert mask[50, 45] and mask[45, 45] and not mask[101, 100] and not mask[5, 120]
    cropped = crop_to_body(image)
    assert cropped.shape[0] < 80 and cropped.shape[1] < 64  # about the ellipse's bounding box
    assert cropped.max() == pytest.approx(0.6)  # the table (0.8) and speck (1.0) are gone
    prep = Preprocessing(image_size=64, body_crop=True)
    out = prep.to_uint8(CTSlice(image, hu=False, source="x"))
    assert out.shape == (64, 64) and out.max() <= 0.6 * 255 + 1
    # The body fills the frame: far more body pixels than without the crop.
    plain = Preprocessing(image_size=64).to_uint8(CTSlice(image, hu=False, source="x"))
    assert (out > 100).sum() > 1.5 * (plain > 100).sum()


def test_body_crop_leaves_a_slice_without_a_body_unchanged():
    empty = np.zeros((64, 64), np.float32)
    empty[3, 3] = 1.0
    assert crop_to_body(empty) is empty


def test_body_crop_is_in_the_cache_key_only_when_set(tmp_path):
    sample = [Sample(str(tmp_path / "a.png"), 0)]
    plain, cropped = Preprocessing(64), Preprocessing(64, body_crop=True)
    assert cache_key(sample, plain) != cache_key(sample, cropped)
    assert cache_key(sample, plain) == cache_key(sample, Preprocessing(64, tta_hflip=True))  # inference-only
    assert Preprocessing.from_dict(cropped.to_dict()) == cropped
    assert Preprocessing.from_dict({"image_size": 64}).body_crop is False  # old checkpoints


def test_gamma_jitter_adds_a_parameter_and_changes_intensities():
    images = torch.rand(4, 1, 16, 16)
    generator = torch.Generator().manual_seed(0)
    assert Augmentation().sample(4, generator).shape == (4, 7)  # the default policy's stream is unchanged
    jitter = Augmentation(hflip=0, rotate_degrees=0, translate=0, scale=(1, 1), brightness=0, contrast=0, gamma=0.5)
    params = jitter.sample(4, torch.Generator().manual_seed(0))
    assert params.shape == (4, 8) and not torch.allclose(params[:, 7], torch.ones(4))
    out = Augmentation.apply(images, params)
    assert out.min() >= 0 and out.max() <= 1
    same = Augmentation.apply(images, params[:, :7])  # no gamma column: identity geometry and intensity
    assert torch.allclose(same, images, atol=0.02) and not torch.allclose(out, images, atol=0.02)
    assert set(AUGMENTATIONS) >= {"default", "jitter", "strong"}
    assert Augmentation.from_dict(AUGMENTATIONS["strong"].to_dict()) == AUGMENTATIONS["strong"]


def test_tta_averages_the_logits_of_the_mirrored_slice():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16 * 16, 2))
    images = np.random.default_rng(0).integers(0, 255, (3, 16, 16), dtype=np.uint8)
    plain = predict_logits(model, Preprocessing(16), images)
    mirrored = predict_logits(model, Preprocessing(16), images[:, :, ::-1].copy())
    tta = predict_logits(model, Preprocessing(16, tta_hflip=True), images)
    assert torch.allclose(tta, (plain + mirrored) / 2, atol=1e-5)


def test_training_options_are_used_and_stored(phantom_png, tmp_path):
    config = TrainConfig(data=str(phantom_png), out=str(tmp_path / "run"), model="seed-cnn", image_size=96, epochs=1,
                         batch_size=16, device="cpu", progress=False, workers=1, label_smoothing=0.1,
                         sampler="balanced", augmentation="strong", body_crop=True, tta=True)
    result = train(config)
    stored = read_checkpoint(result.best_checkpoint)
    assert stored.preprocessing.body_crop is True and stored.preprocessing.tta_hflip is True
    assert Augmentation.from_dict(stored.training.augmentation).gamma == AUGMENTATIONS["strong"].gamma
    assert stored.training.config.sampler == "balanced" and stored.training.config.label_smoothing == 0.1
    predictor = kidneyct.load(result.best_checkpoint, device="cpu")
    assert predictor.preprocessing.body_crop and predictor.preprocessing.tta_hflip  # inference rebuilds both
    image = next(phantom_png.rglob("Tumor*.png"))
    assert abs(sum(predictor.predict(str(image)).slices[0].probabilities.values()) - 1) < 1e-5
    with pytest.raises(ValueError, match="sampler"):
        train(TrainConfig(data=str(phantom_png), out=str(tmp_path / "bad"), sampler="nope", device="cpu"))
    with pytest.raises(ValueError, match="augmentation"):
        augmentation_policy(TrainConfig(data="", out="", augmentation="nope"))


def test_recipes_are_data_and_the_command_line_overrides_them(monkeypatch, phantom_png, tmp_path):
    import kidneyct.config as recipes

    monkeypatch.setitem(recipes.RECIPES, "test-recipe", {"description": "t", "settings": {
        "label_smoothing": 0.2, "epochs": 1, "image_size": 96, "sampler": "balanced"}})
    config = apply_recipe(TrainConfig(data="", out=""), "test-recipe")
    assert config.label_smoothing == 0.2 and config.sampler == "balanced" and config.recipe == "test-recipe"
    with pytest.raises(KeyError):
        apply_recipe(config, "no-such-recipe")
    for name in RECIPES:  # every shipped recipe names real fields
        apply_recipe(TrainConfig(data="", out=""), name)
    out = tmp_path / "run"
    code = main(["train", "--data", str(phantom_png), "--recipe", "test-recipe", "--sampler", "shuffle",
                 "--device", "cpu", "--no-progress", "--workers", "1", "--out", str(out)])
    assert code == 0
    stored = json.loads((out / "config.json").read_text())["train"]
    assert stored["recipe"] == "test-recipe" and stored["label_smoothing"] == 0.2 and stored["epochs"] == 1
    assert stored["sampler"] == "shuffle"  # given on the command line
    assert main(["train", "--data", str(phantom_png), "--recipe", "no-such-recipe"]) == 2


def test_a_sources_file_without_a_recipe_trains_the_shipped_segmenting_recipe():
    """Sources bring masks: `train`/`cv --sources` with no --recipe get SOURCES_RECIPE (a classifier there learns
    the source, not the lesion); --recipe still wins; --data and other commands keep DEFAULT_RECIPE."""
    from kidneyct.cli import build_parser
    from kidneyct.cli.options import recipe_argument, train_config
    from kidneyct.config import DEFAULT_RECIPE, SOURCES_RECIPE, recipe_settings

    def parsed(argv):
        return train_config(build_parser(recipe_argument(argv)).parse_args(argv), "o")

    for command in ("train", "cv"):
        config = parsed([command, "--sources", "s.toml", "--epochs", "3"])
        assert config.recipe == SOURCES_RECIPE and config.epochs == 3  # an option given still wins
        for name, value in recipe_settings(SOURCES_RECIPE).items():
            if name != "epochs":
                assert getattr(config, name) == value, name
    assert parsed(["cv", "--sources", "s.toml", "--recipe", "lite0-unet-zoom"]).recipe == "lite0-unet-zoom"
    assert parsed(["train", "--data", "d"]).recipe == DEFAULT_RECIPE
    assert recipe_argument(["evaluate", "--sources", "s.toml", "--checkpoint", "c.pt"]) is None
    assert SOURCES_RECIPE != DEFAULT_RECIPE and recipe_settings(SOURCES_RECIPE)["model"] == "lite0-unet"


def test_train_defaults_are_the_default_recipe_and_the_demo_keeps_the_baseline(monkeypatch, tmp_path):
    """`kidneyct train` with no options trains DEFAULT_RECIPE; the demo pins the student baseline."""
    import kidneyct.training.train as train_module
    from kidneyct.cli import build_parser
    from kidneyct.cli.options import train_config
    from kidneyct.config import DEFAULT_RECIPE, recipe_settings
    from kidneyct.experiments.demo import run_demo

    plain = TrainConfig(data="d", out="o")
    assert plain.recipe == DEFAULT_RECIPE
    assert apply_recipe(plain, DEFAULT_RECIPE) == plain  # every recipe setting is a default
    parsed = train_config(build_parser().parse_args(["train", "--data", "d"]), "o")
    for name, value in recipe_settings(DEFAULT_RECIPE).items():
        assert getattr(parsed, name) == value, name
    assert parsed == replace(plain, data="d")  # options not given keep the recipe's values

    seen = {}

    def fake_train(config):
        seen["config"] = config
        raise SystemExit  # stop before any training
    monkeypatch.setattr(train_module, "train", fake_train)
    with pytest.raises(SystemExit):
        run_demo(tmp_path, n=8, epochs=1, image_size=96, device="cpu", phantom_size=64)
    demo = seen["config"]
    baseline = recipe_settings("student-baseline")
    assert demo.recipe == "student-baseline" and demo.model == baseline["model"]
    assert (demo.body_crop, demo.label_smoothing, demo.sampler) == (False, 0.0, "shuffle")
    assert (demo.image_size, demo.epochs) == (96, 1)
