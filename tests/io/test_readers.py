import gzip

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from kidneyct.io import ImageReadError, read_dicom, read_nifti, read_series, read_slices
from kidneyct.io.nifti import from_display
from kidneyct.synthetic.dicom_writer import write_ct_series


def _gradient(size=64):
    return np.tile(np.linspace(0, 255, size, dtype=np.float32), (size, 1))


def test_jpg_grey_and_rgb_read_as_unit_grey(tmp_path):
    grey = _gradient().astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.jpg", quality=95)
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "c.jpg", quality=95)
    for name in ("g.jpg", "c.jpg"):
        (ct,) = read_slices(tmp_path / name)
        assert not ct.hu and ct.pixels.shape == (64, 64)
        assert ct.pixels.dtype == np.float32 and 0 <= ct.pixels.min() and ct.pixels.max() <= 1
        np.testing.assert_allclose(ct.pixels, grey / 255.0, atol=0.03)


def test_rgb_jpg_is_read_through_its_luma_with_pillows_grey_levels(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (48, 48)).astype(np.uint8)
    colour = np.stack([grey, np.roll(grey, 5), grey // 2], -1)  # chroma everywhere: luma differs from L
    for name, pixels in (("grey.jpg", np.stack([grey] * 3, -1)), ("colour.jpg", colour)):
        Image.fromarray(pixels).save(tmp_path / name, quality=90)
        with Image.open(tmp_path / name) as image:
            assert image.mode == "RGB"
            expected = np.asarray(image.convert("L"), np.float32) / 255.0  # the path before issue 17
        (ct,) = read_slices(tmp_path / name)
        difference = np.abs(ct.pixels - expected) * 255
        if name == "grey.jpg":
            assert difference.max() < 1e-3  # identical grey levels
        else:  # saturated colours clamp on the way through RGB; luma does not
            assert difference.mean() < 0.5 and difference.max() < 10.5


def test_png_16bit_uses_full_range(tmp_path):
    values = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    (ct,) = read_slices(tmp_path / "deep.png")
    np.testing.assert_allclose(ct.pixels, values / 65535.0, atol=1e-6)


def test_rgba_png_composites_on_black(tmp_path):
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:16, :, 3] = 255  # top half opaque, bottom transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    (ct,) = read_slices(tmp_path / "a.png")
    assert ct.pixels[:16].mean() == pytest.approx(200 / 255, abs=0.01)
    assert ct.pixels[16:].max() == 0


def test_dicom_rescale_gives_hounsfield_units(tmp_path):
    hu = np.full((32, 32), -1000.0, np.float32)
    hu[8:24, 8:24] = 40.0
    hu[12:16, 12:16] = 1200.0
    (path,) = write_ct_series(tmp_path / "s", [hu], intercept=-1024.0, slope=1.0)
    ct = read_dicom(path)
    assert ct.hu and ct.modality == "CT"
    np.testing.assert_allclose(ct.pixels, hu)
    # A non-unit slope must be applied too.
    (path2,) = write_ct_series(tmp_path / "s2", [hu], intercept=-2048.0, slope=2.0)
    np.testing.assert_allclose(read_dicom(path2).pixels, hu)


def test_dicom_series_sorted_by_position_not_name(tmp_path):
    images = [np.full((16, 16), float(100 * i), np.float32) for i in range(5)]
    write_ct_series(tmp_path / "series", images, shuffle_files=True, seed=4)
    by_name = [float(read_dicom(p).pixels.mean()) for p in sorted((tmp_path / "series").iterdir())]
    assert by_name != sorted(by_name)  # file names alone would give the wrong order
    slices = read_series(tmp_path / "series")
    assert [float(s.pixels.mean()) for s in slices] == [0.0, 100.0, 200.0, 300.0, 400.0]
    assert [s.index for s in slices] == list(range(5))


@pytest.mark.filterwarnings("ignore:Expected explicit VR", "ignore:VR lookup failed")  # pydicom on the broken file
def test_dicom_series_read_with_skipped_loses_only_its_bad_files(tmp_path):
    images = [np.full((16, 16), float(100 * i), np.float32) for i in range(4)]
    files = sorted(write_ct_series(tmp_path / "series", images))
    files[1].write_bytes(b"not a DICOM file at all")  # left out of the series (as a readme file would be)
    files[2].write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00garbage")  # in the series, but no pixels
    with pytest.raises(ImageReadError, match="no pixel data"):
        read_series(tmp_path / "series")  # strict: a slice of the series does not go missing without a word
    skipped = []
    slices = read_series(tmp_path / "series", skipped)
    assert skipped == [(str(files[1]), "not a readable DICOM file"), (str(files[2]), "DICOM file has no pixel data")]
    assert [float(s.pixels.mean()) for s in slices] == [0.0, 300.0]
    assert [s.index for s in slices] == [1, 2]  # positions in the sorted series (the broken file sorts first)
    for file in (files[0], files[3]):
        file.write_bytes(files[2].read_bytes())
    with pytest.raises(ImageReadError, match="no readable slice") as raised:
        read_series(tmp_path / "series", [])
    assert len(raised.value.skipped) == 4


def test_dicom_other_modality_refused_with_reason(tmp_path):
    (path,) = write_ct_series(tmp_path / "mr", [np.zeros((16, 16), np.float32)], modality="MR")
    with pytest.raises(ImageReadError, match="modality is MR"):
        read_dicom(path)


def test_nifti_axial_slices_in_display_orientation(tmp_path):
    display = np.zeros((20, 30), np.float32)  # rows anterior->posterior, columns patient right->left
    display[2, 3] = 500.0
    volume = np.stack([from_display(display), from_display(display * 2)], axis=2)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), str(tmp_path / "v.nii.gz"))
    slices = read_nifti(tmp_path / "v.nii.gz")
    assert len(slices) == 2 and all(s.hu for s in slices)
    assert slices[0].pixels.shape == (20, 30)
    assert slices[0].pixels[2, 3] == 500.0 and slices[1].pixels[2, 3] == 1000.0


@pytest.mark.parametrize("content, reason", [
    (b"", "empty"),
    (b"this is not an image at all" * 10, "not a readable image"),
])
def test_bad_files_raise_read_error_naming_the_file(tmp_path, content, reason):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=reason) as info:
        read_slices(path)
    assert str(path) in str(info.value)


def test_truncated_jpeg_is_reported(tmp_path):
    Image.fromarray(_gradient(256).astype(np.uint8)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageReadError, match="corrupt or truncated"):
        read_slices(tmp_path / "cut.jpg")


def test_corrupt_gzip_nifti_is_reported(tmp_path):
    (tmp_path / "v.nii.gz").write_bytes(gzip.compress(b"x" * 500)[:40])
    with pytest.raises(ImageReadError, match="v.nii.gz"):
        read_slices(tmp_path / "v.nii.gz")


def test_read_limits_refuse_from_the_header_and_apply_per_block(tmp_path):
    from kidneyct.io.budget import MIB, current_budget, read_limits

    volume = np.zeros((64, 64, 40), np.int16)  # 320 KiB stored
    nib.save(nib.Nifti1Image(volume, np.eye(4)), str(tmp_path / "v.nii.gz"))
    assert len(read_slices(tmp_path / "v.nii.gz")) == 40
    with read_limits(256 * 1024):
        assert current_budget() == 256 * 1024
        with pytest.raises(ImageReadError, match="64x64x40 int16 would decode to 0.3 MiB, above the 0.2 MiB"):
            read_slices(tmp_path / "v.nii.gz")
        with read_limits(max_side=32), pytest.raises(ImageReadError, match="above the 32-pixel limit"):
            read_slices(tmp_path / "v.nii.gz")
    assert current_budget() == 512 * MIB  # the default again outside the block


def test_every_reader_returns_checked_slices(tmp_path):
    volume = np.zeros((16, 16, 2), np.float32)
    volume[1, 1, 1] = np.inf
    nib.save(nib.Nifti1Image(volume, np.eye(4)), str(tmp_path / "inf.nii"))
    with pytest.raises(ImageReadError, match="slice 1 holds non-finite values"):
        read_slices(tmp_path / "inf.nii")
    (path,) = write_ct_series(tmp_path / "s", [np.zeros((4, 40), np.float32)])
    with pytest.raises(ImageReadError, match="40x4 pixels is too small"):
        read_dicom(path)


def test_a_raster_claiming_more_pixels_than_its_bytes_hold_is_refused_undecoded(tmp_path):
    import io
    import struct

    from kidneyct.synthetic.fuzz import peak_rss_mib, reset_peak_rss

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(buffer, "JPEG")
    data, at = bytearray(buffer.getvalue()), 2
    while data[at + 1] != 0xC0:  # walk the markers to the frame header; claim 4000 x 4000 there
        at += 2 + struct.unpack(">H", data[at + 2:at + 4])[0]
    data[at + 5:at + 9] = struct.pack(">HH", 4000, 4000)
    (tmp_path / "claim.jpg").write_bytes(data)  # a few hundred bytes; decoders fill the rest in full size
    reset_peak_rss()
    baseline = peak_rss_mib()
    with pytest.raises(ImageReadError, match="4000x4000 pixels .* in a file of .* bytes.*not decoded"):
        read_slices(tmp_path / "claim.jpg")
    assert peak_rss_mib() - baseline < 8


def test_a_dicom_without_modality_is_read_as_ct_with_a_warning(tmp_path):
    import pydicom

    from kidneyct.io.dicom import NO_MODALITY

    (path,) = write_ct_series(tmp_path, [np.full((32, 32), 40.0, np.float32)])
    ds = pydicom.dcmread(path)
    del ds.Modality
    ds.save_as(path)
    (ct_slice,) = read_slices(path)
    assert ct_slice.hu and ct_slice.warnings == (NO_MODALITY,)
