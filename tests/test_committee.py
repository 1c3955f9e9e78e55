"""Committee runs: members on the main run's trajectories, paired model sd, resume, CLI, figure and fit.

The members are ``emt`` and a perturbed copy of the shipped ACE surrogate (its readouts scaled by 1.02): two
models whose sticking probabilities differ, cheap enough for a test.
"""

import dataclasses
import json
import sqlite3

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer

import pyscatter
from pyscatter.analysis.committee import MEMBER_COLUMNS
from pyscatter.analysis.curves import TABLE_COLUMNS, StickingCurve, load_results
from pyscatter.analysis.fitting import fit_erf
from pyscatter.analysis.plotting import sticking_curve_figure
from pyscatter.analysis.trajectories import trajectory_table
from pyscatter.cli.main import main
from pyscatter.conditions import RunSpec
from pyscatter.initial.sampler import build_initial_conditions, quantised_molecule
from pyscatter.initial.surface import build_slab
from pyscatter.initial.thermal import ThermalSnapshots
from pyscatter.models import SHIPPED, load_model
from pyscatter.store import SNAPSHOT_FILE, RunReader
from pyscatter.workflows.committee import member_directory
from pyscatter.workflows.run import run

ENERGIES = [0.3, 1.0]  # eV: at 0.3 eV EMT dissociates where the ACE member does not
SMALL = dict(surface="111", T=300.0, v=0, J=0, model="emt", n_snapshots=2, max_time=40.0, initial_height=2.0, dt=0.5,
             workers=1)
CLI_SMALL = ["--surface", "111", "--T", "300", "--v", "0", "--J", "0", "--model", "emt", "--snapshots", "2",
             "--max-time", "40", "--initial-height", "2", "--dt", "0.5", "--workers", "1"]
N = 6
INITIAL_STATE = ["snapshot", "impact_u", "impact_v", "cos_theta", "phi_deg", "vib_phase"]


def _outcomes(directory, energy: float) -> list[str]:
    """The stored outcomes of one energy by index, read straight from the SQLite file."""
    con = sqlite3.connect(directory / "results.sqlite")
    try:
        return [o for (o,) in con.execute("SELECT outcome FROM trajectories t JOIN conditions c ON c.id = t.condition_id "
                                          "WHERE c.collision_energy=? ORDER BY idx", (energy,))]
    finally:
        con.close()


def _cost(directory) -> tuple:
    """(force calls, stored trajectories) of a run directory, from the SQLite file."""
    con = sqlite3.connect(directory / "results.sqlite")
    try:
        return con.execute("SELECT SUM(force_calls) FROM conditions").fetchone() + con.execute(
            "SELECT COUNT(*) FROM trajectories").fetchone()
    finally:
        con.close()


def _p(outcomes: list[str]) -> float:
    return outcomes.count("dissociated") / len(outcomes)


def _members(directory) -> dict[str, object]:
    """Member model -> its sub-run directory, as the main store records them."""
    with RunReader(directory) as store:
        return {m["model"]: directory / m["directory"] for m in store.committee}


@pytest.fixture(scope="module")
def ace_member(tmp_path_factory):
    arrays = dict(np.load(SHIPPED["h2cu-ace"]))
    arrays["WB"], arrays["Wpair"] = arrays["WB"] * 1.02, arrays["Wpair"] * 1.02
    path = tmp_path_factory.mktemp("models") / "ace_perturbed.npz"
    np.savez(path, **arrays)
    return str(path)


@pytest.fixture(scope="module")
def committee_run(tmp_path_factory, ace_member):
    out = tmp_path_factory.mktemp("committee")
    curve = pyscatter.sticking_curve(energies=ENERGIES, trajectories=N, out=out, committee=["emt", ace_member], **SMALL)
    return out, curve


def test_model_sd_is_the_spread_of_the_members_own_runs(committee_run, ace_member, tmp_path):
    out, curve = committee_run
    assert list(curve.table.columns) == [*TABLE_COLUMNS, "n_committee", "P_stick_committee_mean", "P_stick_model_sd"]
    spec = curve.spec
    alone = {}
    for model in ("emt", ace_member):  # each member on its own, from the main run's snapshots
        run(dataclasses.replace(spec, model=model), ENERGIES, N, out_dir=tmp_path / model.replace("/", "_"),
            snapshots_from=out / SNAPSHOT_FILE)
        alone[model] = {e: _outcomes(tmp_path / model.replace("/", "_"), e) for e in ENERGIES}
    members = _members(out)
    assert list(members) == ["emt", ace_member]
    for row in curve.table.itertuples():
        e = row.collision_energy
        p = [_p(alone[m][e]) for m in members]
        assert row.n_committee == N
        assert row.P_stick_model_sd == pytest.approx(np.std(p, ddof=1), abs=1e-12)
        assert row.P_stick_committee_mean == pytest.approx(np.mean(p), abs=1e-12)
        assert curve.committee[curve.committee.collision_energy == e]["P_stick"].tolist() == pytest.approx(p)
        for m, directory in members.items():
            assert _outcomes(directory, e) == alone[m][e]  # the same trajectories, one by one
    assert curve.table.P_stick_model_sd.max() > 0.1  # the members disagree: the test can fail
    assert alone["emt"] == {e: _outcomes(out, e) for e in ENERGIES}  # emt as a member is the main run again


def test_members_start_from_the_main_runs_initial_conditions(committee_run, ace_member):
    out, curve = committee_run
    main_table = trajectory_table(out)
    snapshots = ThermalSnapshots.load(out / SNAPSHOT_FILE)
    slab = build_slab("111", snapshots.lattice_constant)
    starts = []
    for model, directory in _members(out).items():
        assert trajectory_table(directory)[INITIAL_STATE].equals(main_table[INITIAL_STATE])
        theirs = ThermalSnapshots.load(directory / SNAPSHOT_FILE)
        assert theirs.lattice_constant == snapshots.lattice_constant
        assert np.array_equal(theirs.positions, snapshots.positions)
        assert np.array_equal(theirs.velocities, snapshots.velocities)
        with RunReader(directory) as store:
            spec = store.spec
        assert spec == dataclasses.replace(curve.spec, model=model)
        sampler = build_initial_conditions(spec, 1.0, slab, theirs, quantised_molecule(spec, load_model(model)))
        starts.append([sampler.sample(i) for i in range(N)])
    for (x_emt, v_emt), (x_ace, v_ace) in zip(*starts):
        assert np.array_equal(x_emt[:-2], x_ace[:-2]) and np.array_equal(v_emt[:-2], v_ace[:-2])  # the slab
        assert x_emt[-2:].mean(axis=0) == pytest.approx(x_ace[-2:].mean(axis=0), abs=1e-12)  # centre of mass (H2)


def test_a_second_call_resumes_whatever_the_members_order_and_the_cli_shows_both_bars(committee_run, ace_member,
                                                                                        capsys):
    out, curve = committee_run
    directories = [out, *_members(out).values()]
    before = [_cost(d) for d in directories]
    again = pyscatter.sticking_curve(energies=ENERGIES, trajectories=N, out=out, committee=[ace_member, "emt"], **SMALL)
    assert [_cost(d) for d in directories] == before  # nothing recomputed
    assert list(_members(out)) == [ace_member, "emt"]  # the record follows the list; the runs follow the models
    assert sorted(_members(out).values()) == sorted(directories[1:]) == sorted((out / "committee").iterdir())
    pd.testing.assert_frame_equal(again.table, curve.table)
    by_model = lambda c: c.committee.sort_values(["collision_energy", "model"]).drop(columns="member").reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(by_model(again), by_model(curve))
    assert member_directory(ace_member, "ace:1") != member_directory(ace_member, "ace:2")

    energies = [str(e) for e in ENERGIES]
    assert main(["curve", *CLI_SMALL, "--energies", *energies, "--trajectories", str(N), "--out", str(out),
                 "--committee", "emt", ace_member, "--no-fit"]) == 0
    assert "N_comm     mean model sd" in capsys.readouterr().out
    assert [_cost(d) for d in directories] == before
    record = json.loads((out / "curve.json").read_text())
    assert [len(r["P_stick_members"]) for r in record["rows"]] == [2, 2]
    assert [m["model"] for m in record["committee"]] == ["emt", ace_member]
    assert pd.read_csv(out / "committee.csv").columns.tolist() == list(MEMBER_COLUMNS)
    assert main(["plot", str(out), "--out", str(out / "plot.png"), "--no-fit"]) == 0
    assert (out / "plot.png").stat().st_size > 0

    assert main(["run", *CLI_SMALL, "--energy", "1.0", "--trajectories", str(N), "--out", str(out),
                 "--committee", "emt", "--json"]) == 2  # one member is no committee
    assert "at least 2 members" in capsys.readouterr().err


def test_committee_trajectories_pair_the_members_with_the_main_model(committee_run, ace_member, tmp_path, capsys):
    out, _ = committee_run
    fresh = tmp_path / "paired"
    curve = pyscatter.sticking_curve(energies=[0.3], trajectories=N, out=fresh, committee=["emt", ace_member],
                                     committee_trajectories=3, snapshots_from=out / SNAPSHOT_FILE, **SMALL)
    members = _members(fresh)
    assert [_cost(d)[1] for d in members.values()] == [3, 3]  # members ran only the first 3
    main_all = _outcomes(fresh, 0.3)
    d = np.array([_p(_outcomes(directory, 0.3)) - _p(main_all[:3]) for directory in members.values()])
    row = curve.table.iloc[0]
    assert row.n == N and row.n_committee == 3
    assert curve.committee["P_stick_estimate"].tolist() == pytest.approx(_p(main_all) + d)
    assert row.P_stick_model_sd == pytest.approx(np.std(d, ddof=1), abs=1e-12)
    assert row.P_stick_model_sd > 0

    # the CLI on the fixture's run (nothing to compute): --json carries the paired estimate of its first 3
    code = main(["run", *CLI_SMALL, "--energy", "0.3", "--trajectories", str(N), "--out", str(out),
                 "--committee", "emt", ace_member, "--committee-trajectories", "3", "--json"])
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    main_all = _outcomes(out, 0.3)
    d = [_p(_outcomes(directory, 0.3)[:3]) - _p(main_all[:3]) for directory in _members(out).values()]
    assert code == 0 and record["committee_trajectories"] == 3
    assert record["p_stick_members"] == pytest.approx(list(_p(main_all) + np.array(d)))
    assert record["p_stick_model_sd"] == pytest.approx(np.std(d, ddof=1), abs=1e-12)
    assert record["p_stick_committee_mean"] == pytest.approx(_p(main_all) + np.mean(d))
    assert [m["model"] for m in record["committee"]] == ["emt", ace_member]
    assert [m["n_trajectories"] for m in record["committee"]] == [3, 3]
    assert main(["run", *CLI_SMALL, "--energy", "0.3", "--trajectories", str(N), "--out", str(out),
                 "--committee", "emt", ace_member, "--committee-trajectories", "3"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].endswith("N_comm     mean model sd")
    assert table[2].endswith(f"     3 {record['p_stick_committee_mean']:8.4f} {record['p_stick_model_sd']:8.4f}")


def _synthetic_curve() -> StickingCurve:
    """A curve with a 3-member committee over 4 energies (counts out of 200, nothing failed)."""
    energies, n = [0.3, 0.4, 0.5, 0.6], 200
    main = [10, 50, 110, 160]
    members = [[8, 40, 100, 150], [14, 60, 120, 170], [6, 45, 95, 165]]
    rows = [dict(collision_energy=e, n=n, n_dissociated=k, n_scattered=n - k, n_trapped=0, n_failed=0, P_stick=k / n,
                 ci_low=k / n - 0.05, ci_high=k / n + 0.05, n_committee=n,
                 P_stick_committee_mean=np.mean([m[i] / n for m in members]),
                 P_stick_model_sd=np.std([m[i] / n for m in members], ddof=1))
            for i, (e, k) in enumerate(zip(energies, main))]
    committee = [dict(collision_energy=e, member=j, model=f"m{j}", model_identity=f"id{j}", n=n, n_dissociated=m[i],
                      n_failed=0, P_stick=m[i] / n, P_stick_estimate=m[i] / n)
                 for j, m in enumerate(members) for i, e in enumerate(energies)]
    spec = RunSpec(surface="111", temperature=300.0, v=0, J=0, model="emt")
    return StickingCurve(None, spec, {}, pd.DataFrame(rows), pd.DataFrame(committee)), members, energies, n


def test_fit_reports_the_members_spread_of_E0_and_the_figure_draws_two_bars():
    curve, members, energies, n = _synthetic_curve()
    fit = curve.fit()
    E0s = [fit_erf(energies, m, [n] * 4).E0 for m in members]
    assert fit.model_err("E0") == pytest.approx(np.std(E0s, ddof=1), rel=1e-6)
    assert fit.model_err("E0") > 0.005
    assert fit.E0 == pytest.approx(fit_erf(energies, curve.table.n_dissociated, [n] * 4).E0)
    assert "(model)" in repr(fit) and fit.as_dict()["E0_model_err_eV"] == pytest.approx(fit.model_err("E0"))
    ax = sticking_curve_figure([curve], [fit]).axes[0]
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 2
    assert [line.get_linewidth() for line in bars[1].lines[2]] != [line.get_linewidth() for line in bars[0].lines[2]]
    labels = [t.get_text() for t in ax.figure.legends[0].get_texts()]
    assert any("sd between models" in label for label in labels) and any("(model)" in label for label in labels)


def test_load_results_reads_the_committee(committee_run):
    out, curve = committee_run
    loaded = load_results(out)
    pd.testing.assert_frame_equal(loaded.table, curve.table)
    assert loaded.committee is not None and len(loaded.committee) == 2 * len(ENERGIES)
