"""Failed trajectories end as FAILED with their reason and never stop a run: a NaN in one structure, an energy
error above the bound, an unstable time step through the CLI."""

import json

import numpy as np
import torch

from pyscatter.cli import main
from pyscatter.conditions import RunSpec, Termination
from pyscatter.engine.runner import run_dynamics
from pyscatter.initial.sampler import build_initial_conditions, quantised_molecule
from pyscatter.initial.surface import build_slab
from pyscatter.initial.thermal import thermalise
from pyscatter.models.emt import EMTModel
from pyscatter.outcomes import Outcome

SPEC = RunSpec(surface="111", temperature=300.0, v=0, J=0, model="emt", termination=Termination(max_time=150.0))


class Poisoned:
    """EMT, except that one given structure (``poison``, positions (N, 3)) gets NaN forces."""

    def __init__(self):
        self.model = EMTModel()
        self.name, self.species, self.cutoff, self.dtype, self.identity = "poisoned", frozenset({1, 29}), \
            self.model.cutoff, torch.float64, "poisoned"
        self.poison = None  # positions (N, 3) of the structure to poison

    def select(self, frame, keep):
        self.model.select(frame, keep)

    def __call__(self, frame, positions, compute_forces=True):
        out = self.model(frame, positions, compute_forces)
        if len(frame.numbers) > 2 and self.poison is not None:
            hit = (positions == self.poison).flatten(1).all(1)
            out.forces[hit] = float("nan")
        return out


def _initial():
    model = EMTModel()
    slab = build_slab("111", 3.6)
    return build_initial_conditions(SPEC, 0.3, slab, thermalise(model, slab, 300.0, 2, seed=0, n_chains=2,
                                                                 equilibration_fs=50.0), quantised_molecule(SPEC, model))


def test_a_non_finite_structure_fails_alone_and_the_others_are_unchanged():
    initial = _initial()
    reference = []
    run_dynamics(EMTModel(), initial, range(6), lambda r, c: reference.extend(r), 6, SPEC.dt, SPEC.termination)
    model = Poisoned()
    start, _ = initial.sample(2)
    model.poison = torch.as_tensor(start)  # trajectory 2's first structure
    results = []
    run_dynamics(model, initial, range(6), lambda r, c: results.extend(r), 6, SPEC.dt, SPEC.termination)
    by_index = {r.index: r for r in results}
    assert by_index[2].outcome is Outcome.FAILED and by_index[2].failure == "non-finite forces"
    for r in reference:
        if r.index != 2:
            assert by_index[r.index] == r  # bitwise: the bad structure did not disturb its batch


def test_an_energy_error_above_the_bound_fails_the_trajectory():
    initial = _initial()
    results = []
    bound = Termination(max_time=150.0, max_energy_error=1e-7)
    run_dynamics(EMTModel(), initial, range(3), lambda r, c: results.extend(r), 3, SPEC.dt, bound)
    assert {r.outcome for r in results} == {Outcome.FAILED}
    assert all(r.failure.startswith("total-energy error") and r.max_energy_error > 1e-7 for r in results)


def test_an_unstable_time_step_finishes_with_failed_trajectories(tmp_path, capsys):
    code = main(["run", "--surface", "111", "--T", "300", "--v", "0", "--J", "0", "--model", "emt", "--dt", "2",
                 "--trajectories", "6", "--snapshots", "2", "--max-time", "300", "--workers", "1",
                 "--out", str(tmp_path / "run"), "--json"])
    captured = capsys.readouterr()
    assert code == 0
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["n_failed"] > 0 and summary["n_trajectories"] == 6
    assert summary["n_dissociated"] + summary["n_scattered"] + summary["n_trapped"] + summary["n_failed"] == 6
    if summary["n_failed"] == 6:
        assert summary["p_stick"] is None
    else:
        assert np.isclose(summary["p_stick"], summary["n_dissociated"] / (6 - summary["n_failed"]))
    assert "failed" in captured.err and "warning" in captured.err
