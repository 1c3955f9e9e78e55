"""Sticking curves: API and CLI through the run store, loading without recomputation, adaptive stopping."""

import json
import sqlite3

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

import pyscatter
from pyscatter.conditions import Termination
from pyscatter import cli
from pyscatter.conditions import RunSpec
from pyscatter.analysis.curves import load_results
from pyscatter.analysis.stored import complete_prefix
from pyscatter.analysis.sample_size import SampleSizeRule
from pyscatter.workflows.curve import run_curve
from pyscatter.outcomes import Outcome, TrajectoryResult
from pyscatter.store import RunStore

SMALL = {"surface": "111", "T": 300.0, "v": 0, "J": 0, "n_snapshots": 2, "max_time": 150.0, "model": "emt"}
ENERGIES = [0.1, 0.2]  # eV: with EMT and 150 fs, some trajectories dissociate, some are still trapped


def _raw_counts(directory, limits):
    """Outcome counts read straight from the SQLite file, trajectories with index < limit per energy."""
    con = sqlite3.connect(directory / "results.sqlite")
    try:
        rows = con.execute(
            "SELECT c.collision_energy, t.idx, t.outcome FROM trajectories t JOIN conditions c ON c.id = t.condition_id"
        ).fetchall()
    finally:
        con.close()
    frame = pd.DataFrame(rows, columns=["E", "idx", "outcome"])
    return {E: frame[(frame.E == E) & (frame.idx < n)].outcome.value_counts().to_dict() for E, n in limits.items()}


def _force_calls(directory):
    con = sqlite3.connect(directory / "results.sqlite")
    try:
        return con.execute("SELECT SUM(force_calls) FROM conditions").fetchone(), con.execute(
            "SELECT COUNT(*) FROM trajectories").fetchone()
    finally:
        con.close()


def _check_table(table, raw):
    assert list(table.columns) == ["collision_energy", "n", "n_dissociated", "n_scattered", "n_trapped", "n_failed",
                                   "P_stick", "ci_low", "ci_high"]
    for row in table.itertuples():
        counts = raw[row.collision_energy]
        assert (row.n_dissociated, row.n_scattered, row.n_trapped) == tuple(
            counts.get(o, 0) for o in ("dissociated", "scattered", "trapped"))
        assert row.n == sum(counts.values())
        assert row.P_stick == row.n_dissociated / row.n
        ci = binomtest(row.n_dissociated, row.n).proportion_ci(method="wilson")
        assert (row.ci_low, row.ci_high) == pytest.approx((ci.low, ci.high), abs=1e-12)


@pytest.fixture(scope="module")
def curve_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("curve")
    curve = pyscatter.sticking_curve(energies=ENERGIES, trajectories=8, out=out, **SMALL)
    return out, curve


def test_sticking_curve_table_matches_the_store(curve_dir):
    out, curve = curve_dir
    assert curve.directory == out
    assert list(curve.table.collision_energy) == ENERGIES
    _check_table(curve.table, _raw_counts(out, dict.fromkeys(ENERGIES, 8)))
    assert curve.spec == RunSpec(surface="111", temperature=300.0, v=0, J=0, n_snapshots=2, termination=Termination(max_time=150.0), model="emt")


def test_load_results_and_resume_compute_nothing(curve_dir):
    out, curve = curve_dir
    before = _force_calls(out)
    loaded = load_results(out)
    pd.testing.assert_frame_equal(loaded.table, curve.table)
    again = pyscatter.sticking_curve(energies=ENERGIES, trajectories=8, out=out, **SMALL)
    pd.testing.assert_frame_equal(again.table, curve.table)
    assert _force_calls(out) == before


def test_load_results_counts_only_the_complete_index_prefix(tmp_path):
    spec = RunSpec(surface="111", temperature=300.0, v=0, J=0)
    outcomes = [Outcome.DISSOCIATED, Outcome.SCATTERED, Outcome.DISSOCIATED, Outcome.TRAPPED, Outcome.DISSOCIATED]
    with RunStore(tmp_path, spec, {"model_identity": "test"}) as store:
        cid = store.condition_id(0.3)
        # index 3 missing, as after an interruption: index 4 must not count
        store.add(cid, [TrajectoryResult(i, o, 10.0, 0.0, 0.0) for i, o in enumerate(outcomes) if i != 3], 0, 0.0)
    assert complete_prefix({0, 1, 2, 4}) == 3 and complete_prefix(set()) == 0
    row = load_results(tmp_path).table.iloc[0]
    assert (row.n, row.n_dissociated, row.n_scattered, row.n_trapped) == (3, 2, 1, 0)
    with pytest.raises(Exception, match="no condition at"):
        load_results(tmp_path, energies=[0.4])
    assert load_results(tmp_path).table.collision_energy.tolist() == [0.3]  # asking created nothing


def test_load_results_of_a_missing_directory_fails_cleanly(tmp_path):
    with pytest.raises(Exception, match="not a pyscatter run directory"):
        load_results(tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()


def test_adaptive_stopping_looks_and_stops_by_the_rule(tmp_path):
    rule = SampleSizeRule(half_width=0.2, cap=24, first=6)
    spec = RunSpec(surface="111", temperature=300.0, v=0, J=0, n_snapshots=2, termination=Termination(max_time=150.0), model="emt")
    curve = run_curve(spec, ENERGIES, trajectories=24, out=tmp_path, sample_size=rule)
    raw = _raw_counts(tmp_path, dict.fromkeys(ENERGIES, 10**9))
    for row in curve.table.itertuples():
        # replay the looks on the raw per-index outcomes
        con = sqlite3.connect(tmp_path / "results.sqlite")
        outcomes = [o for (o,) in con.execute(
            "SELECT outcome FROM trajectories t JOIN conditions c ON c.id=t.condition_id"
            " WHERE c.collision_energy=? ORDER BY idx", (row.collision_energy,))]
        con.close()
        n, looks = rule.first_look, []
        while n is not None:
            looks.append(n)
            n = rule.next_look(n, outcomes[:n].count("dissociated"))
        assert row.n == looks[-1] and len(outcomes) == looks[-1]  # nothing beyond the stopping look was run
        assert (row.ci_high - row.ci_low) / 2 <= rule.half_width or row.n == rule.cap
        assert sum(raw[row.collision_energy].values()) == row.n


def _simulate_stopping(rule, p, repetitions, rng):
    """Final (n, dissociated) of ``repetitions`` independent conditions with true P_stick ``p`` under ``rule``."""
    n = np.full(repetitions, rule.first_look)
    k = rng.binomial(n, p)
    active = np.ones(repetitions, bool)
    while active.any():
        pairs, inverse = np.unique(np.stack([n[active], k[active]]), axis=1, return_inverse=True)
        nxt = np.array([rule.next_look(int(a), int(b)) or 0 for a, b in pairs.T])[inverse.ravel()]
        idx = np.flatnonzero(active)
        stop = nxt == 0
        active[idx[stop]] = False
        grow = idx[~stop]
        k[grow] += rng.binomial(nxt[~stop] - n[grow], p)
        n[grow] = nxt[~stop]
    return n, k


@pytest.mark.parametrize("half_width", [0.02, 0.05])
def test_adaptive_stopping_coverage_and_bias_by_simulation(half_width):
    """Optional stopping: the 95 % Wilson interval at the stopping look still covers P about 95 % of the time,
    and P̂ is nearly unbiased (binomial draws, no dynamics; 20000 conditions per P).

    Where the first look (n = 100) already stops (P ≤ 0.01 or ≥ 0.99 at H = 0.05) the coverage is that
    of the fixed-n Wilson interval, which dips to 0.91 there by itself.
    """
    from pyscatter.analysis.tally import wilson_interval

    rule = SampleSizeRule(half_width=half_width, cap=20000)
    rng = np.random.default_rng(2024)
    for p in (0.005, 0.03, 0.05, 0.2, 0.5, 0.8, 0.95, 0.97, 0.995):
        n, k = _simulate_stopping(rule, p, 20000, rng)
        final = list(zip(k.tolist(), n.tolist()))
        bounds = {pair: wilson_interval(*pair) for pair in set(final)}
        covered = np.mean([bounds[pair][0] <= p <= bounds[pair][1] for pair in final])
        assert covered >= (0.935 if 0.05 <= p <= 0.95 else 0.905) and covered <= 0.985, (p, covered)
        assert abs(np.mean(k / n) - p) <= 0.16 * half_width, (p, np.mean(k / n) - p)
        assert max((bounds[pair][1] - bounds[pair][0]) / 2 for pair in final) <= half_width


def test_curve_plot_report_commands(curve_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "cli"
    args = ["curve", "--surface", "111", "--T", "300", "--v", "0", "--J", "0", "--snapshots", "2", "--max-time", "150",
            "--model", "emt", "--energies", "0.2", "0.1", "--trajectories", "8", "--no-fit", "--out", str(out),
            "--reference", "1", "0.15", "0.05", "a reference"]
    assert cli.main(args) == 0
    table = pd.read_csv(out / "curve.csv")
    _check_table(table, _raw_counts(out, dict.fromkeys(ENERGIES, 8)))
    record = json.loads((out / "curve.json").read_text())
    assert [r["collision_energy"] for r in record["rows"]] == ENERGIES and record["references"][0]["E0"] == 0.15
    assert (out / "curve.png").stat().st_size > 10_000
    # same spec and seed as the API's curve: the same trajectories
    pd.testing.assert_frame_equal(table, load_results(curve_dir[0]).table, check_dtype=False)

    assert cli.main(["plot", str(out), str(curve_dir[0]), "--out", str(tmp_path / "both.svg")]) == 0
    assert (tmp_path / "both.svg").read_text().count("<svg") == 1
    assert cli.main(["report", str(out)]) == 0
    assert pd.read_csv(out / "final_states.csv")["n"].tolist() == [8, 8]
    capsys.readouterr()
    assert cli.main(["plot", str(tmp_path / "missing"), "--out", str(tmp_path / "x.png")]) == 2
    assert "not a pyscatter run directory" in capsys.readouterr().err
