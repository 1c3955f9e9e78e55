"""Final-state analysis on a hand-made run directory, against counts worked out by hand."""

import math

import numpy as np
import pytest

from pyscatter.conditions import RunSpec
from pyscatter.analysis.finalstate import bin_rotational, final_state_summary, populations, scattered_molecules
from pyscatter.outcomes import Outcome, TrajectoryResult
from pyscatter.analysis.plotting import plot_final_states
from pyscatter.store import RunStore

E = 0.3  # eV
S, D = Outcome.SCATTERED, Outcome.DISSOCIATED
nan = math.nan
# index: (outcome, v', J', E'_trans eV); index 6 is missing (interrupted), so index 7 must not count
TRAJECTORIES = {
    0: (S, 1.2, 2.2, 0.25),   # v'=1, J'=3 (odd, like J=1)
    1: (S, 0.4, 0.6, 0.10),   # v'=0, J'=1
    2: (D, nan, nan, nan),
    3: (S, 2.6, 4.9, 0.28),   # v'=3, J'=5
    4: (S, -0.3, 3.1, 0.20),  # v'=0 (below zero point), J'=3
    5: (S, nan, 7.8, 0.05),   # unbound, J'=7
    7: (S, 1.0, 1.0, 0.30),
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fs")
    with RunStore(directory, RunSpec(surface="111", temperature=925.0, v=1, J=1), {"model_identity": "x"}) as store:
        cid = store.condition_id(E)
        store.add(cid, [TrajectoryResult(i, o, 100.0, 0.0, 0.0, v_final=v, J_final=j, translational_energy=et,
                                         internal_energy=0.5) for i, (o, v, j, et) in TRAJECTORIES.items()], 0, 0.0)
    return directory


def test_populations_and_summary_by_hand(run_dir, tmp_path):
    molecules = scattered_molecules(run_dir)
    assert sorted(molecules["index"]) == [0, 1, 3, 4, 5]
    pop_v = populations(molecules, "v_bin").loc[E]
    assert pop_v.to_dict() == pytest.approx({0: 2 / 5, 1: 1 / 5, 3: 1 / 5})
    pop_J = populations(molecules, "J_bin").loc[E]
    assert pop_J.to_dict() == pytest.approx({1: 1 / 5, 3: 2 / 5, 5: 1 / 5, 7: 1 / 5})
    row = final_state_summary(molecules).iloc[0]
    assert (row.n, row.n_scattered, row.n_unbound) == (6, 5, 1)
    assert row.P_vib_excitation == pytest.approx(1 / 5) and row.P_vib_deexcitation == pytest.approx(2 / 5)
    e_trans = np.array([0.25, 0.10, 0.28, 0.20, 0.05])
    assert row.mean_E_trans_final == pytest.approx(e_trans.mean())
    assert row.mean_E_trans_loss == pytest.approx(E - e_trans.mean())
    assert row.mean_E_trans_loss_err == pytest.approx(e_trans.std(ddof=1) / np.sqrt(5))
    lo, hi = row.P_vib_excitation_ci
    assert lo < 0.2 < hi
    out = plot_final_states(molecules, final_state_summary(molecules), populations(molecules, "v_bin"),
                            populations(molecules, "J_bin"), tmp_path / "fs.png")
    assert out.stat().st_size > 10_000


def test_rotational_binning_keeps_nuclear_spin_parity_for_homonuclear_molecules():
    J = np.array([0.4, 1.2, 2.2, 2.9])
    assert bin_rotational(J, 1, homonuclear=True).tolist() == [1, 1, 3, 3]
    assert bin_rotational(J, 0, homonuclear=True).tolist() == [0, 2, 2, 2]
    assert bin_rotational(J, 1, homonuclear=False).tolist() == [0, 1, 2, 3]
