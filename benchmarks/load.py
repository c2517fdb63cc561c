"""Load test of the web API on loopback: `kidneyct serve` in a subprocess (uvicorn), N concurrent clients
sending one image each request until a fixed count is reached (or a time bound runs out). Prints JSON:
requests/s, latency percentiles, error count.

    OMP_NUM_THREADS=2 python benchmarks/load.py --checkpoint runs/x/best.pt --clients 32 --requests 1000

Without --image a synthetic phantom slice is generated (reading and resizing are part of every request).
With --mix, the same clients then send good slices, damaged or foreign files and decompression bombs
together (`kidneyct.synthetic.bad_files`): the good requests must see no error and keep their latency;
the server's peak RSS is reported after each run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--image", default=None, help="a JPG/PNG/DICOM slice (default: a generated phantom PNG)")
    p.add_argument("--endpoint", choices=["predict", "explain"], default="predict")
    p.add_argument("--clients", type=int, default=32, help="concurrent clients (max 256)")
    p.add_argument("--requests", type=int, default=1000, help="requests in total (max 100000)")
    p.add_argument("--max-seconds", type=float, default=600, help="stop sending after this long")
    p.add_argument("--server-timeout", type=float, default=60, help="the server's per-request limit")
    p.add_argument("--max-pending", type=int, default=256, help="the server's queue limit")
    p.add_argument("--mix", action="store_true",
                   help="a good-only run, then one where the clients also send bad files and decompression "
                        "bombs (about half the requests): good requests' errors and latency compared")
    return p.parse_args(argv)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop(process: subprocess.Popen, seconds: float) -> None:
    """Terminate a server subprocess; kill it if it has not exited after `seconds`."""
    process.terminate()
    try:
        process.wait(seconds)
    except subprocess.TimeoutExpired:
        process.kill()


def phantom_png(folder: Path) -> Path:
    from kidneyct.synthetic.phantom import generate_dataset

    generate_dataset(folder, n=2, seed=0, size=256, classes=["Tumor", "Normal"], progress=False)
    return next(p for p in (folder / "Tumor").glob("*.png") if ".mask." not in p.name)


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


@dataclass(frozen=True)
class Upload:
    name: str
    data: bytes
    kind: str  # "good", "bad" or "bomb"


def mixed_uploads(good: Upload) -> list[Upload]:
    """The --mix set: good slices, damaged and foreign files, and decompression bombs, one each (the
    clients draw from it so that about half of the requests are good)."""
    from kidneyct.synthetic import bad_files as bad

    ramp = bad.gradient()
    bad_ones = {"cut.jpg": bad.image_bytes(bad.gradient(256), "JPEG")[:2000], "notes.png": b"not an image\n" * 50,
                "scan.png": bad.image_bytes(ramp, "TIFF"), "brain.dcm": bad.dicom_bytes(Modality="MR"),
                "dot.png": bad.image_bytes(ramp[:1, :1]), "nopixels.dcm": bad.dicom_bytes(PixelData=None)}
    bombs = {"bomb.png": bad.png_bomb(), "deflated-1gib.dcm": bad.deflated_dicom_bomb(1024),
             "deflated-3gib.dcm": bad.deflated_dicom_bomb(3072), "frames-19mb.dcm": bad.multiframe_dicom(),
             "zeros-1gib.nii.gz": bad.nifti_gz_bomb(1024)}
    return ([good] * (len(bad_ones) + len(bombs)) + [Upload(n, d, "bad") for n, d in bad_ones.items()]
            + [Upload(n, d, "bomb") for n, d in bombs.items()])


def _summary(latencies: list[float], statuses: Counter) -> dict:
    errors = sum(n for status, n in statuses.items() if status != "200")
    return {"requests": len(latencies), "errors": errors, "status_counts": dict(statuses),
            "latency_ms": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
                           "p99": percentile(latencies, 99), "max": round(max(latencies), 2) if latencies else None,
                           "mean": round(float(np.mean(latencies)), 2) if latencies else None}}


async def run_clients(url: str, uploads: list[Upload], clients: int, total: int, max_seconds: float) -> dict:
    """`clients` concurrent clients sending `total` requests, each the next upload of `uploads` in turn.
    Latencies and statuses are kept per kind of upload."""
    import httpx

    latencies, statuses = defaultdict(list), defaultdict(Counter)
    examples: list[str] = []
    sent = 0
    stop_at = time.perf_counter() + max_seconds

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal sent
        while sent < total and time.perf_counter() < stop_at:
            upload = uploads[sent % len(uploads)]
            sent += 1  # one event loop: no lock needed
            started = time.perf_counter()
            try:
                response = await client.post(url, files={"file": (upload.name, upload.data,
                                                                  "application/octet-stream")})
                status = response.status_code
                if (status != 200) == (upload.kind == "good") or status >= 500:
                    examples.append(f"{upload.name} {status}: {response.text[:200]}")
            except httpx.HTTPError as error:
                status = type(error).__name__
                examples.append(f"{upload.name} {status}: {error}")
            latencies[upload.kind].append((time.perf_counter() - started) * 1000)
            statuses[upload.kind][str(status)] += 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    started = time.perf_counter()
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(120.0)) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
    seconds = time.perf_counter() - started
    count = sum(len(v) for v in latencies.values())
    result = {"requests": count, "seconds": round(seconds, 2),
              "requests_per_second": round(count / seconds, 1) if seconds else None,
              **{k: v for k, v in _summary(latencies["good"], statuses["good"]).items() if k != "requests"},
              "error_examples": examples[:5]}
    if set(latencies) != {"good"}:  # a mix: the bad files and bombs have their own numbers
        result["good_requests"] = len(latencies["good"])
        result["by_kind"] = {kind: _summary(latencies[kind], statuses[kind]) for kind in ("bad", "bomb")}
        result["server_errors"] = sum(n for c in statuses.values() for s, n in c.items() if s.startswith("5"))
    return result


def server_rss_mib(pid: int) -> dict:
    """The server process's resident memory now and at its peak (Linux /proc), in MiB."""
    with open(f"/proc/{pid}/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return {key: round(int(fields[name].split()[0]) / 1024, 1) for key, name in (("now", "VmRSS"), ("peak", "VmHWM"))}


def start_server(args, port: int, log: Path) -> subprocess.Popen:
    """`kidneyct serve` in a subprocess, answering /health; its stderr goes to `log` (a pipe could fill)."""
    import httpx

    command = [sys.executable, "-m", "kidneyct", "serve", "--checkpoint", args.checkpoint,
               "--host", "127.0.0.1", "--port", str(port), "--timeout", str(args.server_timeout),
               "--max-pending", str(args.max_pending)]
    with open(log, "wb") as stderr:
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 120
    while True:
        if server.poll() is not None:
            raise SystemExit(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            server.kill()
            raise SystemExit("server did not answer /health within 120 s")
        time.sleep(0.2)


def run_phases(args, url: str, good: Upload, pid: int) -> dict:
    """The good-only run (and with --mix the mixed one), each followed by the server's memory."""
    asyncio.run(run_clients(url, [good], 2, 4, 60))  # warm-up, not counted
    result = asyncio.run(run_clients(url, [good], args.clients, args.requests, args.max_seconds))
    result["server_rss_mib"] = server_rss_mib(pid)
    if not args.mix:
        return result
    mixed = asyncio.run(run_clients(url, mixed_uploads(good), args.clients, args.requests, args.max_seconds))
    mixed["server_rss_mib"] = server_rss_mib(pid)
    p99_good, p99_mixed = result["latency_ms"]["p99"], mixed["latency_ms"]["p99"]
    return {"good_only": result, "mixed": mixed,
            "p99_ratio_mixed_to_good_only": round(p99_mixed / p99_good, 2) if p99_good and p99_mixed else None}


def main(argv=None) -> dict:
    args = parse_args(argv)
    if not 1 <= args.clients <= 256 or not 1 <= args.requests <= 100_000:
        raise SystemExit("--clients must be 1..256 and --requests 1..100000")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="kidneyct-load-") as folder:
        image = Path(args.image) if args.image else phantom_png(Path(folder))
        server = start_server(args, port, Path(folder) / "server.log")
        try:
            result = run_phases(args, f"http://127.0.0.1:{port}/{args.endpoint}",
                                Upload(image.name, image.read_bytes(), "good"), server.pid)
        finally:
            stop(server, 20)
    result = {"endpoint": f"POST /{args.endpoint}", "clients": args.clients, **result,
              "image": image.name, "cpu_count": os.cpu_count(),
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "checkpoint": Path(args.checkpoint).name}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
