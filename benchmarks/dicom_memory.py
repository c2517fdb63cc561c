"""The DICOM node's resident memory around single C-STOREs, for `benchmarks/dicom_node.py --hostile`: a node
in a subprocess, its peak RSS (Linux VmHWM, reset before each case through /proc/PID/clear_refs) compared
with its RSS before the case, while the instance is stored and until its series is answered:

- a 20 MB uncompressed CT slice (3162 x 3162 x 16 bit: within the 64 MiB decoded-size budget, stored and
  answered);
- a 4 MB deflated instance inflating to 3.9 GiB, the largest one element can claim (refused from the
  element's header);
- a 20 MB instance whose 20 MB are a private element (stored and answered);
- eight 20 MB CT slices at once, from eight associations.
"""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
from pathlib import Path

from dicom_node import GOOD_AE, echo, rss_mib
from load import free_port, stop

MIB = 1024 * 1024


def _instances(folder: Path) -> dict[str, list[Path]]:
    import numpy as np
    import pydicom
    from pydicom.uid import generate_uid

    from kidneyct.synthetic import bad_files as bad

    folder.mkdir(parents=True, exist_ok=True)
    side = 3162  # 3162^2 x 2 bytes: 20 MB

    def ct(name: str) -> Path:
        rng = np.random.default_rng(len(name))
        hu = rng.normal(40, 200, (side, side)).astype(np.float32)
        path = folder / f"{name}.dcm"
        path.write_bytes(bad.dicom_bytes(hu, SeriesInstanceUID=generate_uid(), SOPInstanceUID=generate_uid()))
        return path

    bomb = folder / "deflate-4gib.dcm"
    bomb.write_bytes(bad.deflated_dicom_bomb(4000))  # ~1 KiB per inflated MiB: 4 MB sent
    ds = pydicom.dcmread(io.BytesIO(bad.dicom_bytes(SeriesInstanceUID=generate_uid())))
    ds.add_new(0x00090010, "LO", "KIDNEYCT")
    ds.add_new(0x00091010, "OB", bytes(20 * MIB))
    private = folder / "private-20mb.dcm"
    ds.save_as(private, enforce_file_format=True)
    return {"ct_20mb": [ct("ct")], "deflated_4mb_inflating_to_3.9gib": [bomb], "private_element_20mb": [private],
            "eight_ct_20mb_at_once": [ct(f"ct-{n}") for n in range(8)]}


def _send(port: int, path: Path, statuses: list) -> None:
    from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage

    ae = AE(ae_title=GOOD_AE)
    for syntax in (ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian):
        ae.add_requested_context(CTImageStorage, syntax)
    assoc = ae.associate("127.0.0.1", port, ae_title="KIDNEYCT")
    statuses.append(getattr(assoc.send_c_store(path), "Status", None) if assoc.is_established else "refused")
    if assoc.is_established:
        assoc.release()


def _reset_peak(pid: int) -> None:
    with open(f"/proc/{pid}/clear_refs", "w") as handle:
        handle.write("5")


def memory_probe(checkpoint: Path, folder: Path, idle_seconds: float = 1.0) -> dict:
    """{case: {"status", "rss_mib_before", "peak_rise_mib_storing", "peak_rise_mib_until_answered"}}."""
    cases = _instances(folder / "instances")
    port, out, results = free_port(), folder / "node", {}
    with open(folder / "node.log", "wb") as log:
        node = subprocess.Popen([sys.executable, "-m", "kidneyct", "listen", "--checkpoint", str(checkpoint),
                                 "--port", str(port), "--out", str(out), "--idle-seconds", str(idle_seconds)],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while not echo(port):
                if node.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the memory probe's node did not answer C-ECHO within 120 s")
                time.sleep(0.5)
            for name, paths in cases.items():
                answered = len(list(out.glob("results/*/answer.json")))
                time.sleep(1.0)
                before = rss_mib(node.pid)
                _reset_peak(node.pid)
                statuses: list = []
                threads = [threading.Thread(target=_send, args=(port, path, statuses)) for path in paths]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                storing = rss_mib(node.pid, "VmHWM") - before
                stored = sum(status == 0 for status in statuses)
                deadline = time.monotonic() + 300
                while len(list(out.glob("results/*/answer.json"))) < answered + stored and time.monotonic() < deadline:
                    time.sleep(0.2)
                results[name] = {"statuses": [s if isinstance(s, str) or s is None else f"0x{s:04X}" for s in statuses],
                                 "rss_mib_before": round(before), "peak_rise_mib_storing": round(storing),
                                 "peak_rise_mib_until_answered": round(rss_mib(node.pid, "VmHWM") - before)}
        finally:
            stop(node, 30)
    return results
