"""Per-trajectory data: regenerated initial conditions, export, replay, reactivity maps, model objects."""

import importlib.util
import json
import os
import pickle
import stat

import ase.io
import numpy as np
import pandas as pd
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from scipy.stats import binomtest

import pyscatter
from pyscatter.analysis.curves import load_results
from pyscatter.cli.main import main
from pyscatter.initial.molecule import bond_length_at
from pyscatter.initial.sampler import draw_trajectory
from pyscatter.initial.sites import surface_sites
from pyscatter.initial.surface import build_slab
from pyscatter.initial.thermal import ThermalSnapshots
from pyscatter.models import ModelRef, model_object
from pyscatter.models.emt import RC_LIST
from pyscatter.store import SNAPSHOT_FILE, RunReader
from pyscatter.workflows.execution import Job, build

ENERGY = 0.3  # eV: with EMT and 150 fs, trajectories dissociate or are still trapped
RUN = ["--surface", "111", "--T", "300", "--v", "1", "--J", "1", "--model", "emt", "--max-time", "150",
       "--snapshots", "2", "--workers", "1", "--energy", str(ENERGY)]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A small EMT run that also saved its first trapped trajectory."""
    out = tmp_path_factory.mktemp("data") / "run"
    assert main(["run", *RUN, "--trajectories", "10", "--out", str(out), "--save-trajectories", "1",
                 "--save-outcome", "trapped"]) == 0
    return out


def _initial(directory):
    with RunReader(directory) as store:
        spec, identity = store.spec, store.provenance["model_identity"]
    path = directory / SNAPSHOT_FILE
    job = Job(spec, ENERGY, ThermalSnapshots.load(path).lattice_constant, str(path), ModelRef(spec.model, identity=identity), 1)
    return build(job)[1]


def test_regenerated_draws_reproduce_the_sampler_and_the_table_describes_them(run_dir):
    table = load_results(run_dir).trajectories
    initial = _initial(run_dir)
    with RunReader(run_dir) as store:
        spec = store.spec
    assert len(table) == 10 and table["counted"].all()
    assert list(table["index"]) == list(range(10))
    cell = initial.frame.cell
    for row in table.itertuples():
        positions, velocities = initial.sample(row.index)
        again = initial.start(draw_trajectory(spec.seed, ENERGY, row.index, spec.n_snapshots))
        assert np.array_equal(again[0], positions) and np.array_equal(again[1], velocities)  # bit for bit
        # the table's columns, checked against the sampled structure itself
        a, b = positions[-2:]
        bond = b - a
        com = (a + b) / 2  # H2: equal masses
        assert np.allclose(com[:2], [row.impact_x, row.impact_y], atol=1e-9)
        assert np.allclose((np.array([row.impact_u, row.impact_v]) @ cell[:2])[:2], com[:2], atol=1e-9)
        r = np.linalg.norm(bond)
        assert r == pytest.approx(bond_length_at(initial.level, row.vib_phase), abs=1e-9)
        assert bond[2] / r == pytest.approx(row.cos_theta, abs=1e-9)
        assert np.degrees(np.arccos(bond[2] / r)) == pytest.approx(row.theta_deg, abs=1e-6)
        assert np.degrees(np.arctan2(bond[1], bond[0])) % 360 == pytest.approx(row.phi_deg, abs=1e-6)
        assert np.array_equal(positions[:-2], initial.snapshots.positions[row.snapshot])
    with RunReader(run_dir) as store:
        stored = {t.index: t for t in store.trajectories(store.condition_id(ENERGY))}
    for row in table.itertuples():
        assert (row.outcome, row.end_time_fs) == (stored[row.index].outcome.label, stored[row.index].end_time)


@pytest.mark.parametrize("surface, points, expected", [
    ("111", [(0, 0), (1 / 6, 0), (2 / 9, 2 / 9), (1 / 9, 1 / 9), (0.02, 0.01)],
     ["top", "bridge", "hcp hollow", "fcc hollow", "top"]),
    ("100", [(0, 0), (1 / 6, 0), (0, 1 / 6), (1 / 6, 1 / 6)], ["top", "bridge", "bridge", "hollow"]),
    ("110", [(0, 0), (0, 1 / 6), (1 / 6, 0), (1 / 6, 1 / 6)], ["top", "short bridge", "long bridge", "hollow"]),
    ("211", [(2 / 3, 0.1), (1 / 3, 0.5), (0.02, 0.9), (0.98, 0.3)], ["step edge", "terrace", "step foot", "step foot"]),
])
def test_site_classes_of_high_symmetry_points(surface, points, expected):
    # fractional points of the 3x3 cell (Cu(211): across the step, along it); on Cu(111) the hcp hollow lies
    # above a second-layer atom (2/9, 2/9) and the fcc hollow above a third-layer one (1/9, 1/9); Cu(110)'s
    # close-packed rows run along the second cell vector, Cu(211)'s step edge is the row at u = 2/3
    sites = surface_sites(build_slab(surface, 3.6))
    assert list(sites.classify(np.array(points))) == expected


def test_export_formats(run_dir, tmp_path, capsys):
    for fmt in ("csv", "json"):
        assert main(["export", str(run_dir), "--format", fmt, "--out", str(tmp_path / f"t.{fmt}")]) == 0
    csv = pd.read_csv(tmp_path / "t.csv", keep_default_na=False)
    records = json.loads((tmp_path / "t.json").read_text())
    table = load_results(run_dir).trajectories
    assert len(csv) == len(records) == len(table) == 10
    assert list(csv.columns) == list(table.columns) == list(records[0])
    assert list(csv["site"]) == [r["site"] for r in records] == list(table["site"])
    assert np.array_equal(csv["impact_u"].to_numpy(), table["impact_u"].to_numpy())
    capsys.readouterr()
    code = main(["export", str(run_dir), "--format", "parquet", "--out", str(tmp_path / "t.parquet")])
    if importlib.util.find_spec("pyarrow") is None:
        err = capsys.readouterr().err
        assert code == 2 and "pyarrow" in err and err.count("\n") == 1
    else:
        assert code == 0 and pd.read_parquet(tmp_path / "t.parquet").equals(table)


def test_saved_and_replayed_trajectories_end_as_stored(run_dir, tmp_path, capsys):
    with RunReader(run_dir) as store:
        stored = store.trajectories(store.condition_id(ENERGY))
    trapped = next(t for t in stored if t.outcome.label == "trapped")
    saved = sorted((run_dir / "trajectories").iterdir())
    assert [p.name for p in saved] == [f"E{ENERGY:g}_{trapped.index}.extxyz"]
    dissociated = next(t for t in stored if t.outcome.label == "dissociated")
    out = tmp_path / "replay.extxyz"
    assert main(["replay", str(run_dir), "--index", str(dissociated.index), "--out", str(out)]) == 0
    initial = _initial(run_dir)
    for path, result in ((saved[0], trapped), (out, dissociated)):
        frames = ase.io.read(path, ":")
        last = frames[-1].info
        assert (last["outcome"], last["end_time_fs"]) == (result.outcome.label, result.end_time)
        times = np.array([f.info["time_fs"] for f in frames])
        assert np.allclose(np.diff(times[:-1]), 1.0) and times[0] == 0.0 and times[-1] == result.end_time
        assert np.allclose(frames[0].positions, initial.sample(result.index)[0], atol=1e-6)
        assert frames[0].info["free_flight"] and not frames[-1].info["free_flight"]
        total = np.array([f.get_potential_energy() + f.get_kinetic_energy() for f in frames])
        assert np.abs(total - total[0]).max() < 0.02  # eV: free-flight frames add the drawn slab consistently
        assert all(f.get_forces().shape == (len(f), 3) for f in frames)


def test_report_writes_reactivity_tables_outside_a_read_only_run(run_dir, tmp_path):
    mode, before = run_dir.stat().st_mode, sorted(p.name for p in run_dir.iterdir())
    os.chmod(run_dir, mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        assert main(["report", str(run_dir), "--out-dir", str(tmp_path / "report")]) == 0
    finally:
        os.chmod(run_dir, mode)
    assert sorted(p.name for p in run_dir.iterdir()) == before  # also where root may write anyway
    sites = pd.read_csv(tmp_path / "report" / "reactivity_sites.csv")
    angles = pd.read_csv(tmp_path / "report" / "reactivity_orientation.csv")
    assert (tmp_path / "report" / "reactivity_map.png").stat().st_size > 0
    table = load_results(run_dir).trajectories
    assert list(sites["site"]) == ["top", "bridge", "fcc hollow", "hcp hollow"]
    assert sites["n"].sum() == angles["n"].sum() == len(table)
    for frame in (sites, angles):
        for row in frame[frame["n"] > 0].itertuples():
            ci = binomtest(row.n_dissociated, row.n).proportion_ci(method="wilson")
            assert (row.ci_low, row.ci_high) == pytest.approx((ci.low, ci.high), abs=1e-12)
    for row in sites.itertuples():
        at = table[table["site"] == row.site]
        assert (row.n, row.n_dissociated) == (len(at), int((at["outcome"] == "dissociated").sum()))
    cos = table["cos_theta"].abs()
    first = angles.iloc[0]
    assert first["n"] == int(((cos >= first["bin_low"]) & (cos < first["bin_high"])).sum())


class _Unpicklable(EMT):
    def __init__(self):
        super().__init__()
        self.hook = lambda: None


def test_an_ase_calculator_as_the_model_gives_the_outcomes_of_pyscatters_emt(tmp_path):
    small = dict(surface="111", T=300.0, v=1, J=1, energies=[ENERGY], trajectories=2, max_time=100.0,
                 n_snapshots=2, seed=5)
    reference = pyscatter.sticking_curve(model="emt", out=tmp_path / "emt", **small)
    curve = pyscatter.sticking_curve(model=EMT(), out=tmp_path / "ase", snapshots_from=tmp_path / "emt" / SNAPSHOT_FILE,
                                     **small)
    assert curve.spec.model == "ase:EMT"
    assert curve.provenance["model_class"] == "ase.calculators.emt.EMT"
    assert curve.provenance["model_parameters"] == {"asap_cutoff": False}
    columns = ["index", "outcome", "end_time_fs"]
    assert curve.trajectories[columns].equals(reference.trajectories[columns])
    assert curve.table.equals(reference.table)
    with pytest.raises(ValueError, match="use workers=1"):
        pyscatter.sticking_curve(model=_Unpicklable(), out=tmp_path / "refused", workers=2, **small)
    assert not (tmp_path / "refused").exists()
    name, wrapped = model_object(EMT())
    atoms = bulk("Cu")
    atoms.calc = wrapped.calculator
    atoms.get_potential_energy()  # ASE's EMT now holds a lambda: it no longer pickles itself
    again = pickle.loads(pickle.dumps(wrapped))
    assert name == "ase:EMT" and again.identity == wrapped.identity and again.cutoff == pytest.approx(RC_LIST)


def test_plot_and_reprs(run_dir):
    from matplotlib.figure import Figure

    curve = load_results(run_dir)
    assert isinstance(curve.plot(), Figure)
    text = repr(curve)
    assert text.startswith("StickingCurve(H2(v=1, J=1)/Cu(111), 300 K, model emt; 1 energies;") and "P_stick" in text
    assert repr(curve.table) != text
    from pyscatter.analysis.fitting import fit_erf
    from pyscatter.analysis.tally import Tally
    from pyscatter.store import Counts

    fit = fit_erf([0.2, 0.4, 0.6, 0.8], [10, 40, 70, 80], [100] * 4)
    assert repr(fit).startswith(f"ErfFit(A={fit.A:.4g} ± ") and f"E0={fit.E0:.4g}" in repr(fit)
    assert repr(Tally(Counts(10, 4, 3, 2, 0, 0.0, n_failed=1))) == (
        "Tally(P_stick=0.4444 [0.1888, 0.7333] of 9: 4 dissociated, 3 scattered, 2 trapped; 1 failed)")
