"""A short fuzzing run of the readers (benchmarks/fuzz.py is the long one): mutated PNG, JPEG, DICOM and
NIfTI files are read into checked slices or refused with ImageReadError, nothing else escapes, and no
file takes memory beyond a small multiple of the decoded-size budget."""

from __future__ import annotations

import pytest

pytest.importorskip("hypothesis", reason="Hypothesis is a dev dependency: pip install -e '.[dev]'")
from hypothesis import HealthCheck, given, settings  # noqa: E402

from kidneyct.io.budget import MIB  # noqa: E402
from kidneyct.synthetic.fuzz import Outcome, check_file, fix_png_crcs, mutated_files, read_case  # noqa: E402
from kidneyct.synthetic.bad_files import seed_files  # noqa: E402

BUDGET = 16 * MIB


def test_seeds_are_read_and_crc_repair_keeps_a_valid_png(tmp_path):
    outcome = Outcome()
    for name, data in seed_files().items():
        (tmp_path / name).write_bytes(data)
        check_file(tmp_path / name, outcome)
    assert outcome.read == len(seed_files())
    png = seed_files()["seed.png"]
    assert fix_png_crcs(png) == png
    broken = bytearray(png)
    broken[-1] ^= 0xFF  # the last byte of IEND's CRC
    assert fix_png_crcs(bytes(broken)) == png


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the damage it reads past
def test_mutated_files_are_read_or_refused_within_memory(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    outcome = Outcome()

    @settings(max_examples=300, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(mutated_files())
    def read_one(case):
        read_case(folder, *case, BUDGET, outcome)

    read_one()
    assert outcome.read + outcome.refused >= 300
    assert outcome.refused > 0 and outcome.read > 0  # the mutations both break files and leave some readable
    assert outcome.max_rise_mib < 8 * BUDGET / MIB, outcome.max_rise_mib
