"""Synthetic lesions in training batches: who receives one, what they are labelled, what a run records."""

import numpy as np
import pytest
import torch

from kidneyct.config import TrainConfig
from kidneyct.checkpoint import read_checkpoint
from kidneyct.preprocess.kidney import locate_kidneys
from kidneyct.preprocess.window import apply_window
from kidneyct.synthetic.phantom import render_slice, sample_patient
from kidneyct.training.lesion_inputs import LesionPlan
from kidneyct.training.train import train


def _batch(n=8, size=96):
    rng = np.random.default_rng(0)
    images, masks = [], []
    while len(images) < n:
        unit = apply_window(render_slice(sample_patient(rng, size, None), 0.0)[0], 40, 400)
        location = locate_kidneys(unit)
        if location.found:
            images.append(unit)
            masks.append(location.mask)
    return torch.tensor(np.stack(images))[:, None], torch.tensor(np.stack(masks))


def test_lesions_relabel_exactly_the_images_that_receive_one():
    images, masks = _batch()
    masks[1] = False  # no kidney located: never receives a lesion
    plan = LesionPlan.for_classes(masks, 1.0, ["Tumor", "Normal"])
    labels = torch.ones(8, dtype=torch.long)  # all Normal
    receive = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.9, 0.9, 0.0, 0.9])  # < share: receives one
    out, new = plan.apply(images, torch.arange(8), labels, (receive * 1.0, torch.zeros(8), 7))
    assert new.tolist() == [0, 1, 0, 0, 0, 0, 0, 0]  # share 1.0: every image with a kidney becomes Tumor
    changed = (out != images).flatten(1).any(1)
    assert changed.tolist() == [True, False, True, True, True, True, True, True]

    half = LesionPlan.for_classes(masks, 0.5, ["Tumor", "Normal"])
    out, new = half.apply(images, torch.arange(8), labels, (receive, torch.zeros(8), 7))
    assert new.tolist() == [0, 1, 0, 0, 1, 1, 0, 1]
    assert torch.equal(out[4], images[4]) and not torch.equal(out[0], images[0])


def test_cysts_only_in_normal_and_cyst_slices_of_a_four_class_task():
    images, masks = _batch(4)
    plan = LesionPlan.for_classes(masks, 1.0, ["Normal", "Cyst", "Tumor", "Stone"])
    labels = torch.tensor([0, 1, 2, 3])
    _, new = plan.apply(images, torch.arange(4), labels, (torch.zeros(4), torch.zeros(4), 3))  # all drawn as cysts
    assert new.tolist() == [1, 1, 2, 2]  # Normal and Cyst get a cyst; Tumor and Stone slices get a tumor
    with pytest.raises(ValueError, match="Tumor class"):
        LesionPlan.for_classes(masks, 0.5, ["Normal", "Cyst"])


def test_lesions_are_written_into_the_batch_masks():
    images, kidneys = _batch(4, size=64)
    plan = LesionPlan.for_classes(kidneys, 0.5, ["Normal", "Cyst", "Tumor"])
    masks = torch.zeros(4, 64, 64, dtype=torch.uint8)
    masks[:, 0, 0], masks[3] = 1, 255  # a known pixel to keep; row 3 has no mask
    labels = torch.tensor([0, 0, 0, 0])
    draws = (torch.tensor([0.0, 0.0, 0.9, 0.0]), torch.tensor([0.9, 0.0, 0.0, 0.9]), 5)
    out, new, marked = plan.apply_with_masks(images, torch.arange(4), labels, draws, masks)
    again, same = plan.apply(images, torch.arange(4), labels, draws)
    assert torch.equal(out, again) and torch.equal(new, same)  # masks change no image or label
    assert new.tolist() == [2, 1, 0, 2]  # a tumor, a cyst, none, a tumor
    assert set(marked[0].unique().tolist()) == {0, 1, 2} and set(marked[1].unique().tolist()) == {0, 1, 3}
    assert torch.equal(marked[2], masks[2])
    assert set(marked[3].unique().tolist()) == {2, 255}  # no mask: the lesion is all that is known
    assert int((marked[0] == 2).sum()) > 10 and marked[0, 0, 0] == 1


def test_training_with_lesions_and_acquisition_records_both(phantom_png, tmp_path, decode_cache_folder):
    config = TrainConfig(data=str(phantom_png), out=str(tmp_path / "run"), model="seed-cnn", image_size=96, epochs=1,
                         batch_size=16, device="cpu", progress=False, workers=1, synthetic_lesions=0.5, kidney_crop=False,
                         acquisition="strong:noise+window")
    result = train(config)
    training = read_checkpoint(result.best_checkpoint).training
    assert training.synthetic_lesions["share"] == 0.5
    assert training.acquisition["noise_p"] > 0 and training.acquisition["jpeg_p"] == 0
    memos = list(decode_cache_folder.glob("**/*.kidneys-v*.npy"))
    assert memos, "kidney masks are kept beside the decode cache"
    packed = np.load(memos[0])
    assert packed.dtype == np.uint8 and packed.any(), "some phantom kidneys were located"


def test_frozen_backbone_features_cannot_follow_lesions(phantom_png, tmp_path):
    config = TrainConfig(data=str(phantom_png), out=str(tmp_path / "frozen"), model="efficientnet-lite0",
                         pretrained="none", image_size=32, epochs=1, device="cpu", progress=False, workers=1,
                         synthetic_lesions=0.5, kidney_crop=False)
    with pytest.raises(ValueError, match="no-feature-cache"):
        train(config)


def test_lesions_on_the_kidney_crop_are_refused_with_the_way_out(phantom_png, tmp_path):
    config = TrainConfig(data=str(phantom_png), out=str(tmp_path / "crop"), model="seed-cnn", image_size=96, epochs=1,
                         device="cpu", progress=False, workers=1, synthetic_lesions=0.5, kidney_crop=True)
    with pytest.raises(ValueError, match="--no-kidney-crop"):
        train(config)
