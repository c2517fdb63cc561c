"""SRs and key images built from source headers whose copied attributes hold anything a sender might write
(controls, backslashes, '^' and '=', text beyond ASCII and lone surrogates, up to 120 characters, under
four character sets), each checked with dciodvfy (Debian dicom3tools). Prints JSON: files checked, files
with errors, the errors seen.

    python benchmarks/dicom_results_fuzz.py --cases 500 --out benchmarks/results/dicom-results-fuzz.json
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

ALPHABET = "ABCxyz019 ^=\\.-_/'\0\t\n\r\x1b\x7fé中文\U0001f600\udcff"
CHARSETS = [None, "ISO_IR 100", "ISO_IR 192", "ISO 2022 IR 87"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also write the JSON here")
    return p.parse_args(argv)


def source_header(rng: random.Random):
    """A CT slice's header as pydicom decodes a file: raw elements, decoded (and found wanting) when used."""
    import pydicom
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag
    from pydicom.uid import generate_uid

    from kidneyct.io.dicom_conform import COPIED

    ds = pydicom.Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = pydicom.uid.CTImageStorage, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Rows = ds.Columns = 64
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    charset = rng.choice(CHARSETS)
    if charset:
        ds.SpecificCharacterSet = charset
    for keyword, (vr, _) in COPIED.items():
        if rng.random() < 0.2:
            continue
        text = "".join(rng.choice(ALPHABET) for _ in range(rng.choice([0, 1, 8, 16, 17, 64, 65, 120])))
        data = text.encode("utf-8", "surrogatepass")
        tag = Tag(pydicom.datadict.tag_for_keyword(keyword))
        ds[tag] = RawDataElement(tag, vr, len(data), data, 0, False, True)
    return ds


def build(header, folder: Path) -> list[Path]:
    import highdicom as hd
    import numpy as np

    from kidneyct.inference import dicom_results
    from kidneyct.inference.dicom_sr import SeriesFinding, build_sr
    from kidneyct.inference.model_facts import ModelFacts

    facts = ModelFacts("seed-cnn", "best.pt", "0" * 64, "0.1.0", ("Normal", "Tumor"), 1.0, "Trained on phantoms.")
    finding = SeriesFinding([header], [0], 0.7, True, 0.5, "mean of the 3 highest", {0: 0.7})
    finding.key_images = [dicom_results._key_image(header, np.zeros((64, 128, 3), np.uint8), hd.UID(), 1, facts)]
    files = [folder / "SC.dcm", folder / "SR.dcm"]
    finding.key_images[0].save_as(files[0], enforce_file_format=True)
    build_sr([finding], facts, hd.UID(), hd.UID()).save_as(files[1], enforce_file_format=True)
    return files


def main(argv=None) -> dict:
    args = parse_args(argv)
    if shutil.which("dciodvfy") is None:
        raise SystemExit("dciodvfy (Debian package dicom3tools) is not installed")
    from kidneyct.io.dicom_conform import conform_header

    warnings.simplefilter("ignore")  # pydicom and highdicom warn of the odd values: that is the point
    rng, errors, failures, checked, started = random.Random(args.seed), Counter(), [], 0, time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kidneyct-results-fuzz-") as folder:
        for case in range(args.cases):
            header = conform_header(source_header(rng))
            try:
                files = build(header, Path(folder))
            except Exception as error:  # noqa: BLE001 - a build failure is a finding too
                failures.append(f"case {case}: {type(error).__name__}: {error}"[:300])
                continue
            for path in files:
                report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
                found = [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]
                errors.update(line[:160] for line in found)
                checked += 1
                if found:
                    failures.append(f"case {case} {path.name}: {found[:3]}")
    result = {"cases": args.cases, "seed": args.seed, "files_checked": checked,
              "files_with_errors_or_build_failures": len(failures), "errors": dict(errors.most_common(20)),
              "failures": failures[:10], "seconds": round(time.monotonic() - started, 1)}
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
