"""torchrun with 2 CPU processes (gloo) trains the same model as one process, and rank 0 alone writes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import kidneyct
from kidneyct.config import TrainConfig
from kidneyct.checkpoint import read_checkpoint
from kidneyct.training.distributed import DistContext
from kidneyct.training.train import train

ARGS = dict(model="seed-cnn", image_size=96, epochs=2, batch_size=16, seed=1, device="cpu", workers=1,
            dropout=0.0)  # dropout masks are drawn per rank: without it the comparison is exact up to rounding


@pytest.mark.slow
def test_torchrun_two_cpu_ranks_match_one_process(phantom_png, tmp_path):
    single = train(TrainConfig(data=str(phantom_png), out=str(tmp_path / "single"), progress=False, **ARGS))
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "kidneyct", "train", "--data", str(phantom_png), "--out", str(out), "--no-progress",
               "--model", ARGS["model"], "--image-size", "96", "--epochs", "2", "--batch-size", "16",
               "--seed", "1", "--device", "cpu", "--workers", "1", "--dropout", "0"]
    src = str(Path(kidneyct.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "rank 1 of 2 on cpu (gloo)" in run.stderr
    assert run.stdout.count("best checkpoint:") == 1  # rank 0 reports
    # One set of outputs, written by rank 0 alone, and no temporary files left behind.
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "config.json", "last.pt", "metrics.csv", "split.csv"]
    assert (out / "split.csv").read_text() == (single.out / "split.csv").read_text()
    ddp, one = read_checkpoint(out / "last.pt"), read_checkpoint(single.last_checkpoint)
    # Same global batch, same augmentation per image, gradients normalised by the global batch:
    # two ranks train the model one process trains, up to float rounding.
    for key, value in one.state_dict.items():
        torch.testing.assert_close(ddp.state_dict[key], value, atol=1e-4, rtol=1e-3)
    for mine, theirs in zip(ddp.progress.history, one.progress.history):
        assert mine.val_macro_f1 == theirs.val_macro_f1
        assert mine.train_loss == pytest.approx(theirs.train_loss, abs=1e-4)


def test_a_single_process_context_shards_nothing():
    ctx = DistContext()
    assert not ctx.enabled and ctx.is_main
    assert ctx.shard(10) == slice(0, 10)
    assert torch.arange(4)[ctx.local_positions(4, "cpu")].tolist() == [0, 1, 2, 3]
    part = torch.ones(3, 2)
    assert ctx.assemble(part, 3) is part and ctx.all_reduce_sum(part) is part


def test_ranks_split_rows_and_batches_without_overlap():
    ranks = [DistContext(rank=r, world_size=3) for r in range(3)]
    rows = [list(range(10))[ctx.shard(10)] for ctx in ranks]
    assert sum(rows, []) == list(range(10))
    positions = sorted(sum((ctx.local_positions(8, "cpu").tolist() for ctx in ranks), []))
    assert positions == list(range(8))
