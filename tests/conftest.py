"""Shared fixtures: small generated phantom sets and one tiny trained run reused across tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ct-kidney"
REAL_DATA_512 = REAL_DATA.parent / "ct-kidney-512-sample"
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
REAL_EXAMPLES = REAL_DATA.parent / "real-ct-examples"


@pytest.fixture(scope="session", autouse=True)
def decode_cache_folder(tmp_path_factory):
    """Training and evaluation cache decoded images; keep the tests' caches out of the working directory."""
    previous = os.environ.get("KIDNEYCT_CACHE")
    folder = tmp_path_factory.mktemp("decode_cache")
    os.environ["KIDNEYCT_CACHE"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("KIDNEYCT_CACHE", None)
    else:
        os.environ["KIDNEYCT_CACHE"] = previous


# Shared trained fixtures keep the whole image and plain sampling (the student baseline's), so that what the
# tests built on them measure does not move when the default recipe changes.
WHOLE_IMAGE = {"body_crop": False, "label_smoothing": 0.0, "sampler": "shuffle"}


@pytest.fixture(scope="session")
def phantom_png(tmp_path_factory) -> Path:
    from kidneyct.synthetic.phantom import generate_dataset

    root = tmp_path_factory.mktemp("phantom_png")
    generate_dataset(root, n=96, seed=3, size=128, progress=False)
    return root


@pytest.fixture
def study_tree(tmp_path) -> tuple[Path, object, object]:
    """A folder with PNG slices (and a mask beside one), a DICOM series sub-folder, a NIfTI volume and junk:
    (the folder, the series, the volume)."""
    from kidneyct.synthetic.phantom import generate_dataset
    from kidneyct.synthetic.phantom_study import write_study

    root = tmp_path / "data"
    generate_dataset(root / "png", n=4, seed=0, size=64, classes=["Tumor", "Normal"], progress=False,
                     slices_per_series=(2, 2))
    series = write_study(root / "dicom", "dicom", seed=1, size=64, n_slices=6, lesion_slices=(2, 3))
    volume = write_study(root / "nifti", "nifti", seed=2, size=64, n_slices=5, lesion_slices=(1, 2))
    (root / "notes.txt").write_text("not an image")
    return root, series, volume


@pytest.fixture(scope="session")
def trained_run(phantom_png, tmp_path_factory):
    """A real (tiny) seed-cnn training on phantoms: 2 epochs at 96 px."""
    from kidneyct.config import TrainConfig
    from kidneyct.training.train import train

    out = tmp_path_factory.mktemp("run")
    config = TrainConfig(data=str(phantom_png), out=str(out), model="seed-cnn", image_size=96, epochs=2,
                         batch_size=16, seed=1, device="cpu", progress=False, workers=1, **WHOLE_IMAGE)
    return train(config)


@pytest.fixture
def real_data() -> Path:
    if not REAL_DATA.is_dir():
        pytest.skip(f"real CT data not present at {REAL_DATA}")
    return REAL_DATA


@pytest.fixture
def real_examples() -> Path:
    """The two real scans with organ labels (a 30-slice NIfTI, a 20-slice UID-named DICOM series)."""
    if not (REAL_EXAMPLES / "abdomen-ct-30slices.nii.gz").is_file():
        pytest.skip(f"real CT examples not present at {REAL_EXAMPLES}")
    return REAL_EXAMPLES


@pytest.fixture
def real_data_512() -> Path:
    if not any(REAL_DATA_512.rglob("*.jpg")):
        pytest.skip(f"real 512 px CT sample not present at {REAL_DATA_512}")
    return REAL_DATA_512


@pytest.fixture(scope="session")
def benchmark_script():
    """A function that loads a script of benchmarks/ (not a package) by name, e.g. "localisation", as a module."""
    import importlib.util

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def phantom_detector(tmp_path_factory):
    """A model that finds phantom tumors: EfficientNet-Lite0 (offline ImageNet weights, fine-tuned) on
    300 phantom slices at 96 px, 6 epochs (about half a minute on 2 cores); on the studies of
    tests/inference/test_study.py its tumor probability averages about 0.45 on lesion slices, 0.1 elsewhere."""
    import kidneyct
    from kidneyct.config import TrainConfig
    from kidneyct.synthetic.phantom import generate_dataset
    from kidneyct.training.train import train

    data = tmp_path_factory.mktemp("detector_data")
    generate_dataset(data, n=300, seed=5, size=96, classes=["Tumor", "Normal"], slices_per_series=(1, 2),
                     progress=False)
    config = TrainConfig(data=str(data), out=str(tmp_path_factory.mktemp("detector")), model="efficientnet-lite0",
                         image_size=96, epochs=6, patience=6, finetune=True, seed=1, device="cpu", progress=False,
                         workers=1, **WHOLE_IMAGE)
    return kidneyct.load(train(config).best_checkpoint, device="cpu")


@pytest.fixture(scope="session")
def phantom_dicom(tmp_path_factory) -> Path:
    """Phantom CT Image Storage series, 6 slices each: <root>/Tumor/tumor-000N/, <root>/Normal/normal-000N/."""
    from kidneyct.synthetic.phantom import generate_dataset

    root = tmp_path_factory.mktemp("phantom_dicom")
    generate_dataset(root, n=24, seed=11, size=96, classes=["Tumor", "Normal"], fmt="dicom",
                     slices_per_series=(6, 6), progress=False)
    return root
