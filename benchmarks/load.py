"""Load test of the web API on loopback: `kidneyct serve` in a subprocess (uvicorn), N concurrent clients
sending one image each request until a fixed count is reached (or a time bound runs out). Prints JSON:
requests/s, latency percentiles, error count.

    OMP_NUM_THREADS=2 python benchmarks/load.py --checkpoint runs/x/best.pt --clients 32 --requests 1000

Without --image a synthetic phantom slice is generated (reading and resizing are part of every request).
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
from collections import Counter
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


async def run_clients(url: str, image: Path, clients: int, total: int, max_seconds: float) -> dict:
    import httpx

    data = image.read_bytes()
    latencies, statuses, examples = [], Counter(), []
    sent = 0
    stop_at = time.perf_counter() + max_seconds

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal sent
        while sent < total and time.perf_counter() < stop_at:
            sent += 1  # one event loop: no lock needed
            started = time.perf_counter()
            try:
                response = await client.post(url, files={"file": (image.name, data, "application/octet-stream")})
                status = response.status_code
                if status != 200 and len(examples) < 5:
                    examples.append(f"{status}: {response.text[:200]}")
            except httpx.HTTPError as error:
                status = type(error).__name__
                if len(examples) < 5:
                    examples.append(f"{status}: {error}")
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[str(status)] += 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    started = time.perf_counter()
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(120.0)) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
    seconds = time.perf_counter() - started
    errors = sum(n for status, n in statuses.items() if status != "200")
    return {
        "requests": len(latencies), "seconds": round(seconds, 2),
        "requests_per_second": round(len(latencies) / seconds, 1) if seconds else None,
        "latency_ms": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
                       "p99": percentile(latencies, 99), "max": round(max(latencies), 2) if latencies else None,
                       "mean": round(float(np.mean(latencies)), 2) if latencies else None},
        "errors": errors, "status_counts": dict(statuses), "error_examples": examples,
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    if not 1 <= args.clients <= 256 or not 1 <= args.requests <= 100_000:
        raise SystemExit("--clients must be 1..256 and --requests 1..100000")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="kidneyct-load-") as folder:
        image = Path(args.image) if args.image else phantom_png(Path(folder))
        command = [sys.executable, "-m", "kidneyct", "serve", "--checkpoint", args.checkpoint,
                   "--host", "127.0.0.1", "--port", str(port), "--timeout", str(args.server_timeout),
                   "--max-pending", str(args.max_pending)]
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            import httpx

            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                if server.poll() is not None:
                    raise SystemExit(f"server exited: {server.stderr.read().decode()[-2000:]}")
                try:
                    if httpx.get(base + "/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("server did not answer /health within 120 s")
                time.sleep(0.2)
            asyncio.run(run_clients(f"{base}/{args.endpoint}", image, 2, 4, 60))  # warm-up, not counted
            result = asyncio.run(run_clients(f"{base}/{args.endpoint}", image, args.clients, args.requests,
                                             args.max_seconds))
        finally:
            stop(server, 20)
            server.stderr.close()
    result = {"endpoint": f"POST /{args.endpoint}", "clients": args.clients, **result,
              "image": image.name, "cpu_count": os.cpu_count(),
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "checkpoint": Path(args.checkpoint).name}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
