"""The batched JPEG path (torchvision decoding, torch pad-and-resize) against the Pillow reader."""

import numpy as np
from PIL import Image

from kidneyct.data.catalogue import build_catalogue
from kidneyct.data.decode import decode_samples
from kidneyct.data.jpeg_torch import decode_jpeg_files, jpeg_header
from kidneyct.io import read_slices
from kidneyct.preprocess import Preprocessing

PREP = Preprocessing(image_size=64)


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
