"""Long fuzzing run of the readers (tests/io/test_fuzz.py is the short one): Hypothesis mutates small valid
PNG, JPEG, DICOM and NIfTI files and each goes through `read_slices` under a decoded-size budget. Prints
JSON: cases, cases/s, escapes (exceptions other than ImageReadError, with examples), files read vs
refused, the largest peak-memory rise of one case and the process's peak RSS while reading.

    OMP_NUM_THREADS=1 nice -n 15 python benchmarks/fuzz.py --cases 100000 --max-seconds 3600

Runs in rounds of --round examples, each with a fresh random seed, until --cases or --max-seconds is reached.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import traceback
import warnings
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings

from kidneyct.io.budget import MIB
from kidneyct.synthetic.fuzz import Outcome, mutated_files, read_case


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=100_000, help="mutated files to read (default 100000)")
    p.add_argument("--max-seconds", type=float, default=3600, help="stop after this long (default 3600)")
    p.add_argument("--round", type=int, default=2000, help="examples per Hypothesis run")
    p.add_argument("--budget-mb", type=float, default=64, help="decoded-size budget of one file (default 64)")
    p.add_argument("--out", default=None, help="also write the JSON here")
    return p.parse_args(argv)


def fuzz_round(folder: Path, examples: int, budget: int, state: dict) -> None:
    """One Hypothesis run of `examples` cases; escapes are counted, not raised, so the run goes on."""
    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(mutated_files())
    def read_one(case):
        name, data = case
        try:
            read_case(folder, name, data, budget, state["outcome"])
        except Exception as error:  # noqa: BLE001 - an escape: recorded with the input that caused it
            state["escapes"] += 1
            if len(state["examples"]) < 10:
                kept = folder.parent / f"escape-{state['escapes']}-{name}"
                kept.write_bytes(data)
                state["examples"].append({"seed": name, "kept": str(kept), "error": repr(error)[:300],
                                          "where": traceback.format_exc().splitlines()[-3][:300]})
        state["cases"] += 1

    read_one()


def main(argv=None) -> dict:
    args = parse_args(argv)
    state = {"outcome": Outcome(), "escapes": 0, "examples": [], "cases": 0}
    warnings.simplefilter("ignore")  # pydicom and Pillow warn about every damaged file they read past
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kidneyct-fuzz-") as folder:
        (Path(folder) / "cases").mkdir()
        while state["cases"] < args.cases and time.perf_counter() - started < args.max_seconds:
            fuzz_round(Path(folder) / "cases", min(args.round, args.cases - state["cases"]),
                       int(args.budget_mb * MIB), state)
        seconds = time.perf_counter() - started
        result = {"cases": state["cases"], "seconds": round(seconds, 1),
                  "cases_per_second": round(state["cases"] / seconds, 1), "escapes": state["escapes"],
                  "read": state["outcome"].read, "refused": state["outcome"].refused,
                  "budget_mib": args.budget_mb, "max_case_rss_rise_mib": round(state["outcome"].max_rise_mib, 1),
                  "peak_rss_mib": round(state["outcome"].peak_rss_mib, 1),
                  "escape_examples": state["examples"]}
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
