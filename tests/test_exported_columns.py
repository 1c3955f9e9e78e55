"""Every exported column against the store and against the saved trajectories' first and last frames, in a run
whose molecules scatter (h2cu-ace, H2 v=0 J=1 at 0.5 eV on Cu(111): all four scatter), with every trajectory saved.
The frames are checked with closed forms (centre-of-mass motion, angular momentum) and the snapshot file, not with
the sampler that made them; extended XYZ holds 8 decimals, hence tolerances near 1e-7. Units: Å, eV, fs."""

import math

import ase.io
import numpy as np
import pandas as pd
import pytest
from ase.units import _hbar, J as JOULE, s as SECOND

from pyscatter.cli.main import main
from pyscatter.initial.molecule import final_state
from pyscatter.initial.sampler import quantised_molecule
from pyscatter.initial.surface import build_slab
from pyscatter.initial.thermal import ThermalSnapshots
from pyscatter.models import load_model
from pyscatter.store import SNAPSHOT_FILE, RunReader

ENERGY = 0.5
N = 4
HBAR = _hbar * JOULE * SECOND  # eV · ASE time
STORED = {"outcome": lambda t: t.outcome.label, "end_time_fs": lambda t: t.end_time,
          "energy_drift_eV": lambda t: t.energy_drift, "max_energy_error_eV": lambda t: t.max_energy_error,
          "failure": lambda t: t.failure or "", "v_final": lambda t: t.v_final, "J_final": lambda t: t.J_final,
          "E_trans_final": lambda t: t.translational_energy, "E_internal_final": lambda t: t.internal_energy}


@pytest.fixture(scope="module")
def scattered_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("scattered") / "run"
    assert main(["run", "--surface", "111", "--T", "300", "--v", "0", "--J", "1", "--energy", str(ENERGY),
                 "--snapshots", "2", "--max-time", "400", "--trajectories", str(N), "--workers", "1",
                 "--out", str(out), "--save-trajectories", str(N)]) == 0
    csv = out / "export.csv"
    assert main(["export", str(out), "--format", "csv", "--out", str(csv)]) == 0
    return out, pd.read_csv(csv, keep_default_na=False)


def angular_momentum_quantum_number(masses: np.ndarray, x: np.ndarray, v: np.ndarray) -> float:
    """Real-valued J of a diatomic (2, 3) Å, ASE velocities, from |L|^2 = J (J + 1) hbar^2."""
    mu = masses[0] * masses[1] / masses.sum()
    L = np.linalg.norm(mu * np.cross(x[1] - x[0], v[1] - v[0])) / HBAR
    return (-1.0 + math.sqrt(1.0 + 4.0 * L * L)) / 2.0


def test_exported_columns_match_the_store_and_the_saved_frames(scattered_run):
    out, table = scattered_run
    with RunReader(out) as store:
        stored = {t.index: t for t in store.trajectories(store.condition_id(ENERGY))}
    assert sorted(table["index"]) == sorted(stored) == list(range(N))
    assert (table["outcome"] == "scattered").all()
    for row in table.to_dict("records"):
        for column, value in STORED.items():
            want = value(stored[row["index"]])
            assert row[column] == (pytest.approx(want, rel=1e-12) if isinstance(want, float) else want), column

    snapshots = ThermalSnapshots.load(out / SNAPSHOT_FILE)
    slab = build_slab("111", snapshots.lattice_constant)
    model = load_model("h2cu-ace")
    potential, level = quantised_molecule_of(model)
    for row in table.to_dict("records"):
        frames = ase.io.read(out / "trajectories" / f"E{ENERGY:g}_{row['index']}.extxyz", ":")
        first, last = frames[0], frames[-1]
        masses = first.get_masses()[-2:]
        total = masses.sum()
        # initial conditions: the drawn snapshot, the impact point at 7 Å, the approach, the bond's direction, J = 1
        assert first.info["time_fs"] == 0.0
        np.testing.assert_allclose(first.positions[:-2], snapshots.positions[row["snapshot"]], rtol=0, atol=1e-7)
        np.testing.assert_allclose(first.get_velocities()[:-2], snapshots.velocities[row["snapshot"]], rtol=0, atol=1e-7)
        x, v = first.positions[-2:], first.get_velocities()[-2:]
        com, com_v = masses @ x / total, masses @ v / total
        np.testing.assert_allclose(com[:2], [row["impact_x"], row["impact_y"]], rtol=0, atol=1e-6)
        top = snapshots.positions[row["snapshot"]][slab.top_layer, 2].mean()
        assert com[2] - top == pytest.approx(7.0, abs=1e-6)
        np.testing.assert_allclose(com_v, [0.0, 0.0, -math.sqrt(2.0 * ENERGY / total)], rtol=0, atol=1e-7)
        bond = (x[1] - x[0]) / np.linalg.norm(x[1] - x[0])
        assert bond[2] == pytest.approx(row["cos_theta"], abs=1e-6)
        assert math.degrees(math.atan2(bond[1], bond[0])) % 360.0 == pytest.approx(row["phi_deg"], abs=1e-4)
        assert angular_momentum_quantum_number(masses, x, v) == pytest.approx(1.0, abs=1e-5)
        # the end: outcome and end time, and the final state of the last frame's molecule (free from there on)
        assert (last.info["outcome"], last.info["end_time_fs"]) == (row["outcome"], row["end_time_fs"])
        assert last.info["time_fs"] <= row["end_time_fs"]
        x, v = last.positions[-2:], last.get_velocities()[-2:]
        assert 0.5 * total * np.sum((masses @ v / total) ** 2) == pytest.approx(row["E_trans_final"], abs=1e-6)
        assert angular_momentum_quantum_number(masses, x, v) == pytest.approx(row["J_final"], abs=1e-5)
        final = final_state(potential, level.molecule, x, v)
        assert float(final.v) == pytest.approx(row["v_final"], abs=1e-5)
        assert float(final.internal_energy) == pytest.approx(row["E_internal_final"], abs=1e-6)
        assert row["E_trans_final"] + row["E_internal_final"] < ENERGY + level.energy + 0.1  # a little slab heat


def quantised_molecule_of(model):
    from pyscatter.conditions import RunSpec

    return quantised_molecule(RunSpec(surface="111", temperature=300.0, v=0, J=1), model)
