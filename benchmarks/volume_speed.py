"""End-to-end time of `kidneyct predict` on a clinical-size CT volume (issue 24's target: a 300-slice volume in under
15 s on 2 CPU cores): a fresh process each run (start-up, imports, checkpoint, reading, the model, the CSVs).

    OMP_NUM_THREADS=2 python benchmarks/volume_speed.py --out benchmarks/results/volume-speed-cpu.json

The volume is the real abdominal scan of examples/ (30 slices of 122 x 101 at 3 mm, Hounsfield units) resampled to
512 x 512 pixels and repeated along z to 300 slices: the sizes of a routine abdominal CT, real anatomy and
intensities. Timed with the shipped model as it is and, with --mirror, also with its mirror TTA switched on (a
copy of the checkpoint), and with any other model named by --model NAME=PATH (a .pt or .onnx checkpoint, e.g. an
ensemble: `kidneyct.checkpoint.model.write_ensemble`, then `kidneyct export`). Prints JSON and writes it to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "abdomen-ct-30slices.nii.gz"


def clinical_volume(out: Path, slices: int = 300, side: int = 512) -> Path:
    """The example scan at `side` x `side` pixels and `slices` slices (each source slice repeated), int16 HU."""
    import nibabel as nib
    from scipy import ndimage

    source = nib.load(str(EXAMPLE))
    data = np.asarray(source.dataobj, np.float32)
    zoomed = ndimage.zoom(data, (side / data.shape[0], side / data.shape[1], 1), order=1)
    stacked = zoomed[:, :, np.arange(slices) * data.shape[2] // slices]
    affine = np.diag([0.7, 0.7, 1.0, 1.0])
    nib.save(nib.Nifti1Image(np.rint(stacked).astype(np.int16), affine), str(out))
    return out


def timed_predict(volume: Path, checkpoint: Path | None, work: Path) -> float:
    command = [sys.executable, "-m", "kidneyct", "predict", str(volume), "--out", str(work / "predictions.csv"),
               "--no-progress"] + (["--checkpoint", str(checkpoint)] if checkpoint else [])
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def mirrored_copy(folder: Path) -> Path:
    from kidneyct.checkpoint import read_checkpoint, write_checkpoint
    from kidneyct.weights import shipped_checkpoint

    checkpoint = read_checkpoint(shipped_checkpoint())
    outputs = checkpoint.outputs
    return write_checkpoint(replace(checkpoint, outputs=replace(
        outputs, segmentation=replace(outputs.segmentation, mirror=True))), folder / "mirrored.pt")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--mirror", action="store_true", help="also time the shipped model with mirror TTA")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                        help="also time this checkpoint (repeatable)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        volume = clinical_volume(work / "volume.nii.gz", args.slices)
        models = {"shipped": None} | ({"shipped, mirror TTA": mirrored_copy(work)} if args.mirror else {})
        models |= {name: Path(path) for name, _, path in (m.partition("=") for m in args.model)}
        runs = {name: [round(timed_predict(volume, checkpoint, work), 2) for _ in range(args.repeats)]
                for name, checkpoint in models.items()}
    result = {"command": "OMP_NUM_THREADS=2 python benchmarks/volume_speed.py" + (" --mirror" if args.mirror else "")
                         + "".join(f" --model {m}" for m in args.model),
              "volume": f"{args.slices} slices of 512 x 512 int16 (NIfTI), from {EXAMPLE.name}",
              "seconds": {name: {"runs": values, "median": statistics.median(values)} for name, values in runs.items()},
              "target_seconds": 15,
              "machine": {"cpu_count": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                          "load_average_after": [round(x, 2) for x in os.getloadavg()]}}
    print(json.dumps(result, indent=2))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
