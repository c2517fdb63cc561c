"""Load test of the DICOM node on loopback: `kidneyct listen` in a subprocess, N concurrent senders each
C-STOREing S phantom CT series of K slices (one association per series), the node forwarding each SR and
its key images to a receiving SCP in this process. Prints JSON: series answered, instances lost, seconds
from a series' last instance to its SR.

    OMP_NUM_THREADS=2 python benchmarks/dicom_node.py --senders 8 --series 20 --slices 40
    python benchmarks/dicom_node.py --quick                   # 2 senders x 3 series x 10 slices
    python benchmarks/dicom_node.py --hostile --slices 8 --out benchmarks/results/dicom-node-hostile-cpu.json

--hostile runs the same senders twice, alone and beside hostile peers (`dicom_hostile.py`: bombs, path-like
UIDs, stalled and aborted associations, floods), and compares the good series' answers; before that it
measures the node's resident memory around single C-STOREs of up to 20 MB and 8 of them at once. Good
senders call as PACS from 127.0.0.1 (--allow-ae PACS@127.0.0.1), the hostile ones as MODALITY (allowed
from anywhere) or INTRUDER (not allowed) from 127.0.0.2-9.

Without --checkpoint a tiny seed-cnn (96 px, 2 epochs on 200 phantom slices) is trained first; the
numbers are about the node, not about the model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from load import free_port, stop  # benchmarks/ is the script's folder, first on sys.path


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="a kidneyct .pt (default: train a tiny one)")
    p.add_argument("--senders", type=int, default=8, help="concurrent senders (max 64)")
    p.add_argument("--series", type=int, default=20, help="series per sender")
    p.add_argument("--slices", type=int, default=40, help="slices per series")
    p.add_argument("--size", type=int, default=128, help="phantom slice side in pixels")
    p.add_argument("--idle-seconds", type=float, default=2.0, help="the node's --idle-seconds")
    p.add_argument("--max-seconds", type=float, default=1800, help="give up waiting for SRs after this long")
    p.add_argument("--quick", action="store_true", help="2 senders x 3 series x 10 slices")
    p.add_argument("--hostile", action="store_true", help="also run beside hostile peers, and probe memory")
    p.add_argument("--out", default=None, help="also write the JSON here")
    return p.parse_args(argv)


def tiny_checkpoint(folder: Path) -> Path:
    from kidneyct.config import TrainConfig
    from kidneyct.synthetic.phantom import generate_dataset
    from kidneyct.training.train import train

    generate_dataset(folder / "png", n=200, seed=3, size=128, classes=["Tumor", "Normal"], progress=False)
    config = TrainConfig(data=str(folder / "png"), out=str(folder / "run"), model="seed-cnn", image_size=96, epochs=2,
                         batch_size=16, seed=1, device="cpu", progress=False, workers=1, body_crop=False,
                         label_smoothing=0.0, sampler="shuffle")
    return Path(train(config).best_checkpoint)


def phantom_series(folder: Path, count: int, slices: int, size: int) -> list[list[Path]]:
    from kidneyct.synthetic.phantom import generate_dataset

    generate_dataset(folder, n=count * slices, seed=21, size=size, classes=["Tumor", "Normal"], fmt="dicom",
                     slices_per_series=(slices, slices), progress=False)
    series = [sorted(d.glob("*.dcm")) for d in sorted(folder.glob("*/*")) if d.is_dir()]
    if len(series) != count or any(len(s) != slices for s in series):
        raise SystemExit(f"expected {count} phantom series of {slices} slices, got {[len(s) for s in series]}")
    return series


class Receiver:
    """The forward destination: notes when the SR naming each CT series arrives."""

    def __init__(self):
        from pynetdicom import AE, evt
        from pynetdicom.sop_class import ComprehensiveSRStorage, SecondaryCaptureImageStorage

        self.sr_at: dict[str, float] = {}
        self.key_images = 0
        self.lock = threading.Lock()
        ae = AE(ae_title="RECEIVER")
        ae.maximum_associations = 64
        ae.add_supported_context(ComprehensiveSRStorage)
        ae.add_supported_context(SecondaryCaptureImageStorage)
        self.server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, self.store)])
        self.port = self.server.server_address[1]

    def store(self, event):
        now = time.monotonic()
        ds = event.dataset
        with self.lock:
            if ds.Modality != "SR":
                self.key_images += 1
                return 0x0000
            for evidence in ds.CurrentRequestedProcedureEvidenceSequence:
                for series in evidence.ReferencedSeriesSequence:
                    self.sr_at.setdefault(series.SeriesInstanceUID, now)
        return 0x0000


GOOD_AE = "PACS"
NODE_OPTIONS = ["--allow-ae", f"{GOOD_AE}@127.0.0.1", "--allow-ae", "MODALITY", "--max-associations", "64",
                "--max-peer-associations", "12"]  # 8 senders from one address, with room for releases in flight


def echo(port: int) -> bool:
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title=GOOD_AE)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="KIDNEYCT")
    if not assoc.is_established:
        return False
    ok = getattr(assoc.send_c_echo(), "Status", None) == 0x0000
    assoc.release()
    return ok


def send_series(port: int, files: list[Path]) -> tuple[int, float]:
    """One association: (instances acknowledged with success, time.monotonic() of the last response)."""
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage

    ae = AE(ae_title=GOOD_AE)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    for attempt in range(5):  # a sender retries a refused association, as PACS do
        assoc = ae.associate("127.0.0.1", port, ae_title="KIDNEYCT", bind_address=("127.0.0.1", 0))
        if assoc.is_established:
            break
        time.sleep(1.0 + attempt)
    else:
        return 0, time.monotonic()
    stored = sum(1 for path in files if getattr(assoc.send_c_store(path), "Status", None) == 0x0000)
    last = time.monotonic()
    assoc.release()
    return stored, last


def run_senders(port: int, series: list[list[Path]], senders: int) -> dict[str, tuple[int, float]]:
    """Sender i sends series i, i + senders, ... one after the other; all senders at once."""
    import pydicom

    done: dict[str, tuple[int, float]] = {}
    lock = threading.Lock()

    def sender(number: int):
        for files in series[number::senders]:
            uid = pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID
            outcome = send_series(port, files)
            with lock:
                done[uid] = outcome

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return done


def percentiles(values: list[float]) -> dict:
    if not values:
        return {}
    return {"p50": round(float(np.percentile(values, 50)), 2), "p95": round(float(np.percentile(values, 95)), 2),
            "max": round(max(values), 2), "min": round(min(values), 2), "mean": round(float(np.mean(values)), 2)}


def start_node(checkpoint: Path, port: int, out: Path, receiver_port: int, idle: float, log) -> subprocess.Popen:
    command = [sys.executable, "-m", "kidneyct", "listen", "--checkpoint", str(checkpoint), "--port", str(port),
               "--out", str(out), "--forward", f"127.0.0.1:{receiver_port}:RECEIVER", "--idle-seconds", str(idle),
               *NODE_OPTIONS]
    node = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not echo(port):
        if node.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the node did not answer C-ECHO within 120 s (see its log)")
        time.sleep(0.5)
    return node


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith(field)).split()[1]) / 1024


class RssSampler:
    """The node's resident memory, sampled every 0.25 s in a thread: (first, peak)."""

    def __init__(self, pid: int):
        self.pid, self.first, self.peak, self._stop = pid, rss_mib(pid), rss_mib(pid), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(0.25):
            try:
                self.peak = max(self.peak, rss_mib(self.pid))
            except (OSError, StopIteration):
                return

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join(5)
        return {"rss_mib_at_start": round(self.first), "rss_mib_peak": round(self.peak)}


def measure(args, checkpoint: Path, series: list[list[Path]], folder: Path, hostile: bool = False) -> dict:
    receiver = Receiver()
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    peers, hostile_counts = None, None
    with open(folder / "node.log", "wb") as log:
        node = start_node(checkpoint, port, folder / "node", receiver.port, args.idle_seconds, log)
        sampler = RssSampler(node.pid)
        try:
            if hostile:  # in a process of their own, as other machines: they take none of the senders' CPU here
                peers = subprocess.Popen([sys.executable, str(Path(__file__).with_name("dicom_hostile.py")),
                                          "--port", str(port), "--folder", str(folder / "hostile"),
                                          "--counts", str(folder / "hostile-counts.json")])
                time.sleep(10)  # the hostile peers are at work before the first good series
            started = time.monotonic()
            sent = run_senders(port, series, args.senders)
            sent_at = time.monotonic()
            deadline = sent_at + args.max_seconds
            while len(receiver.sr_at.keys() & sent.keys()) < len(sent) and time.monotonic() < deadline:
                time.sleep(0.2)
            finished = time.monotonic()
            node_alive = node.poll() is None and echo(port)
        finally:
            if peers is not None:
                peers.terminate()
                peers.wait(120)
                counts = folder / "hostile-counts.json"
                hostile_counts = json.loads(counts.read_text()) if counts.exists() else "no counts"
            memory = sampler.stop()
            stop(node, 30)
            receiver.server.shutdown()
    # path-like UIDs would land in this run's folder (relative ones) or at the hostile peers' absolute path
    outside = [str(p) for p in folder.rglob("*") if p.is_file() and not p.is_relative_to(folder / "node")
               and not p.is_relative_to(folder / "hostile") and p.name not in ("node.log", "hostile-counts.json")]
    outside += [str(p) for p in Path("/etc").glob("kidneyct-*")]
    answers = [json.loads(p.read_text()) for p in (folder / "node" / "results").glob("*/answer.json")]
    received = {a["series_uid"]: a["instances"] for a in answers}
    latency = [receiver.sr_at[uid] - last for uid, (_, last) in sent.items() if uid in receiver.sr_at]
    total = sum(len(files) for files in series)
    return {
        "instances_sent": total, "instances_acknowledged": sum(n for n, _ in sent.values()),
        "instances_lost": total - sum(received.get(uid, 0) for uid in sent),
        "series": len(series), "series_answered": len(receiver.sr_at.keys() & sent.keys()),
        "key_images_received": receiver.key_images,
        "send_seconds": round(sent_at - started, 2),
        "instances_per_second_received": round(total / (sent_at - started), 1),
        "seconds_last_instance_to_sr": percentiles(latency),
        "seconds_last_instance_to_sr_minus_idle": percentiles([t - args.idle_seconds for t in latency]),
        "seconds_first_instance_to_last_sr": round(finished - started, 2),
        "node_alive_at_end": node_alive, **memory, "files_outside_out": len(outside),
        **({"hostile": hostile_counts} if hostile else {}),
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.quick:
        args.senders, args.series, args.slices = 2, 3, 10
    if not 1 <= args.senders <= 64 or not 1 <= args.series * args.slices <= 2000:
        raise SystemExit("--senders must be 1..64 and --series x --slices at most 2000")
    import pynetdicom

    pynetdicom._config.STORE_SEND_CHUNKED_DATASET = True  # senders stream files as stored, like a router
    with tempfile.TemporaryDirectory(prefix="kidneyct-dicom-node-") as folder:
        folder = Path(folder)
        checkpoint = Path(args.checkpoint) if args.checkpoint else tiny_checkpoint(folder / "model")
        started = time.monotonic()
        series = phantom_series(folder / "series", args.senders * args.series, args.slices, args.size)
        generated = time.monotonic() - started
        result = {"senders": args.senders, "series_per_sender": args.series, "slices_per_series": args.slices,
                  "slice_size": args.size, "idle_seconds": args.idle_seconds, "node_options": NODE_OPTIONS}
        if args.hostile:
            from dicom_memory import memory_probe

            result["memory"] = memory_probe(checkpoint, folder / "memory")
            alone = measure(args, checkpoint, series, folder / "alone")
            beside = measure(args, checkpoint, series, folder / "hostile", hostile=True)
            p95 = beside["seconds_last_instance_to_sr"].get("p95"), alone["seconds_last_instance_to_sr"].get("p95")
            result.update({"without_hostile_peers": alone, "with_hostile_peers": beside,
                           "p95_ratio_with_to_without": round(p95[0] / p95[1], 2) if all(p95) else None})
        else:
            result.update(measure(args, checkpoint, series, folder / "run"))
        result.update({"phantom_generation_seconds": round(generated, 1), "checkpoint": checkpoint.name,
                       "cpu_count": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                       "load_average_1min_at_end": round(os.getloadavg()[0], 2)})
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
