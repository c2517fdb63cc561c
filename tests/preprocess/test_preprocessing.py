import numpy as np
import pytest
import torch

from kidneyct.io import CTSlice
from kidneyct.preprocess import Augmentation, Preprocessing, apply_window


def test_window_maps_level_to_middle_and_clips():
    hu = np.array([-1000.0, -160.0, 40.0, 240.0, 3000.0])
    np.testing.assert_allclose(apply_window(hu, 40, 400), [0, 0, 0.5, 1, 1])


def test_hu_slices_are_windowed_display_slices_are_not():
    prep = Preprocessing(image_size=32, window_level=40, window_width=400)
    hu = CTSlice(np.full((64, 64), 40.0, np.float32), hu=True, source="x")
    shown = CTSlice(np.full((64, 64), 0.25, np.float32), hu=False, source="y")
    assert prep.to_uint8(hu).shape == (32, 32)
    assert abs(int(prep.to_uint8(hu)[16, 16]) - 128) <= 1
    assert abs(int(prep.to_uint8(shown)[16, 16]) - 64) <= 1


def test_non_square_images_are_padded_not_stretched():
    prep = Preprocessing(image_size=32)
    wide = np.zeros((32, 64), np.float32)
    wide[:, 28:36] = 1.0  # a vertical bar in the middle
    out = prep.to_uint8(CTSlice(wide, hu=False, source="w"))
    assert out[:6].max() == 0 and out[-6:].max() == 0  # padding above and below (edge rows blur)
    assert out[16, 16] > 200


def test_preprocessing_round_trips_through_dict():
    prep = Preprocessing(128, 50, 350, 0.449, 0.226)
    assert Preprocessing.from_dict(prep.to_dict()) == prep
    batch = prep.batch_to_tensor(np.full((2, 128, 128), 255, np.uint8))
    assert batch.shape == (2, 1, 128, 128)
    assert torch.allclose(batch, torch.full_like(batch, (1 - 0.449) / 0.226))


def test_augmentation_is_seeded_per_sample_and_keeps_range():
    images = torch.rand(6, 1, 32, 32)
    augment = Augmentation()
    a = augment(images, torch.Generator().manual_seed(0))
    b = augment(images, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == images.shape
    assert a.min() >= 0 and a.max() <= 1
    assert not torch.allclose(a[0] - images[0], a[1] - images[1])  # each image its own draw
    assert Augmentation.from_dict(augment.to_dict()) == augment


def test_body_normalisation_removes_the_window_and_keeps_relative_contrast():
    import torch

    from kidneyct.preprocess.preprocessing import normalise_body
    from kidneyct.preprocess.window import apply_window
    from kidneyct.synthetic.phantom import render_slice, sample_patient

    hu, _ = render_slice(sample_patient(np.random.default_rng(4), 96, "Tumor"), 0.0)
    # Two exports of one slice through windows that both start at air and clip nothing inside the body.
    hu = np.clip(hu, -1000, 800)
    wide = torch.tensor(apply_window(hu, 100, 2200))[None, None]
    narrow = torch.tensor(apply_window(hu, -100, 1800))[None, None]
    tissue = torch.tensor(hu > -300)[None, None]  # fat and denser: inside the body in both exports
    a, b = normalise_body(wide), normalise_body(narrow)
    assert (a[tissue] - b[tissue]).abs().max().item() < 0.02  # the same image once normalised
    assert (wide[tissue] - narrow[tissue]).abs().mean().item() > 0.05  # but not before
    assert (a[~(wide > 0.03)] == 0).all()  # air stays black
    inside = a[wide > 0.03]
    assert inside.median().item() == pytest.approx(0.5, abs=0.01)


def test_body_normalisation_is_stored_and_off_by_default():
    assert Preprocessing().body_norm is False
    prep = Preprocessing(96, body_norm=True)
    assert Preprocessing.from_dict(prep.to_dict()) == prep
