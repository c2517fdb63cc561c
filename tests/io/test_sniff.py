import io

import numpy as np
import pytest
from PIL import Image

from kidneyct.io import content_format, file_format, file_kind, looks_like_dicom
from kidneyct.io.sniff import HEADER_BYTES
from kidneyct.synthetic.dicom_writer import write_ct_series


def _encoded(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("name, fmt, kind", [
    ("a.png", "png", "raster"), ("A.JPG", "jpeg", "raster"), ("b.jpeg", "jpeg", "raster"),
    ("IM-0001.dcm", "dicom", "dicom"), ("x.DICOM", "dicom", "dicom"), ("ct.nii", "nifti", "nifti"),
    ("ct.nii.gz", "nifti", "nifti"), ("notes.txt", None, None), ("IM0001", None, None), ("archive.gz", None, None),
])
def test_names_give_the_format_and_the_reader(name, fmt, kind):
    assert file_format(name) == fmt and file_kind(name) == kind


def test_content_gives_the_format_whatever_the_name(tmp_path):
    (dicom,) = write_ct_series(tmp_path / "s", [np.zeros((8, 8), np.float32)])
    nifti = bytearray(HEADER_BYTES)
    nifti[344:348] = b"n+1\0"
    assert content_format(_encoded("PNG")) == "png"
    assert content_format(_encoded("JPEG")) == "jpeg"
    assert content_format(dicom.read_bytes()[:HEADER_BYTES]) == "dicom"
    assert content_format(bytes(nifti)) == "nifti"
    assert content_format(b"\x1f\x8b" + bytes(400)) == "nifti"  # gzip: the one compressed format read
    assert content_format(b"hello" * 100) is None
    suffixless = dicom.rename(tmp_path / "IM0001")
    assert looks_like_dicom(suffixless) and not looks_like_dicom(tmp_path / "missing")


def test_sniff_format_decides_by_content_and_names_foreign_formats(tmp_path):
    from kidneyct.errors import UnsupportedFormat
    from kidneyct.io.sniff import sniff_format

    for fmt, name in (("TIFF", "scan.png"), ("GIF", "x.dcm"), ("BMP", "b.jpg"), ("WEBP", "w.nii")):
        path = tmp_path / name
        path.write_bytes(_encoded(fmt))
        with pytest.raises(UnsupportedFormat, match=f"{'WebP' if fmt == 'WEBP' else fmt} content"):
            sniff_format(path)
    (tmp_path / "slice.dcm").write_bytes(_encoded("PNG"))
    assert sniff_format(tmp_path / "slice.dcm") == "png"  # the content, not the name
    (tmp_path / "bare.dcm").write_bytes(b"\x08\x00\x05\x00CS" + bytes(400))  # DICOM without preamble
    assert sniff_format(tmp_path / "bare.dcm") == "dicom"  # no magic: the name is the hint
    assert sniff_format("upload.txt", head=b"plain text") is None
