"""Decode-once cache: hits, misses on changed files or settings, and rebuilds of damaged caches."""

import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from kidneyct.data.cache import CacheSettings, DecodeCache, _host, cache_key
from kidneyct.data.catalogue import build_catalogue
from kidneyct.data.decode import decode_samples
from kidneyct.data.jpeg_torch import decode_jpeg_files, jpeg_header
from kidneyct.data.rows import Rows
from kidneyct.io import read_slices
from kidneyct.preprocess import Preprocessing

PREP = Preprocessing(image_size=64)


@pytest.fixture
def dataset(phantom_png, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(phantom_png, root)
    return root


def decode(root, folder, prep=PREP, **kwargs):
    samples = build_catalogue(root, "all").samples
    return decode_samples(samples, prep, workers=1, progress=False, cache=CacheSettings(folder=str(folder)),
                          **kwargs)


def only_entry(folder):
    arrays = sorted(folder.glob("*.npy"))
    assert len(arrays) == 1, arrays
    return arrays[0], arrays[0].with_suffix(".json")


def test_second_run_loads_the_cache_with_identical_rows(dataset, tmp_path):
    samples = build_catalogue(dataset, "all").samples
    plain = decode_samples(samples, PREP, workers=1, progress=False)
    first = decode(dataset, tmp_path / "c")
    second = decode(dataset, tmp_path / "c")
    assert not first.from_cache and second.from_cache
    assert isinstance(second.images.base, np.memmap)  # memory-mapped, not read into RAM
    assert np.array_equal(np.asarray(plain.images), np.asarray(second.images))
    assert [s.key for s in second.samples] == [s.key for s in plain.samples]
    array, sidecar = only_entry(tmp_path / "c")
    meta = json.loads(sidecar.read_text())
    assert meta["complete"] and meta["shape"] == [len(samples), 64, 64] and len(meta["samples"]) == len(samples)


def test_a_changed_file_or_setting_makes_a_new_cache(dataset, tmp_path):
    folder = tmp_path / "c"
    decode(dataset, folder)
    image = next((dataset / "Tumor").glob("*.png"))
    info = image.stat()
    os.utime(image, ns=(info.st_atime_ns, info.st_mtime_ns + 10**9))
    assert not decode(dataset, folder).from_cache
    assert not decode(dataset, folder, Preprocessing(image_size=48)).from_cache
    assert not decode(dataset, folder, Preprocessing(image_size=64, window_width=300)).from_cache
    # mean/std are applied later, on the fly: models that differ only there share the cache.
    assert decode(dataset, folder, Preprocessing(image_size=64, mean=0.449, std=0.226)).from_cache
    assert len(list(folder.glob("*.npy"))) == 4


@pytest.mark.parametrize("damage", ["truncate", "no_sidecar", "bad_sidecar", "other_key", "flipped_row"])
def test_a_damaged_or_partial_cache_is_detected_and_rebuilt(dataset, tmp_path, damage, caplog):
    folder = tmp_path / "c"
    reference = np.asarray(decode(dataset, folder).images)
    array, sidecar = only_entry(folder)
    if damage == "truncate":
        with open(array, "r+b") as handle:
            handle.truncate(array.stat().st_size - 100)
    elif damage == "no_sidecar":  # what a run killed between writing the array and the sidecar leaves
        sidecar.unlink()
    elif damage == "bad_sidecar":
        sidecar.write_text('{"format": 1, "key": ')
    elif damage == "other_key":
        meta = json.loads(sidecar.read_text())
        sidecar.write_text(json.dumps({**meta, "key": "0" * 32}))
    else:
        data = np.load(array, mmap_mode="r+")
        data[0] = 255 - data[0]
        data.flush()
        del data
    rebuilt = decode(dataset, folder)
    assert not rebuilt.from_cache and np.array_equal(np.asarray(rebuilt.images), reference)
    assert "rebuilding" in caplog.text
    assert decode(dataset, folder).from_cache


def test_leftovers_of_a_dead_writer_are_removed(dataset, tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    key = cache_key(build_catalogue(dataset, "all").samples, PREP)
    host = DecodeCache(folder)
    orphan = folder / f".{key}.{_host()}.999999999.abcdefgh.npy.tmp"
    orphan.write_bytes(b"partial")
    decode(dataset, folder)
    assert not orphan.exists() and host.load(key) is not None


def test_unreadable_files_are_remembered_by_the_cache(dataset, tmp_path):
    (dataset / "Tumor" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    first = decode(dataset, tmp_path / "c")
    second = decode(dataset, tmp_path / "c")
    assert second.from_cache
    for result in (first, second):
        assert [p.split("/")[-1] for p, _ in result.skipped] == ["broken.png"]
        assert all(not s.path.endswith("broken.png") for s in result.samples)
        assert len(result.images) == len(result.samples)


def test_a_subset_is_served_from_the_cache_of_its_superset(dataset, tmp_path):
    samples = build_catalogue(dataset, "all").samples
    folder = tmp_path / "c"
    full = decode(dataset, folder)
    subset = samples[5:25:3]
    part = decode_samples(subset, PREP, progress=False, cache=CacheSettings(folder=str(folder)), superset=samples)
    assert part.from_cache and len(list(folder.glob("*.npy"))) == 1
    assert np.array_equal(np.asarray(part.images), np.asarray(full.images)[5:25:3])


def test_cache_folder_from_settings_then_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("KIDNEYCT_CACHE", str(tmp_path / "env"))
    assert CacheSettings().resolve() == tmp_path / "env"
    assert CacheSettings(folder=str(tmp_path / "flag")).resolve() == tmp_path / "flag"
    assert CacheSettings(enabled=False).resolve() is None
    monkeypatch.delenv("KIDNEYCT_CACHE")
    assert str(CacheSettings().resolve()) == ".cache/kidneyct"


def test_rows_gather_lazily_in_the_order_asked():
    base = np.arange(10 * 2 * 2, dtype=np.uint8).reshape(10, 2, 2)
    rows = Rows(base, [7, 2, 5, 3])
    assert rows.shape == (4, 2, 2) and len(rows) == 4
    assert np.array_equal(rows[[2, 0]], base[[5, 7]])
    assert np.array_equal(rows[1:3], base[[2, 5]])
    assert np.array_equal(rows.subset([3, 1])[:], base[[3, 2]])
    assert np.array_equal(np.asarray(rows), base[[7, 2, 5, 3]])
    assert torch.equal(rows.to_tensor(chunk=3), torch.from_numpy(base[[7, 2, 5, 3]]))


def _write_jpegs(phantom_png, folder):
    """Grey, RGB and non-square JPEGs from phantom PNGs, plus a corrupt one and a CMYK one."""
    written = []
    for label in ("Tumor", "Normal"):
        (folder / label).mkdir(parents=True)
        for i, png in enumerate(sorted((phantom_png / label).glob("*.png"))[:6]):
            image = Image.open(png).convert("L")
            if i % 3 == 1:
                image = image.convert("RGB")
            if i % 3 == 2:
                image = image.crop((0, 10, image.width, image.height - 20))
            path = folder / label / f"{png.stem}.jpg"
            image.save(path, quality=90)
            written.append(path)
    (folder / "Tumor" / "corrupt.jpg").write_bytes(written[0].read_bytes()[:400])
    Image.open(written[1]).convert("CMYK").save(folder / "Normal" / "cmyk.jpg")
    return written


def test_torch_jpeg_path_matches_pillow_within_one_grey_level(phantom_png, tmp_path):
    # The same code decodes with nvjpeg when the device is CUDA; here it runs on the CPU.
    root = tmp_path / "jpeg"
    _write_jpegs(phantom_png, root)
    samples = build_catalogue(root, "tumor,normal").samples
    pillow = decode_samples(samples, PREP, workers=1, progress=False)
    torch_path = decode_samples(samples, PREP, workers=1, progress=False, jpeg_device="cpu")
    assert [s.key for s in torch_path.samples] == [s.key for s in pillow.samples]
    assert [p.split("/")[-1] for p, _ in torch_path.skipped] == ["corrupt.jpg"]
    difference = np.abs(np.asarray(torch_path.images).astype(int) - np.asarray(pillow.images).astype(int))
    assert difference.max() <= 1 and difference.mean() < 0.02
    cmyk = next(s for s in samples if s.path.endswith("cmyk.jpg"))
    assert jpeg_header(open(cmyk.path, "rb").read())[3] == 4  # declined by torchvision, read by Pillow


def test_torch_jpeg_path_on_real_512px_slices(real_data_512):
    files = sorted(str(p) for p in real_data_512.rglob("*.jpg"))[:12]
    prep = Preprocessing(image_size=224)
    decoded = dict(decode_jpeg_files(files, prep, "cpu", batch_size=5))
    for position, path in enumerate(files):
        reference = prep.to_uint8(read_slices(path)[0])
        assert np.abs(decoded[position].astype(int) - reference.astype(int)).max() <= 1
