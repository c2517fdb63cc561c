"""The ordered, bounded producer behind `predict`: inputs read in worker processes, in order, errors as results."""

import multiprocessing
import os

import numpy as np
import pytest

from kidneyct.inference.pipeline import ordered_map, prepare, prepared_inputs
from kidneyct.io import InputItem, expand_inputs
from kidneyct.preprocess import Preprocessing


def _square(x):
    return x * x, os.getpid()


def _die_on_three(x):
    if x == 3 and os.getpid() != PARENT:
        os._exit(1)  # a worker killed mid-task, as by the out-of-memory killer
    return x


PARENT = os.getpid()


def test_ordered_map_keeps_the_order_and_uses_workers():
    results = list(ordered_map(_square, range(40), workers=2, ahead=3))
    assert [value for value, _ in results] == [x * x for x in range(40)]
    assert any(pid != os.getpid() for _, pid in results)


def test_ordered_map_finishes_in_this_process_when_a_worker_dies(caplog):
    assert list(ordered_map(_die_on_three, range(8), workers=2, ahead=2)) == list(range(8))
    assert "reader process died" in caplog.text


def test_ordered_map_stops_its_workers_when_the_consumer_stops_early():
    results = ordered_map(_square, range(1000), workers=2, ahead=4)
    assert next(results)[0] == 0
    results.close()  # the pool is shut down and its pending tasks cancelled
    assert not multiprocessing.active_children()


def test_prepared_inputs_match_reading_in_process_and_keep_bad_inputs_as_results(study_tree):
    root, series, volume = study_tree
    (root / "png" / "Tumor" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    items, skipped = expand_inputs([root])
    assert not skipped
    prep = Preprocessing(32, body_crop=True)
    parallel = list(prepared_inputs(items, prep, workers=2, ahead=2))
    serial = [prepare(item, prep) for item in items]
    assert [p.item for p in parallel] == items
    for a, b in zip(parallel, serial):
        assert a.skipped == b.skipped
        assert (a.images is None) == (b.images is None)
        if a.images is not None:
            np.testing.assert_array_equal(a.images, b.images)
            assert a.images.shape == (len(a.slices), 32, 32) and a.images.dtype == np.uint8
            assert all(s.pixels.size == 0 and s.source for s in a.slices)  # metadata only crosses back
    broken = [p for p in parallel if p.images is None]
    assert len(broken) == 1 and broken[0].skipped[0][0].endswith("broken.png")
    assert len(next(p for p in parallel if p.item.path == series.path).slices) == 6


def test_prepare_turns_an_unexpected_reader_failure_into_a_skip(tmp_path, monkeypatch):
    import kidneyct.inference.pipeline as pipeline

    def broken_reader(item):
        raise ZeroDivisionError("a reader bug")

    monkeypatch.setattr(pipeline, "read_item", broken_reader)
    result = prepare(InputItem(tmp_path / "x.png", "image"), Preprocessing(32))
    assert result.images is None and result.skipped == [(str(tmp_path / "x.png"),
                                                         "failed: ZeroDivisionError: a reader bug")]


@pytest.mark.parametrize("workers", [0, 1])
def test_a_single_worker_or_input_reads_in_this_process(study_tree, workers):
    root, _, _ = study_tree
    items, _ = expand_inputs([root / "png"])
    results = prepared_inputs(items, Preprocessing(32), workers=workers)
    assert isinstance(results, map)  # no pool, no fork: the fast start of a one-slice predict
    assert len(list(prepared_inputs(items[:1], Preprocessing(32), workers=4))) == 1
    assert len(list(results)) == len(items)


def test_a_volume_preprocessed_in_threads_is_what_one_thread_gives(study_tree):
    root, series, volume = study_tree
    prep = Preprocessing(32, body_crop=True)
    items, _ = expand_inputs([root])
    studies = [item for item in items if item.path in (series.path, volume.path)]
    assert len(studies) == 2
    for item in studies:
        alone, threaded = prepare(item, prep), prepare(item, prep, threads=2)
        assert len(alone.slices) > 1 and not alone.skipped
        np.testing.assert_array_equal(threaded.images, alone.images)
        assert [str(f) for f in threaded.frames] == [str(f) for f in alone.frames]
        assert [s.source for s in threaded.slices] == [s.source for s in alone.slices]


def _hang(x):
    import time

    time.sleep(60)
    return x


def _pool_parent(pids_file: str) -> None:
    """A stand-in for `kidneyct predict`: a pool of reader processes working, until it is killed."""
    import time

    import threading

    pool = ordered_map(_hang, range(4), workers=2, ahead=2)
    threading.Thread(target=lambda: next(pool), daemon=True).start()
    while len(multiprocessing.active_children()) < 2:
        time.sleep(0.05)
    with open(pids_file, "w") as handle:
        handle.write(" ".join(str(child.pid) for child in multiprocessing.active_children()))
    time.sleep(60)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as status:
            return "\tZ" not in next(line for line in status if line.startswith("State"))  # a zombie is gone
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="process states through /proc")
def test_reader_processes_end_with_their_parent(tmp_path):
    import signal
    import time

    pids_file = tmp_path / "pids"
    parent = multiprocessing.get_context("fork").Process(target=_pool_parent, args=(str(pids_file),))
    parent.start()
    deadline = time.monotonic() + 30
    while not (pids_file.exists() and pids_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = [int(pid) for pid in pids_file.read_text().split()]
    assert len(workers) == 2 and all(map(_alive, workers))
    os.kill(parent.pid, signal.SIGKILL)  # as `kill -9` of predict
    parent.join(10)
    deadline = time.monotonic() + 10
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [pid for pid in workers if _alive(pid)]
    for pid in survivors:  # do not leave them behind when the rule fails
        os.kill(pid, signal.SIGKILL)
    assert not survivors, "reader processes outlived their parent"
