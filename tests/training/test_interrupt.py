"""A training run killed with SIGKILL mid-run leaves a loadable last.pt (atomic writes), and --resume
finishes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

EPOCHS = 3


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_sigkill_mid_run_leaves_a_loadable_checkpoint_and_resume_finishes(phantom_png, tmp_path):
    import kidneyct
    from kidneyct.cli import main
    from kidneyct.checkpoint import read_checkpoint
    from kidneyct.checkpoint.model import load_model

    out = tmp_path / "run"
    args = ["train", "--data", str(phantom_png), "--out", str(out), "--model", "seed-cnn", "--image-size", "96",
            "--epochs", str(EPOCHS), "--batch-size", "16", "--patience", "99", "--device", "cpu", "--workers", "1",
            "--no-progress"]
    process = subprocess.Popen([sys.executable, "-m", "kidneyct", *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    last = out / "last.pt"
    deadline = time.monotonic() + 180
    try:
        while not last.exists():  # written (atomically) at the end of epoch 1
            if process.poll() is not None:
                pytest.fail(f"training ended before writing last.pt: {process.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("no last.pt after 180 s")
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)  # during epoch 2, or while last.pt of epoch 2 is being written
        assert process.wait(30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()

    stored = read_checkpoint(last)  # a complete file, whatever the moment of the kill
    assert 1 <= stored.progress.epoch < EPOCHS, "the run finished before the kill: the test proves nothing"
    assert [row.epoch for row in stored.progress.history] == list(range(1, stored.progress.epoch + 1))
    assert stored.resume is not None and load_model(last).checkpoint.classes == ["Tumor", "Normal"]

    stale = out / ".last.pt.k2x9q1.tmp"  # what a kill during the write leaves (atomic_write's naming)
    stale.write_bytes(b"half a checkpoint")
    assert main([*args, "--resume"]) == 0
    assert not stale.exists() and not list(out.glob(".*.tmp"))
    finished = read_checkpoint(last)
    assert finished.progress.epoch == EPOCHS
    assert [row.epoch for row in finished.progress.history] == list(range(1, EPOCHS + 1))
    (row,) = kidneyct.load(out / "best.pt").predict(next((phantom_png / "Tumor").glob("*[0-9]).png"))).slices
    assert set(row.probabilities) == {"Tumor", "Normal"}
