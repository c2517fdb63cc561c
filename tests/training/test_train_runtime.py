"""How a run executes: decode cache on or off, torch.compile wiring, splits served from the memmap."""

import numpy as np
import torch

import kidneyct.training.train as train_module
from kidneyct.config import TrainConfig
from kidneyct.data.cache import CacheSettings
from kidneyct.data.prepare import prepare_data
from kidneyct.preprocess import Preprocessing
from kidneyct.training.train import train

TINY = dict(model="seed-cnn", image_size=96, epochs=1, batch_size=16, seed=1, device="cpu", progress=False,
            workers=1)


def test_compile_wraps_the_trained_module_and_the_cache_lands_in_cache_dir(phantom_png, tmp_path, monkeypatch):
    compiled = []

    def fake_compile(module, *args, **kwargs):  # the real one needs minutes and a compiler on 2 CPU cores
        compiled.append(module)
        return module

    monkeypatch.setattr(train_module.torch, "compile", fake_compile)
    result = train(TrainConfig(data=str(phantom_png), out=str(tmp_path / "run"), compile=True,
                               cache_dir=str(tmp_path / "cache"), **TINY))
    assert len(compiled) == 1 and isinstance(compiled[0], torch.nn.Module)
    # Two caches, both in cache_dir: the training view and the fixed view series are inferred on.
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2
    assert result.history[0].images_per_second > 0


def test_no_cache_writes_no_cache(phantom_png, tmp_path):
    train(TrainConfig(data=str(phantom_png), out=str(tmp_path / "run"), cache=False,
                      cache_dir=str(tmp_path / "cache"), **TINY))
    assert not (tmp_path / "cache").exists()


def test_splits_read_the_memory_mapped_cache_without_copying_it(phantom_png, tmp_path):
    prep = Preprocessing(image_size=64)
    data = prepare_data(phantom_png, "all", prep, tmp_path / "split.csv", workers=1, progress=False,
                        cache=CacheSettings(folder=str(tmp_path / "cache")))
    for arrays in data.splits.values():
        assert isinstance(arrays.images.base, np.memmap) and not arrays.images.base.flags.writeable
    sizes = [len(a) for a in data.splits.values()]
    assert sum(sizes) == len(data.decoded.samples)
