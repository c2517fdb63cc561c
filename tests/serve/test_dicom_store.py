"""What a sender can make the DICOM node store: UIDs from the network never name a path outside --out nor
merge two series, and an instance over a limit is answered Out of Resources while the node goes on."""

from __future__ import annotations

import copy
import io
import sys

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydicom.dataelem import DataElement
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import ImplicitVRLittleEndian, generate_uid

from kidneyct.io.dicom_header import is_valid_uid, series_identity
from kidneyct.serve.dicom_node import NodeLimits
from kidneyct.serve.dicom_store import INVALID_UID, OUT_OF_RESOURCES, SUCCESS
from kidneyct.synthetic import bad_files as bad
from kidneyct.synthetic.fuzz import peak_rss_mib, reset_peak_rss

pytest.importorskip("pynetdicom")
from pynetdicom.dsutils import encode  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # the fuzzed UIDs, as pydicom reads them
UID_TAGS = {"study": 0x0020000D, "series": 0x0020000E, "sop": 0x00080018}
# Anything at all, digits and dots in any arrangement (valid UIDs among them), and the paths of the issue.
UID_TEXT = st.one_of(st.text(max_size=300), st.from_regex(r"\A[0-9.]{0,70}\Z"),
                     st.sampled_from([".", "..", "/", "../..", "../../x", "/etc", "1.2/../..", "..\\..", "\0", "1" * 300]))


def _fuzzed_file(folder, template: pydicom.Dataset, uids: dict[str, str], command_uid: str, name: str):
    """A file as a router would send it: file meta naming `command_uid`, then the dataset (implicit VR) with
    each UID's text as raw bytes, whatever they are."""
    ds = copy.deepcopy(template)
    for key, text in uids.items():
        ds.add(DataElement(UID_TAGS[key], "OB", text.encode("utf-8", "surrogatepass")))  # raw bytes, unchecked
    meta = pydicom.dataset.FileMetaDataset()
    meta.MediaStorageSOPClassUID = pydicom.uid.CTImageStorage
    meta.MediaStorageSOPInstanceUID = command_uid
    meta.TransferSyntaxUID = ImplicitVRLittleEndian
    path = folder / name
    with open(path, "wb") as handle:
        handle.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(pydicom.filebase.DicomFileLike(handle), meta)
        handle.write(encode(ds, True, True))  # implicit VR: the receiver reads the UIDs' bytes as UI
    return path


@pytest.fixture
def template() -> pydicom.Dataset:
    """A small CT slice without its three UIDs."""
    ds = pydicom.dcmread(io.BytesIO(bad.dicom_bytes()))
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        del ds[keyword]
    return ds


@pytest.fixture
def storing_node(start_node):
    """One node for every example of a Hypothesis test (function-scoped fixtures are made once per test)."""
    return start_node(idle_seconds=3600)  # stores only: no answer is made


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(study=UID_TEXT, series=UID_TEXT, sop=UID_TEXT)
@example(study="../../escaped", series="..", sop="/tmp/escaped")
@example(study="1.2.3", series=".", sop="1.2.3.4")
@example(study="1.2.3", series="1.2.3.5\0/..", sop="1.2.3.6")
def test_uids_from_the_network_never_name_a_path_outside_out(storing_node, send, template, tmp_path, study, series,
                                                             sop):
    node = storing_node
    # the command carries the fuzzed UID where pynetdicom can send one (1-64 printable ASCII, one value)
    command_uid = sop if 0 < len(sop) <= 64 and sop.isascii() and sop.isprintable() and "\\" not in sop \
        else generate_uid()
    sent = tmp_path / "sent"
    sent.mkdir(exist_ok=True)
    path = _fuzzed_file(sent, template, {"study": study, "series": series, "sop": sop}, command_uid, "instance.dcm")
    (status,) = send(node.port, [path], raw=True)
    out = node.settings.out.resolve()
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and not p.resolve().is_relative_to(out)
               and p.parent != sent]
    assert not outside and not (tmp_path.parent / "escaped").exists()
    if status != SUCCESS:
        assert status in (INVALID_UID, 0xC210)
        return
    header = pydicom.dcmread(path, stop_before_pixels=True)
    header.SOPInstanceUID = command_uid
    series_folder = out / "incoming" / series_identity(header)[1]
    assert is_valid_uid(command_uid) and (series_folder / f"{command_uid}.dcm").is_file()
    for stored in series_folder.glob("*.dcm"):  # every instance in the folder is of that series: none merge
        stored_header = pydicom.dcmread(stored, stop_before_pixels=True)
        stored_header.SOPInstanceUID = stored_header.file_meta.MediaStorageSOPInstanceUID
        assert series_identity(stored_header)[1] == series_folder.name


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak RSS through /proc (Linux)")
def test_instances_over_a_limit_get_out_of_resources_and_the_node_goes_on(start_node, send, tmp_path):
    limits = NodeLimits(max_instance_bytes=400_000, max_series_bytes=1_000_000, max_association_bytes=2_500_000)
    node = start_node(idle_seconds=3600, limits=limits)
    folder = tmp_path / "files"
    folder.mkdir()
    series_uid, study_uid = generate_uid(), generate_uid()

    def instance(side: int = 32, **changes):
        path = folder / f"{generate_uid()}.dcm"
        changes = {"StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid, "SOPInstanceUID": generate_uid(),
                   **changes}
        path.write_bytes(bad.dicom_bytes(np.zeros((side, side), np.float32), **changes))
        return path

    first = [instance(), instance(512), instance(), instance(Rows=8200, Columns=8200)]  # 512 px: 524 KB
    bomb = folder / "bomb.dcm"  # ~1 MB deflated, inflating to 1 GiB
    bomb.write_bytes(bad.deflated_dicom_bomb(1024))
    reset_peak_rss()
    baseline = peak_rss_mib()
    statuses = send(node.port, [first[0], first[1], bomb, first[2], first[3]], raw=True)
    assert peak_rss_mib() - baseline < 64  # nothing was inflated, decoded or held whole
    # above the instance limit; beyond the decoded-size budget; beyond the side limit (from the header alone)
    assert statuses == [SUCCESS, OUT_OF_RESOURCES, OUT_OF_RESOURCES, SUCCESS, OUT_OF_RESOURCES]
    # the series may hold 1 MB decoded: 2 small slices and five of 300 px (180 KB each), not a sixth
    assert send(node.port, [instance(300) for _ in range(6)], raw=True) == [SUCCESS] * 5 + [OUT_OF_RESOURCES]
    # an association may send 2.5 MB in all (245 KB slices, each its own series): then Out of Resources
    parts = send(node.port, [instance(350, SeriesInstanceUID=generate_uid()) for _ in range(12)], raw=True)
    assert parts == [SUCCESS] * 10 + [OUT_OF_RESOURCES] * 2
    assert send(node.port, [instance()], raw=True) == [SUCCESS]  # a new association is served again
    stored = list((node.settings.out / "incoming").rglob("*.dcm"))
    assert len(stored) == 2 + 5 + 10 + 1 and max(p.stat().st_size for p in stored) < 400_000
