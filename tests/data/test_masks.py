"""Masks beside the images: read and checked, decoded with their image (255 where there is none), cached
beside the images, rebuilt when a mask changes, and a bad mask skipped with its reason while its image
goes on."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from kidneyct.data.cache import CacheSettings
from kidneyct.data.catalogue import catalogue_of
from kidneyct.data.decode import decode_samples
from kidneyct.data.masks import UNKNOWN, read_mask
from kidneyct.errors import ImageReadError
from kidneyct.preprocess import Preprocessing

PREP = Preprocessing(image_size=16)


def _kits(sources):
    return catalogue_of([sources[1]], "tumor,normal")


@pytest.mark.parametrize("write, problem", [
    (lambda p: Image.fromarray(np.zeros((8, 8), np.uint8)).save(p), "mask is 8x8 px, its image 32x32 px"),
    (lambda p: Image.fromarray(np.full((32, 32), 7, np.uint8)).save(p), "values 7 outside 0-3"),
    (lambda p: Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(p), "a RGB PNG"),
    (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n broken"), "corrupt|not a readable"),
])
def test_bad_masks_name_the_file_and_the_problem(tmp_path, write, problem):
    path = tmp_path / "case.png"
    write(path)
    with pytest.raises(ImageReadError, match=problem) as raised:
        read_mask(path, None, (32, 32))
    assert raised.value.path == str(path)


def test_masks_are_decoded_beside_their_images_and_unknown_where_missing(sources):
    catalogue = _kits(sources)
    decoded = decode_samples(catalogue.samples, PREP, workers=1, progress=False)
    assert len(decoded.samples) == 12 and decoded.masks.shape == (12, 16, 16)
    for sample, mask in zip(decoded.samples, decoded.masks):
        assert mask.max() == (2 if sample.origin == "Tumor" else 1) and mask[0, 0] == 0
    no_masks = decode_samples(catalogue_of([sources[0]], "tumor,normal").samples, PREP, workers=1, progress=False)
    assert (np.asarray(no_masks.masks) == UNKNOWN).all() and no_masks.masks.base.strides == (0, 0, 0)


def test_a_bad_mask_is_reported_and_its_image_used_without_one(sources, caplog):
    masks = sources[1].masks
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(masks / "case_00000.png")  # wrong shape
    Image.fromarray(np.full((32, 32), 9, np.uint8)).save(masks / "case_00001.png")  # not a label
    (masks / "case_00002.png").unlink()  # missing: unknown, not an error
    samples = _kits(sources).samples
    decoded = decode_samples(samples, PREP, workers=1, progress=False)
    assert len(decoded.samples) == 12  # every image goes on
    reasons = dict(decoded.mask_skipped)
    assert set(reasons) == {str(masks / "case_00000.png"), str(masks / "case_00001.png")}
    assert "pixel grid" in reasons[str(masks / "case_00000.png")]
    assert "outside 0-3" in reasons[str(masks / "case_00001.png")]
    assert "its image is used without a mask" in caplog.text
    unknown = {s.path.rsplit("/", 1)[1] for s, m in zip(decoded.samples, decoded.masks) if (m == UNKNOWN).all()}
    assert unknown == {"case_00000.png", "case_00001.png", "case_00002.png"}


def test_masks_are_cached_and_a_changed_mask_rebuilds_the_cache(sources, tmp_path):
    cache = CacheSettings(folder=str(tmp_path / "cache"))
    samples = _kits(sources).samples
    first = decode_samples(samples, PREP, workers=1, progress=False, cache=cache)
    again = decode_samples(samples, PREP, workers=1, progress=False, cache=cache)
    assert again.from_cache and np.array_equal(np.asarray(again.masks), np.asarray(first.masks))
    assert isinstance(again.masks.base, np.memmap)
    changed = sources[1].masks / "case_00006.png"  # a Normal case: now with a cyst
    mask = np.asarray(Image.open(changed)).copy()
    mask[10:14, 10:14] = 3
    Image.fromarray(mask).save(changed)
    os.utime(changed, ns=(1, 1))  # another mtime whatever the clock's resolution
    rebuilt = decode_samples(samples, PREP, workers=1, progress=False, cache=cache)
    assert not rebuilt.from_cache
    row = [s.path for s in rebuilt.samples].index(str(sources[1].root / "Normal" / "case_00006.png"))
    assert 3 in rebuilt.masks[row] and 3 not in first.masks[row]
    series_view = decode_samples(samples, PREP, workers=1, progress=False, cache=cache, with_masks=False)
    assert not series_view.from_cache and (np.asarray(series_view.masks) == UNKNOWN).all()
