"""Failed trajectories end as FAILED with their reason and never stop a run: a NaN in one structure (the first, one
after a refill, one of the free approach), an energy error above the bound, an unstable time step through the CLI.
(A NaN at the free-flight exit: tests/test_free_flight_exact.py.)"""

import json

import numpy as np
import pytest

from pyscatter.cli import main
from pyscatter.conditions import RunSpec, Termination
from pyscatter.engine.runner import run_dynamics
from pyscatter.initial.sampler import build_initial_conditions, quantised_molecule
from pyscatter.initial.surface import build_slab
from pyscatter.initial.thermal import thermalise
from pyscatter.models.emt import EMTModel
from pyscatter.outcomes import Outcome
from pyscatter.store import RunReader

from conftest import Poisoned

SPEC = RunSpec(surface="111", temperature=300.0, v=0, J=0, model="emt", termination=Termination(max_time=150.0))


def _initial():
    model = EMTModel()
    slab = build_slab("111", 3.6)
    return build_initial_conditions(SPEC, 0.3, slab, thermalise(model, slab, 300.0, 2, seed=0, n_chains=2,
                                                                 equilibration_fs=50.0), quantised_molecule(SPEC, model))


def test_a_non_finite_structure_fails_alone_and_the_others_are_unchanged():
    initial = _initial()
    reference = []
    run_dynamics(EMTModel(), initial, range(6), lambda r, c: reference.extend(r), 6, SPEC.dt, SPEC.termination)
    start, _ = initial.sample(2)
    model = Poisoned(EMTModel(), [start])  # trajectory 2's first structure
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
    with RunReader(tmp_path / "run") as store:  # the reasons as the worker wrote them, read back from the store
        stored = store.trajectories(store.condition_id(summary["collision_energy"]))
    failed = [r for r in stored if r.outcome is Outcome.FAILED]
    assert len(failed) == summary["n_failed"] and len(stored) == 6
    assert all(r.failure == "non-finite forces" or r.failure.startswith("total-energy error") for r in failed)
    assert all(r.failure == "" for r in stored if r.outcome is not Outcome.FAILED)


def _poisoned_step(index: int, step: int, free: bool, batch_size: int, free_flight: bool):
    """The reference results (by index) of trajectories 0-5 and trajectory ``index``'s positions after ``step`` steps,
    of the whole system or (``free``) of its free molecule."""
    initial = _initial()
    found, results = {}, []

    def observer(i, steps, positions, velocities, energy, forces, alone):
        if (i, steps, alone) == (index, step, free):
            found["positions"] = positions.copy()

    run_dynamics(EMTModel(), initial, range(6), lambda r, c: results.extend(r), batch_size, SPEC.dt, SPEC.termination,
                 free_flight, observer)
    return initial, {r.index: r for r in results}, found["positions"]


def _check_only(index: int, step: int, reference: dict, results: list) -> None:
    by_index = {r.index: r for r in results}
    assert sorted(by_index) == list(range(6))
    failed = by_index[index]
    assert (failed.outcome, failed.failure, failed.end_time) == (Outcome.FAILED, "non-finite forces",
                                                                 pytest.approx(step * SPEC.dt))
    assert reference[index].outcome is not Outcome.FAILED
    for i, r in reference.items():
        if i != index:
            assert by_index[i] == r


def test_a_nan_after_a_refill_fails_that_trajectory_alone():
    """Batch of 2 for 6 trajectories: trajectory 4 runs in a refilled slot; a NaN at its 300th step fails it there."""
    initial, reference, poison = _poisoned_step(4, 300, False, 2, False)
    results = []
    run_dynamics(Poisoned(EMTModel(), [poison]), initial, range(6), lambda r, c: results.extend(r), 2, SPEC.dt,
                 SPEC.termination)
    _check_only(4, 300, reference, results)


def test_a_nan_in_the_free_approach_fails_that_trajectory_alone():
    """Free flight, batch 3: a NaN in trajectory 4's free molecule (2-atom structure) at its 50th step."""
    initial, reference, poison = _poisoned_step(4, 50, True, 3, True)
    results = []
    run_dynamics(Poisoned(EMTModel(), [poison]), initial, range(6), lambda r, c: results.extend(r), 3, SPEC.dt,
                 SPEC.termination, True)
    _check_only(4, 50, reference, results)
