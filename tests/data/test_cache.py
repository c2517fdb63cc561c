"""Decode-once cache: hits, misses on changed files or settings, and rebuilds of damaged caches."""

import json
import os
import shutil

import numpy as np
import pytest

from kidneyct.data.cache import CacheSettings, DecodeCache, _host, cache_key
from kidneyct.data.catalogue import build_catalogue
from kidneyct.data.decode import decode_samples
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
