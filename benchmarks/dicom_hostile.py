"""Hostile peers for `benchmarks/dicom_node.py --hostile`, run as a process of their own (as other machines
would be: they must not take the good senders' CPU time in the benchmark's process), each a thread looping
until the process gets SIGTERM, each from its own loopback address (127.0.0.x: another machine, as the node
sees it):

- bombs (127.0.0.2): a deflated instance inflating to 1 GiB (~1 MB sent) and one claiming 60000 x 60000
  pixels every 2 s, one of 70 MB (above the 64 MB instance limit) every 30 s;
- path-like UIDs (127.0.0.3): `.`, `..`, `../../x`, `/etc/...`, NUL, 300 characters, in every UID;
- stalls (127.0.0.4): associations opened and left silent, connections that never ask for one, PDUs
  stopped halfway;
- aborts (127.0.0.5): associations aborted right after they open, and connections cut in the middle of an
  instance;
- floods (127.0.0.6 - 127.0.0.9): connections opened and closed as fast as they go, associations from an
  AE title the node does not allow, C-ECHO storms.

The allowed hostile AE title is MODALITY (from any address); the good senders call as PACS from 127.0.0.1.

    python benchmarks/dicom_hostile.py --port PORT --folder DIR --counts counts.json   # until SIGTERM
"""

from __future__ import annotations

import io
import random
import socket
import struct
import threading
import time
from collections import Counter
from pathlib import Path

HOSTILE_AE, INTRUDER_AE = "MODALITY", "INTRUDER"
PATH_UIDS = [".", "..", "/", "../..", "../../x", "/etc/kidneyct-x", "1.2/../../x", "\0", "", "1" * 300, "..\\..",
             "é/ü", "1.2.3 /"]


class Hostile:
    """The hostile peers against a node on `port`; `counts` says what each did and how the node answered."""

    def __init__(self, port: int, folder: Path):
        self.port, self.folder = port, folder
        self.stop_event = threading.Event()
        self.counts: dict[str, Counter] = {}
        self.threads: list[threading.Thread] = []
        folder.mkdir(parents=True, exist_ok=True)
        self.files = self._bombs()

    def _bombs(self) -> dict[str, Path]:
        import numpy as np
        import pydicom

        from kidneyct.synthetic import bad_files as bad

        files = {"deflate-1gib": bad.deflated_dicom_bomb(1024),
                 "claims-60000px": bad.dicom_bytes(np.zeros((32, 32), np.float32), Rows=60000, Columns=60000),
                 "70mb": bad.dicom_bytes(np.zeros((32, 32), np.float32))}
        ds = pydicom.dcmread(io.BytesIO(files["70mb"]))
        ds.add_new(0x00091010, "OB", bytes(70 * 1024 * 1024))  # a private element: 70 MB on the wire
        ds.add_new(0x00090010, "LO", "KIDNEYCT")
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        files["70mb"] = buffer.getvalue()
        paths = {}
        for name, data in files.items():
            paths[name] = self.folder / f"{name}.dcm"
            paths[name].write_bytes(data)
        return paths

    def start(self) -> "Hostile":
        for name, work, source in (("bombs", self._send_bombs, "127.0.0.2"), ("path_uids", self._send_paths, "127.0.0.3"),
                                   ("stalls", self._stall, "127.0.0.4"), ("aborts", self._abort, "127.0.0.5"),
                                   ("floods", self._flood, "127.0.0.6")):
            self.counts[name] = Counter()
            thread = threading.Thread(target=self._loop, args=(work, source, self.counts[name]), daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def stop(self) -> dict:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(60)
        return {name: dict(counts) for name, counts in self.counts.items()}

    def _loop(self, work, source: str, counts: Counter) -> None:
        while not self.stop_event.is_set():
            try:
                work(source, counts)
            except Exception as error:  # noqa: BLE001 - a hostile peer shrugs and tries again
                counts[f"error {type(error).__name__}"] += 1
                self.stop_event.wait(0.5)

    def _associate(self, source: str, title: str = HOSTILE_AE, verification: bool = False):
        from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
        from pynetdicom import AE
        from pynetdicom.sop_class import CTImageStorage, Verification

        ae = AE(ae_title=title)
        ae.acse_timeout = ae.network_timeout = 30
        if verification:
            ae.add_requested_context(Verification)
        for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian):
            ae.add_requested_context(CTImageStorage, syntax)
        return ae.associate("127.0.0.1", self.port, ae_title="KIDNEYCT", bind_address=(source, 0))

    @staticmethod
    def _status(assoc, path: Path) -> str:
        try:
            status = getattr(assoc.send_c_store(path), "Status", None)
        except (RuntimeError, ValueError, AttributeError) as error:
            return f"client {type(error).__name__}"
        return "no answer" if status is None else f"0x{status:04X}"

    def _send_bombs(self, source: str, counts: Counter) -> None:
        assoc = self._associate(source)
        if not assoc.is_established:
            counts["association refused"] += 1
            self.stop_event.wait(1.0)
            return
        large = time.monotonic() - getattr(self, "_last_large", 0) > 30
        for name, path in self.files.items():
            if name != "70mb" or large:
                counts[f"{name} {self._status(assoc, path)}"] += 1
        if large:
            self._last_large = time.monotonic()
        if assoc.is_established:
            assoc.release()
        self.stop_event.wait(2.0)

    def _send_paths(self, source: str, counts: Counter) -> None:
        from dicom_uids import Encoder, command_uid

        encoder = getattr(self, "_encoder", None) or Encoder()
        self._encoder = encoder
        assoc = self._associate(source)
        if not assoc.is_established:
            counts["association refused"] += 1
            self.stop_event.wait(1.0)
            return
        rng = random.Random()
        for _ in range(20):
            uids = [rng.choice(PATH_UIDS) for _ in range(3)]
            path = encoder.file(self.folder / "path-uid.dcm", uids[0], uids[1], uids[2], command_uid(uids[2]))
            counts[f"path UID {self._status(assoc, path)}"] += 1
        if assoc.is_established:
            assoc.release()
        self.stop_event.wait(1.0)

    def _stall(self, source: str, counts: Counter) -> None:
        held = []
        for _ in range(3):  # associations held open and silent: ended by the node's idle timeout
            assoc = self._associate(source)
            counts["silent association" if assoc.is_established else "association refused"] += 1
            held.append(assoc)
        sockets = []
        for _ in range(3):  # connections that never ask for an association: ended by the ACSE timeout
            sock = socket.socket()
            sock.bind((source, 0))
            sock.connect(("127.0.0.1", self.port))
            sockets.append(sock)
        sock = socket.socket()  # half a PDU, then nothing: ended by the stall timeout
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", self.port))
        sock.sendall(struct.pack(">BBL", 0x01, 0, 200) + b"\0" * 50)
        sockets.append(sock)
        counts["silent connections"] += 4
        self.stop_event.wait(40)  # beyond the node's 30 s idle timeout
        for sock in sockets:
            sock.close()
        for assoc in held:
            if assoc.is_established:
                assoc.abort()

    def _abort(self, source: str, counts: Counter) -> None:
        assoc = self._associate(source)
        if assoc.is_established:
            assoc.abort()  # A-ABORT straight away
            counts["aborted association"] += 1
        assoc = self._associate(source)
        if assoc.is_established:  # start an instance, then cut the connection in its middle
            raw = assoc.dul.socket.socket
            item = struct.pack(">LBB", 16000 + 2, 1, 0x00) + b"\0" * 16000  # dataset fragment, not the last
            raw.sendall(struct.pack(">BBL", 0x04, 0, len(item)) + item[:8000])
            raw.shutdown(socket.SHUT_RDWR)
            counts["cut mid-instance"] += 1
        self.stop_event.wait(1.0)

    def _flood(self, source: str, counts: Counter) -> None:
        sources = ["127.0.0.6", "127.0.0.7", "127.0.0.8", "127.0.0.9"]
        for address in sources:  # connect and close at once
            try:
                with socket.create_connection(("127.0.0.1", self.port), source_address=(address, 0), timeout=2):
                    counts["connect-close"] += 1
            except OSError:
                counts["connect refused"] += 1
        assoc = self._associate(sources[1], INTRUDER_AE)  # not allowed: rejected at negotiation
        counts["intruder rejected" if assoc.is_rejected else "intruder established" if assoc.is_established
               else "intruder aborted"] += 1
        if assoc.is_established:
            assoc.release()
        assoc = self._associate(sources[2], verification=True)
        if assoc.is_established:
            for _ in range(10):
                counts["echo " + str(getattr(assoc.send_c_echo(), "Status", None))] += 1
            assoc.release()
        self.stop_event.wait(0.5)


def main(argv=None) -> None:
    import argparse
    import json
    import signal
    import warnings

    import pynetdicom

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--folder", required=True, help="where the bombs are written")
    p.add_argument("--counts", required=True, help="the JSON of what each peer did, written at SIGTERM")
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    pynetdicom._config.STORE_SEND_CHUNKED_DATASET = True  # files as stored: the UIDs' bytes go as they are
    peers = Hostile(args.port, Path(args.folder)).start()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    while not stopped.wait(0.5):
        pass
    Path(args.counts).write_text(json.dumps(peers.stop(), indent=2))


if __name__ == "__main__":
    main()
