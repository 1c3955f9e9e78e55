"""Failed trajectories in the store, tallies and curves; non-finite values; stores of older versions; Wilson intervals.

Expectations are counted by hand from the results written here; the Wilson interval is the textbook formula.
"""

import math
import sqlite3

import pytest

from pyscatter.analysis.curves import load_results
from pyscatter.analysis.tally import Tally, wilson_interval
from pyscatter.conditions import RunSpec
from pyscatter.outcomes import Outcome, TrajectoryResult
from pyscatter.store import RunReader, RunStore

SPEC = RunSpec(surface="111", temperature=925.0, v=1, J=1)
D, S, T, F = Outcome.DISSOCIATED, Outcome.SCATTERED, Outcome.TRAPPED, Outcome.FAILED
nan, inf = math.nan, math.inf


def _wilson(k, n, z=1.959963984540054):
    """Wilson score interval, written out."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


RESULTS = [
    TrajectoryResult(0, D, 50.0, 1e-4, 2e-4),
    TrajectoryResult(1, F, 12.0, nan, inf, failure="non-finite forces at step 120"),
    TrajectoryResult(2, S, 900.0, 1e-4, 2e-4, 0.9, 1.1, 0.3, 0.8),
    TrajectoryResult(3, D, 60.0, 1e-4, 0.02),  # energy error above 10 meV
    TrajectoryResult(4, T, 3000.0, 1e-3, 3e-3),
    TrajectoryResult(5, F, nan, -inf, nan, failure="energy error 2.1 eV above the bound"),
    TrajectoryResult(6, D, 55.0, 1e-4, 2e-4),
    TrajectoryResult(7, S, 800.0, 1e-4, 2e-4, nan, 3.0, 0.2, nan),
]


@pytest.fixture
def run_dir(tmp_path):
    with RunStore(tmp_path, SPEC, {"model_identity": "x"}) as store:
        cid = store.condition_id(0.5)
        store.add(cid, RESULTS[:4], force_calls=40, wall_time_s=1.0)  # holds NaN and inf: must commit
        store.add(cid, RESULTS[4:], force_calls=60, wall_time_s=1.0)
    return tmp_path


def test_failed_trajectories_are_counted_but_left_out_of_the_probabilities(run_dir):
    with RunReader(run_dir) as store:
        cid = store.condition_id(0.5)
        c = store.counts(cid)
        assert (c.n_trajectories, c.n_dissociated, c.n_scattered, c.n_trapped, c.n_failed) == (8, 3, 2, 1, 2)
        assert c.n_energy_error_above_10meV == 1 and (c.force_calls, c.wall_time_s) == (100, 2.0)
        # failed ones are done: never recomputed on resume
        assert store.done_indices(cid) == set(range(8)) and list(store.missing_indices(cid, 10)) == [8, 9]
        assert store.count_done(cid, 8) == 8
        tally = Tally(c)
    assert (tally.p_stick, tally.p_scatter, tally.p_trapped) == pytest.approx((3 / 6, 2 / 6, 1 / 6))
    assert tally.p_stick_ci == pytest.approx(_wilson(3, 6), abs=1e-12)
    record = tally.as_dict()
    assert (record["n_trajectories"], record["n_failed"]) == (8, 2)
    assert record["p_trapped_ci"] == pytest.approx(_wilson(1, 6), abs=1e-12)
    row = load_results(run_dir).table.iloc[0]
    assert (row.n, row.n_dissociated, row.n_scattered, row.n_trapped, row.n_failed) == (8, 3, 2, 1, 2)
    assert row.P_stick == pytest.approx(0.5)
    assert (row.ci_low, row.ci_high) == pytest.approx(_wilson(3, 6), abs=1e-12)


def test_non_finite_values_come_back_as_nan_and_reasons_as_written(run_dir):
    with RunReader(run_dir) as store:
        got = store.trajectories(store.condition_id(0.5))
    assert got[1].outcome is F and got[1].failure == "non-finite forces at step 120"
    assert got[1].end_time == 12.0 and math.isnan(got[1].energy_drift) and math.isnan(got[1].max_energy_error)
    assert all(math.isnan(x) for x in (got[5].end_time, got[5].energy_drift, got[5].max_energy_error))
    assert got[2] == RESULTS[2] and got[2].failure == ""
    assert math.isnan(got[7].v_final) and got[7].J_final == 3.0
    con = sqlite3.connect(run_dir / "results.sqlite")
    assert con.execute("SELECT COUNT(*) FROM trajectories WHERE energy_drift_eV IS NULL").fetchone() == (2,)
    con.close()


def test_all_failed_gives_no_probability():
    from pyscatter.store import Counts

    tally = Tally(Counts(2, 0, 0, 0, 10, 1.0, n_failed=2))
    assert math.isnan(tally.p_stick) and tally.p_stick_ci == (0.0, 1.0)


OLD_SCHEMA = """
CREATE TABLE run (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE conditions (id INTEGER PRIMARY KEY, collision_energy REAL NOT NULL UNIQUE,
    force_calls INTEGER NOT NULL DEFAULT 0, wall_time_s REAL NOT NULL DEFAULT 0);
CREATE TABLE trajectories (condition_id INTEGER NOT NULL REFERENCES conditions(id), idx INTEGER NOT NULL,
    outcome TEXT NOT NULL, end_time_fs REAL NOT NULL, energy_drift_eV REAL NOT NULL, max_energy_error_eV REAL NOT NULL,
    v_final REAL, J_final REAL, translational_energy_eV REAL, internal_energy_eV REAL, PRIMARY KEY (condition_id, idx));
"""


def test_a_store_of_the_previous_schema_is_read_and_upgraded(tmp_path):
    import json

    con = sqlite3.connect(tmp_path / "results.sqlite")
    con.executescript(OLD_SCHEMA)
    con.execute("INSERT INTO run VALUES ('spec', ?)", (json.dumps(SPEC.as_dict(), sort_keys=True),))
    con.execute("INSERT INTO run VALUES ('provenance', '{}')")
    con.execute("INSERT INTO conditions VALUES (1, 0.5, 7, 0.5)")
    con.execute("INSERT INTO trajectories VALUES (1, 0, 'dissociated', 50, 0, 0, NULL, NULL, NULL, NULL)")
    con.execute("INSERT INTO trajectories VALUES (1, 1, 'scattered', 900, 0, 0, 1.0, 2.0, 0.3, 0.7)")
    con.commit()
    con.close()
    with RunReader(tmp_path) as store:
        cid = store.condition_id(0.5)
        assert store.target(cid) is None and [t.failure for t in store.trajectories(cid)] == ["", ""]
    with RunStore(tmp_path, SPEC, {}) as store:
        cid = store.condition_id(0.5)
        store.set_target(cid, 4)
        store.add(cid, [TrajectoryResult(2, F, nan, nan, nan, failure="NaN energy")], 3, 0.1)
    with RunReader(tmp_path) as store:
        c = store.counts(cid)
        assert (c.n_trajectories, c.n_dissociated, c.n_scattered, c.n_failed, c.force_calls) == (3, 1, 1, 1, 10)
        assert store.target(cid) == 4 and store.trajectories(cid)[2].failure == "NaN energy"
        assert store.trajectories(cid)[1].v_final == 1.0


def test_wilson_interval_against_the_formula_on_a_grid():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    for n in (1, 2, 3, 5, 10, 37, 100, 1000, 12345):
        for k in sorted({0, 1, 2, n // 3, n // 2, n - 1, n} & set(range(n + 1))):
            assert wilson_interval(k, n) == pytest.approx(_wilson(k, n), abs=1e-12), (k, n)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(3, 6, confidence=0.9) == pytest.approx(_wilson(3, 6, z=1.6448536269514722), abs=1e-12)
