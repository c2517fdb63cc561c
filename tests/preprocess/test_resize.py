import numpy as np
import pytest
import torch

from kidneyct.preprocess import pad_to_square, resize_batch_to_uint8, resize_to_uint8
from kidneyct.preprocess.resize import square_padding


def test_padding_centres_the_image_on_a_black_square():
    assert square_padding(3, 6) == (1, 2, 0, 0) and square_padding(5, 2) == (0, 0, 1, 2)
    image = np.ones((3, 6), np.float32)
    padded = pad_to_square(image)
    assert padded.shape == (6, 6) and padded.dtype == image.dtype
    assert padded[1:4].all() and not padded[0].any() and not padded[4:].any()
    assert pad_to_square(padded) is padded


@pytest.mark.parametrize("shape, size", [((64, 64), 32), ((37, 53), 96), ((200, 120), 48), ((512, 300), 224),
                                         ((20, 20), 64)])
def test_torch_batches_match_pillow_within_one_grey_level(shape, size):
    rng = np.random.default_rng(sum(shape) + size)
    # Smooth content with sharp edges, as CT slices have: a noisy ramp and a bright block.
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    units = []
    for _ in range(3):
        unit = (xx / shape[1] * rng.uniform(0.3, 1.0) + rng.normal(0, 0.05, shape)).astype(np.float32)
        unit[shape[0] // 4:shape[0] // 2, shape[1] // 3:] = 1.0
        units.append(np.clip(unit, 0.0, 1.0))
    pillow = np.stack([resize_to_uint8(pad_to_square(unit), size) for unit in units])
    batch = resize_batch_to_uint8(torch.from_numpy(np.stack(units))[:, None], size).numpy()
    assert batch.shape == pillow.shape == (3, size, size) and batch.dtype == np.uint8
    difference = np.abs(batch.astype(int) - pillow.astype(int))
    assert difference.max() <= 1 and difference.mean() < 0.05
