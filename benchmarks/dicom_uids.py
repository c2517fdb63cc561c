"""UIDs from the network against `kidneyct listen`: N C-STOREs whose Study, Series and SOP Instance UIDs are
random text (any characters, up to 300), digits and dots in any arrangement, valid UIDs, and paths (`.`,
`..`, `/`, `../../kidneyct-escape-<run>`, absolute paths into this run's sandbox and /tmp). The node runs in
a subprocess with --out inside a sandbox folder; afterwards every file under the sandbox, /tmp's escape
names and the sandbox's parents are checked: none may lie outside --out, and every stored instance must
sit in the folder of its own series (none merged). Prints JSON.

    python benchmarks/dicom_uids.py --instances 100000 --out benchmarks/results/dicom-uids-cpu.json
    python benchmarks/dicom_uids.py --instances 2000            # a quick look

Without --checkpoint a tiny seed-cnn is trained first (the node needs one to start; it answers nothing here:
--idle-seconds 3600).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from dicom_node import echo, tiny_checkpoint  # benchmarks/ is the script's folder, first on sys.path
from load import free_port, stop

ALPHABET = "0123456789....//\\\0 \t\n\r-_abcXYZéü中文\U0001f600\udcff"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="a kidneyct .pt (default: train a tiny one)")
    p.add_argument("--instances", type=int, default=100_000)
    p.add_argument("--per-association", type=int, default=200, help="C-STOREs per association")
    p.add_argument("--senders", type=int, default=4, help="concurrent associations (the node allows 8 per address)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also write the JSON here")
    return p.parse_args(argv)


def fuzzed_uid(rng: random.Random, escape: str) -> str:
    """One UID as a hostile or broken sender might send it."""
    kind = rng.random()
    if kind < 0.3:
        return "".join(rng.choice(ALPHABET) for _ in range(rng.choice([0, 1, 2, 5, 20, 64, 65, 120, 300])))
    if kind < 0.5:
        return "".join(rng.choice("0123456789.") for _ in range(rng.randint(1, 70)))
    if kind < 0.6:
        return rng.choice([".", "..", "/", "../..", "\0", "", f"../../{escape}", f"/tmp/{escape}",
                           f"1.2/../../{escape}", f"..\\..\\{escape}", "1" * 300])
    return f"1.2.826.0.1.3680043.10.{rng.randint(1, 10**6)}.{rng.randint(1, 10**9)}"  # valid


class Encoder:
    """Instances as bytes, fast: a small CT slice encoded once (implicit VR little endian) in three parts,
    the fuzzed UIDs' raw bytes put between them in tag order, behind file meta naming the command's UID."""

    def __init__(self):
        import pydicom
        from pynetdicom.dsutils import encode

        from kidneyct.synthetic import bad_files as bad

        template = pydicom.dcmread(io.BytesIO(bad.dicom_bytes()))
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            del template[keyword]
        cuts = [0, 0x00080018, 0x0020000D, 0xFFFFFFFF]
        self.parts = []
        for low, high in zip(cuts, cuts[1:]):
            part = pydicom.Dataset()
            for element in template:
                if low <= element.tag < high:
                    part.add(element)
            self.parts.append(encode(part, True, True))

    @staticmethod
    def element(tag: int, text: str) -> bytes:
        value = text.encode("utf-8", "surrogatepass")
        value += b"\0" * (len(value) % 2)
        return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)) + value

    def file(self, path: Path, study: str, series: str, sop: str, command_uid: str) -> Path:
        import pydicom
        from pydicom.filewriter import write_file_meta_info
        from pydicom.uid import ImplicitVRLittleEndian

        meta = pydicom.dataset.FileMetaDataset()
        meta.MediaStorageSOPClassUID = pydicom.uid.CTImageStorage
        meta.MediaStorageSOPInstanceUID = command_uid
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
        with open(path, "wb") as handle:
            handle.write(b"\0" * 128 + b"DICM")
            write_file_meta_info(pydicom.filebase.DicomFileLike(handle), meta)
            handle.write(self.parts[0] + self.element(0x00080018, sop) + self.parts[1]
                         + self.element(0x0020000D, study) + self.element(0x0020000E, series) + self.parts[2])
        return path


def command_uid(sop: str) -> str:
    """The C-STORE request's UID: the fuzzed one where pynetdicom can send it (1-64 printable ASCII, one value,
    no padding to strip), else a valid one (the dataset's then differs, and the node must refuse that)."""
    from pydicom.uid import generate_uid

    sendable = 0 < len(sop) <= 64 and sop.isascii() and sop.isprintable() and "\\" not in sop and sop == sop.strip()
    return sop if sendable else generate_uid()


def sender(port: int, count: int, args, folder: Path, escape: str, seed: int, statuses: Counter) -> None:
    """One sending thread: `count` fuzzed instances over associations of `args.per_association`."""
    import pynetdicom
    from pydicom.uid import ImplicitVRLittleEndian
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage

    pynetdicom._config.STORE_SEND_CHUNKED_DATASET = True  # files as stored: the UIDs' bytes go as they are
    encoder, rng, assoc, sent = Encoder(), random.Random(seed), None, 0
    ae = AE(ae_title="FUZZER")
    ae.dimse_timeout = 10  # an answer that does not come is counted and the run goes on
    ae.add_requested_context(CTImageStorage, ImplicitVRLittleEndian)
    path = folder / f"instance-{seed}.dcm"
    while sent < count:
        if assoc is None or not assoc.is_established or sent % args.per_association == 0:
            if assoc is not None and assoc.is_established:
                assoc.release()
            assoc = ae.associate("127.0.0.1", port, ae_title="KIDNEYCT")
            if not assoc.is_established:
                statuses["association refused"] += 1
                time.sleep(0.1)
                continue
        sop = fuzzed_uid(rng, escape)
        try:
            encoder.file(path, fuzzed_uid(rng, escape), fuzzed_uid(rng, escape), sop, command_uid(sop))
            status = getattr(assoc.send_c_store(path), "Status", None)
        except (RuntimeError, ValueError, AttributeError) as error:  # the association ended under it
            status = f"client {type(error).__name__}"
        statuses["none (association ended)" if status is None else
                 status if isinstance(status, str) else f"0x{status:04X}"] += 1
        sent += 1
    if assoc is not None and assoc.is_established:
        assoc.release()


def send_all(port: int, args, folder: Path, escape: str) -> Counter:
    shares = [args.instances // args.senders + (n < args.instances % args.senders) for n in range(args.senders)]
    counts = [Counter() for _ in shares]  # one per thread, summed at the end
    threads = [threading.Thread(target=sender, args=(port, share, args, folder, escape, args.seed * 1000 + n, count))
               for n, (share, count) in enumerate(zip(shares, counts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts, Counter())


def audit(sandbox: Path, out: Path, escape: str) -> dict:
    """Files outside --out, escape names anywhere they could land, and series folders holding another's instance."""
    import pydicom

    from kidneyct.io.dicom_header import series_identity

    outside = [str(p) for p in sandbox.rglob("*") if p.is_file() and not p.resolve().is_relative_to(out.resolve())
               and p.parent.name != "sent"]
    for folder in (Path("/tmp"), *list(sandbox.parents)[:3]):
        outside += [str(p) for p in folder.glob(f"*{escape}*")]
    merged, stored, folders = 0, 0, set()
    for path in (out / "incoming").rglob("*.dcm"):
        header = pydicom.dcmread(path, stop_before_pixels=True)
        header.SOPInstanceUID = header.file_meta.MediaStorageSOPInstanceUID
        stored += 1
        folders.add(path.parent.name)
        merged += series_identity(header)[1] != path.parent.name or path.stem != header.SOPInstanceUID
    return {"files_outside_out": len(outside), "outside_examples": outside[:5], "instances_stored": stored,
            "series_folders": len(folders), "instances_in_another_series_folder": merged}


def main(argv=None) -> dict:
    args = parse_args(argv)
    import warnings

    warnings.simplefilter("ignore")  # pydicom warns of every invalid UID it reads: that is the point
    with tempfile.TemporaryDirectory(prefix="kidneyct-dicom-uids-") as folder:
        sandbox = Path(folder) / "sandbox"
        (sandbox / "sent").mkdir(parents=True)
        checkpoint = Path(args.checkpoint) if args.checkpoint else tiny_checkpoint(Path(folder) / "model")
        escape, port, out = f"kidneyct-escape-{os.getpid()}", free_port(), sandbox / "node"
        with open(Path(folder) / "node.log", "wb") as log:
            node = subprocess.Popen([sys.executable, "-m", "kidneyct", "listen", "--checkpoint", str(checkpoint),
                                     "--port", str(port), "--out", str(out), "--idle-seconds", "3600"],
                                    stdout=log, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + 120
                while not echo(port):
                    if node.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("the node did not answer C-ECHO within 120 s")
                    time.sleep(0.5)
                started = time.monotonic()
                statuses = send_all(port, args, sandbox / "sent", escape)
                seconds = time.monotonic() - started
                alive = node.poll() is None and echo(port)
            finally:
                stop(node, 30)
        result = {"instances": args.instances, "seed": args.seed, "statuses": dict(statuses),
                  "node_alive_at_end": alive, "seconds": round(seconds, 1),
                  "instances_per_second": round(args.instances / seconds, 1), **audit(sandbox, out, escape),
                  "cpu_count": os.cpu_count(), "load_average_1min_at_end": round(os.getloadavg()[0], 2)}
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
