"""Start-up cost of the light commands: wall time and imported-module count of `kidneyct --help`,
`kidneyct recipes`, `kidneyct models` and a one-slice `kidneyct predict` on the shipped model (its ONNX export,
which imports no torch), each in a fresh interpreter, next to a bare `python -c pass`. Prints JSON and writes it
to --out.

    python benchmarks/startup.py                     # 7 runs per command, the median reported
    python benchmarks/startup.py --repeats 15 --out benchmarks/results/startup-cpu.json

Runs the kidneyct of this checkout (src/ first on PYTHONPATH). Wall times include the interpreter's own
start-up; the module count and whether torch or matplotlib were imported come from one extra run that
reports sys.modules as the command exits.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {"--help": ["--help"], "recipes": ["recipes"], "models": ["models"]}
EXAMPLE = ROOT / "examples" / "abdomen-ct-30slices.nii.gz"
KIDNEY_SLICE = 12  # a slice of the example scan through both kidneys
HEAVY = ("torch", "matplotlib", "numpy", "scipy", "sklearn", "PIL")
# Runs the CLI as `python -m kidneyct` does, then reports what it imported (on stderr: stdout is the command's).
PROBE = """
import json, sys
from kidneyct.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as stop:
    code = stop.code
sys.stderr.write(json.dumps({"exit": code, "modules": len(sys.modules),
                             "heavy": [m for m in %r if m in sys.modules]}) + "\\n")
""" % (HEAVY,)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=7, help="timed runs per command; the median is reported")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "startup-cpu.json"))
    return p.parse_args(argv)


def environment() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}


def wall_times(command: list[str], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - started)
    return times


def probe(arguments: list[str]) -> dict:
    run = subprocess.run([sys.executable, "-c", PROBE, *arguments], env=environment(), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, check=True)
    return json.loads(run.stderr.strip().splitlines()[-1])


def one_slice(folder: Path) -> dict[str, Path]:
    """A kidney slice of the example scan as a one-slice NIfTI (Hounsfield units) and as a PNG in the abdomen
    window (what a single-slice export is)."""
    import nibabel as nib
    import numpy as np
    from PIL import Image

    volume = nib.load(str(EXAMPLE))
    hu = np.asarray(volume.dataobj[:, :, KIDNEY_SLICE:KIDNEY_SLICE + 1], dtype=np.float32)
    nifti, png = folder / "one-slice.nii.gz", folder / "one-slice.png"
    nib.save(nib.Nifti1Image(hu, volume.affine), str(nifti))
    level, width = 40.0, 400.0
    grey = np.clip((hu[:, :, 0] - level + width / 2) / width, 0, 1)
    Image.fromarray(np.rint(np.rot90(grey) * 255).astype(np.uint8)).save(png)
    return {"png": png, "nifti": nifti}


def main(argv=None) -> dict:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        inputs = one_slice(Path(folder))
        commands = {**COMMANDS, **{f"predict (one {kind} slice, shipped ONNX model)": ["predict", str(path),
                                                                                      "--no-progress"]
                                   for kind, path in inputs.items()}}
        return measure(args, commands)


def measure(args, commands: dict[str, list[str]]) -> dict:
    python = wall_times([sys.executable, "-c", "pass"], args.repeats)
    report = {
        "machine": {"cpus": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
                    "python": platform.python_version()},
        "repeats": args.repeats,
        "python_startup_s": round(statistics.median(python), 3),
        "commands": {},
    }
    for name, arguments in commands.items():
        times = wall_times([sys.executable, "-m", "kidneyct", *arguments], args.repeats)  # stdout, stderr dropped
        found = probe(arguments)
        report["commands"][f"kidneyct {name}"] = {
            "median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
            "max_s": round(max(times), 3), "modules": found["modules"], "heavy_imports": found["heavy"],
        }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
