"""The run store: transactions, resume bookkeeping, refusal of other runs and second processes."""

import math
import multiprocessing as mp
import sqlite3

import pytest

from pyscatter.analysis.tally import wilson_interval
from pyscatter.conditions import RunSpec
from pyscatter.outcomes import Outcome, TrajectoryResult
from pyscatter.store import RunStore, StoreError

SPEC = RunSpec(surface="111", temperature=925.0, v=1, J=1)


def _results(indices, outcome=Outcome.DISSOCIATED):
    return [TrajectoryResult(i, outcome, 12.5, 1e-4, 2e-4) for i in indices]


def test_counts_and_resume(tmp_path):
    with RunStore(tmp_path, SPEC, {"model_identity": "x"}) as store:
        cid = store.condition_id(0.5)
        store.add(cid, _results(range(3)), force_calls=300, wall_time_s=1.5)
        store.add(cid, _results([3, 4], Outcome.SCATTERED), force_calls=200, wall_time_s=0.5)
        store.add(cid, [TrajectoryResult(5, Outcome.TRAPPED, 3000.0, 0.004, 0.012)], force_calls=0, wall_time_s=0.0)
    with RunStore(tmp_path, SPEC, {"model_identity": "x"}) as store:
        cid = store.condition_id(0.5)
        assert store.done_indices(cid) == {0, 1, 2, 3, 4, 5}
        c = store.counts(cid)
        assert (c.n_trajectories, c.n_dissociated, c.n_scattered, c.n_trapped) == (6, 3, 2, 1)
        assert c.n_energy_error_above_10meV == 1
        assert (c.force_calls, c.wall_time_s) == (500, 2.0)
        assert store.counts(cid, limit=3).n_trajectories == 3
        assert store.condition_id(0.6) != cid


def test_a_trajectory_is_never_counted_twice(tmp_path):
    with RunStore(tmp_path, SPEC, {}) as store:
        cid = store.condition_id(0.5)
        store.add(cid, _results([0]), 10, 0.1)
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            store.add(cid, _results([1, 0]), 10, 0.1)  # the whole transaction is rolled back
        assert store.done_indices(cid) == {0}
        assert store.counts(cid).force_calls == 10


def test_final_state_roundtrip(tmp_path):
    r = TrajectoryResult(7, Outcome.SCATTERED, 100.0, -1e-5, 3e-5, 0.98, 3.02, 0.31, 0.77)
    with RunStore(tmp_path, SPEC, {}) as store:
        cid = store.condition_id(0.5)
        store.add(cid, [r, *_results([8])], 1, 0.0)
        got = store.trajectories(cid)
    assert got[0] == r
    assert math.isnan(got[1].v_final)


def test_a_different_run_is_refused(tmp_path):
    with RunStore(tmp_path, SPEC, {}):
        pass
    other = RunSpec(surface="100", temperature=925.0, v=1, J=1)
    with pytest.raises(StoreError, match="different run"):
        RunStore(tmp_path, other, {})


def _hold(path, started, release):
    with RunStore(path, SPEC, {}):
        started.set()
        release.wait(10)


def test_a_second_process_is_refused(tmp_path):
    ctx = mp.get_context("spawn")
    started, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(tmp_path, started, release))
    holder.start()
    try:
        assert started.wait(30)
        with pytest.raises(StoreError, match="in use"):
            RunStore(tmp_path, SPEC, {})
    finally:
        release.set()
        holder.join()
    RunStore(tmp_path, SPEC, {}).close()  # free again once the holder is gone


def test_corrupt_store_is_refused(tmp_path):
    (tmp_path / "results.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable"):
        RunStore(tmp_path, SPEC, {})


def test_wilson_interval_matches_scipy():
    from scipy.stats import binomtest

    for k, n in [(30, 100), (0, 10), (10, 10), (1, 3), (4321, 10000)]:
        ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson_interval(k, n) == pytest.approx((ref.low, ref.high), abs=1e-12)
