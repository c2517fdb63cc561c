"""DICOM as PACS exports send it: UID-named and suffix-less files, no preamble, several series in one folder,
a DICOMDIR, and the real UID-named series."""

from pathlib import Path

import numpy as np
import pydicom
import pytest

from kidneyct.io import expand_inputs, input_kind, read_item
from kidneyct.synthetic.dicom_writer import write_ct_series


def _series(folder: Path, patient: str, n: int = 3) -> list[Path]:
    images = [np.full((16, 16), 10.0 * i, np.float32) for i in range(n)]
    return write_ct_series(folder, images, patient_id=patient, shuffle_files=True)


def _uid_named(paths: list[Path], target: Path) -> list[Path]:
    """Rename each file as PACS exports do: CT.<SOPInstanceUID>, no image suffix."""
    target.mkdir(parents=True, exist_ok=True)
    return [path.rename(target / f"CT.{pydicom.dcmread(path).SOPInstanceUID}") for path in paths]


def _read_all(items):
    return {item.name: read_item(item) for item in items}


def test_a_folder_of_uid_named_files_is_one_series_in_anatomical_order(tmp_path):
    named = _uid_named(_series(tmp_path / "written", "P1", 4), tmp_path / "export")
    assert all(input_kind(p) == "dicom" for p in named) and named[0].suffix.lstrip(".").isdigit()
    items, skipped = expand_inputs([tmp_path / "export"])
    assert not skipped and [(i.kind, i.name) for i in items] == [("series", str(tmp_path / "export"))]
    slices, lost = read_item(items[0])
    assert not lost and [float(s.pixels.mean()) for s in slices] == pytest.approx([0, 10, 20, 30], abs=0.5)


def test_suffixless_files_and_dicom_without_preamble_are_read_by_content(tmp_path):
    first, second, third = _series(tmp_path / "written", "P1")
    folder = tmp_path / "export"
    folder.mkdir()
    first.rename(folder / "IM0001")  # no suffix, with preamble
    (folder / "IM0002").write_bytes(second.read_bytes()[132:])  # file meta but no preamble and marker
    ds = pydicom.dcmread(third)
    del ds.file_meta
    ds.preamble = None  # neither preamble nor file meta: implicit VR little endian from the first byte
    pydicom.dcmwrite(folder / "IM0003", ds, implicit_vr=True, little_endian=True, enforce_file_format=False)
    (folder / "README").write_text("exported by a PACS")
    assert [input_kind(folder / n) for n in ("IM0001", "IM0002", "IM0003", "README")] == ["dicom"] * 3 + [None]
    items, skipped = expand_inputs([folder])
    assert not skipped and len(items) == 1
    slices, lost = read_item(items[0])
    assert not lost and len(slices) == 3 and all(s.hu and s.modality == "CT" for s in slices)


def test_several_series_in_one_folder_are_several_studies_beside_images(tmp_path, study_tree):
    root, _, _ = study_tree
    mixed = tmp_path / "mixed"
    _uid_named(_series(tmp_path / "a", "PATIENT-A", 3), mixed)
    _uid_named(_series(tmp_path / "b", "PATIENT-B", 5), mixed)
    png = next((root / "png" / "Tumor").glob("*- (1).png"))
    (mixed / "slice.png").write_bytes(png.read_bytes())
    (mixed / "notes.txt").write_text("not an image")
    items, skipped = expand_inputs([mixed])
    assert not skipped
    series = [i for i in items if i.kind == "series"]
    assert [i.kind for i in items].count("image") == 1 and len(series) == 2
    assert len({i.name for i in series}) == 2 and all("[series " in i.name for i in series)
    sizes = sorted(len(read_item(i)[0]) for i in series)
    assert sizes == [3, 5]
    uids = [{pydicom.dcmread(s.source).SeriesInstanceUID for s in read_item(i)[0]} for i in series]
    assert all(len(u) == 1 for u in uids) and uids[0] != uids[1]  # no slice of one series in the other


def test_a_dicomdir_is_followed_to_its_series(tmp_path):
    from pydicom.fileset import FileSet

    fileset = FileSet()
    for patient, n in (("P1", 3), ("P2", 2)):
        for path in _series(tmp_path / "written" / patient, patient, n):
            ds = pydicom.dcmread(path)
            # What DICOMDIR records need and the phantom writer leaves out.
            ds.StudyDate, ds.StudyTime, ds.StudyID, ds.SeriesNumber = "20240101", "120000", "1", 1
            fileset.add(ds)
    fileset.write(tmp_path / "media")
    assert (tmp_path / "media" / "DICOMDIR").is_file()
    for given in (tmp_path / "media", tmp_path / "media" / "DICOMDIR"):
        items, skipped = expand_inputs([given])
        assert not skipped and [i.kind for i in items] == ["series", "series"]  # its files are not read twice
        assert sorted(len(read_item(i)[0]) for i in items) == [2, 3]


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom's words about the deliberately broken index
def test_an_unreadable_dicomdir_is_reported_and_the_folder_still_walked(tmp_path):
    folder = tmp_path / "media"
    _series(folder, "P1")
    (folder / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00broken")
    items, skipped = expand_inputs([folder])
    assert [p for p, _ in skipped] == [str(folder / "DICOMDIR")] and "DICOMDIR" in skipped[0][1]
    assert len(items) == 1 and len(read_item(items[0])[0]) == 3


def test_the_real_uid_named_series_reads_as_one_series_of_20_slices(real_examples):
    items, skipped = expand_inputs([real_examples / "upper-abdomen-dicom-no-kidney"])
    assert not skipped and len(items) == 1 and items[0].kind == "series"
    slices, lost = read_item(items[0])
    assert not lost and len(slices) == 20 and [s.index for s in slices] == list(range(20))
