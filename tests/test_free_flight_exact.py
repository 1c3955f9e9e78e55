"""Free flight against whole-system integration, trajectory by trajectory, on a rigid slab (every Cu atom fixed,
one snapshot at rest): the slab a molecule joins is then exactly the slab the whole system holds, so the free-flight
run must reproduce the whole-system run of the same trajectories, not only its statistics. Model: the shipped
h2cu-ace (cutoff 5 Å); runs go on until the molecules are back at the 7.1 Å scatter height. Units: Å, fs, eV.
The thermal-slab comparison (statistical, McNemar) is the ``slow`` test at the end."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from ase.units import fs

from pyscatter.conditions import RunSpec, Termination
from pyscatter.engine import verlet
from pyscatter.engine.free_flight import EXIT_CHECK_STEPS, nearby_images
from pyscatter.engine.runner import run_dynamics
from pyscatter.initial.sampler import MoleculeOnSurface, build_initial_conditions, quantised_molecule
from pyscatter.initial.surface import build_slab
from pyscatter.initial.thermal import ThermalSnapshots
from pyscatter.models import load_model
from pyscatter.models.base import Frame
from pyscatter.outcomes import Outcome

from conftest import Poisoned

SPEC = RunSpec(surface="111", temperature=1.0, v=0, J=1, termination=Termination(max_time=600.0))


def rigid_initial(model, collision_energy: float) -> MoleculeOnSurface:
    """H2 (v=0, J=1) at 7 Å above Cu(111) with every atom fixed: one snapshot, the ideal slab at rest."""
    slab = build_slab("111", 3.6528)
    slab = dataclasses.replace(slab, fixed=np.ones(len(slab.atoms), dtype=bool))
    n = len(slab.atoms)
    snapshots = ThermalSnapshots(slab.atoms.positions[None].copy(), np.zeros((1, n, 3)), 0.0, "111",
                                 slab.lattice_constant, model.identity, 0)
    return build_initial_conditions(SPEC, collision_energy, slab, snapshots, quantised_molecule(SPEC, model))


@pytest.fixture(scope="module")
def ace():
    return load_model("h2cu-ace")


def run(model, initial, indices, free_flight: bool, observer=None) -> dict[int, object]:
    """Results by trajectory index of one run_dynamics call (batch 4, dt 0.1 fs)."""
    results = []
    run_dynamics(model, initial, indices, lambda r, _: results.extend(r), 4, SPEC.dt, SPEC.termination,
                 free_flight, observer)
    return {r.index: r for r in results}


def closest_approach(initial, positions: np.ndarray) -> float:
    """Shortest distance (Å) of a molecular atom to a slab atom, periodic images in x, y included (N, 3) Å."""
    mol = list(initial.molecule)
    slab = np.delete(positions, mol, axis=0)
    images = nearby_images(slab, positions[mol].mean(0), np.asarray(initial.frame.cell), 12.0)
    return float(np.linalg.norm(positions[mol, None] - images[None], axis=-1).min())


def test_free_flight_reproduces_the_whole_system_trajectory_by_trajectory(ace):
    """Six H2 at 0.5 eV, with and without free flight: at the join (first whole-system step of the free-flight
    run) positions and velocities (ASE units) equal the whole-system run's at that step; after the exit the whole-system
    molecule never comes within the cutoff; outcome, end time (within the exit's check interval), v', J' and
    E_trans agree."""
    initial = rigid_initial(ace, 0.5)
    indices = range(6)
    joins, releases = {}, {}

    def free_observer(index, steps, positions, velocities, energy, forces, free):
        if not free:
            joins.setdefault(index, (steps, positions.copy(), velocities.copy()))
            releases[index] = steps

    free = run(ace, initial, indices, True, free_observer)
    assert all(joins[i][0] > 100 for i in indices)  # ~20 fs of free approach from 7 Å
    at_join, closest = {}, dict.fromkeys(indices, math.inf)

    def whole_observer(index, steps, positions, velocities, energy, forces, _):
        if steps == joins[index][0]:
            at_join[index] = positions.copy(), velocities.copy()
        if free[index].outcome is Outcome.SCATTERED and steps >= releases[index]:
            closest[index] = min(closest[index], closest_approach(initial, positions))

    whole = run(ace, initial, indices, False, whole_observer)
    scattered = [i for i in indices if whole[i].outcome is Outcome.SCATTERED]
    assert len(scattered) >= 4
    for i in indices:
        np.testing.assert_allclose(joins[i][1], at_join[i][0], rtol=0, atol=1e-9)
        # the joining velocity holds the last half-kick of the molecule's forces alone, with an atom just inside
        # the cutoff, where the slab's force is nearly zero (~1e-7 here); a step off changes it by ~1e-2
        np.testing.assert_allclose(joins[i][2], at_join[i][1], rtol=0, atol=1e-6)
        assert free[i].outcome is whole[i].outcome
        assert abs(free[i].end_time - whole[i].end_time) <= EXIT_CHECK_STEPS * SPEC.dt + 1e-9
    for i in scattered:
        assert free[i].end_time > 150.0  # back at 7.1 Å
        assert releases[i] * SPEC.dt < free[i].end_time - 1.0  # released early, not at the scatter height
        assert closest[i] > ace.cutoff
        assert free[i].translational_energy == pytest.approx(whole[i].translational_energy, abs=1e-4)
        # the internal energy at release and at 7.1 Å: equal to within the integrator's fluctuation (~4e-4 eV)
        assert free[i].internal_energy == pytest.approx(whole[i].internal_energy, abs=1e-3)
        assert free[i].v_final == pytest.approx(whole[i].v_final, abs=5e-3)
        assert free[i].J_final == pytest.approx(whole[i].J_final, abs=1e-3)


def test_the_joining_molecule_meets_its_snapshot_as_drawn():
    """On a moving slab (EMT, snapshots with random thermal velocities; the rigid test above cannot see slab
    velocities): the first whole-system state of each trajectory is its drawn snapshot's slab, positions and
    velocities bit for bit, with the molecule as the free approach left it, at the approach's step count."""
    model = load_model("emt")
    slab = build_slab("111", 3.6)
    rng = np.random.default_rng(7)
    n, count = len(slab.atoms), 3
    mobile = ~slab.fixed[None, :, None]
    positions = slab.atoms.positions[None] + rng.normal(0, 0.05, (count, n, 3)) * mobile
    velocities = rng.normal(0, 0.03, (count, n, 3)) * mobile  # ~ 0.02 eV per atom and direction
    snapshots = ThermalSnapshots(positions, velocities, 300.0, "111", slab.lattice_constant, model.identity, 0)
    initial = build_initial_conditions(SPEC, 0.5, slab, snapshots, quantised_molecule(SPEC, model))
    approach, joined = {}, {}

    def observer(index, steps, positions, velocities, energy, forces, free):
        if free:
            approach[index] = steps, positions.copy(), velocities.copy()
        else:
            joined.setdefault(index, (steps, positions.copy(), velocities.copy()))

    indices = range(6)
    run_dynamics(model, initial, indices, lambda r, _: None, 4, SPEC.dt, Termination(max_time=40.0), True, observer)
    mol = list(initial.molecule)
    for i in indices:
        drawn = initial.sample(i)
        steps, x, v = joined[i]
        assert steps == approach[i][0] > 50
        for joined_field, drawn_field, free_field in ((x, drawn[0], approach[i][1]), (v, drawn[1], approach[i][2])):
            np.testing.assert_array_equal(np.delete(joined_field, mol, axis=0), np.delete(drawn_field, mol, axis=0))
            np.testing.assert_array_equal(joined_field[mol], free_field)
        assert np.abs(np.delete(v, mol, axis=0)).max() > 0.01  # the slab moves


class Receding(MoleculeOnSurface):
    """Molecules starting 4.7 Å above the top layer (within the 5 Å cutoff of an atom), rising slowly (0.005-0.02
    Å/fs) and drifting sideways, every other one spun up to J ≈ 8 and every third one stretched (~0.4 eV more
    vibration): the releases the exit test must get right, at the edge of the cutoff with a bond that turns down or
    stretches."""

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        positions, velocities = super().sample(index)
        mol = list(self.molecule)
        masses = self.masses[mol]
        rng = np.random.default_rng(index)
        x, v = positions[mol], velocities[mol]
        bond = x[1] - x[0]
        spin = rng.normal(size=3)
        outward = np.array([-1, 1])[:, None]
        v = v + (index % 2) * 0.05 / fs * outward * np.cross(spin / np.linalg.norm(spin), bond / np.linalg.norm(bond))
        v = v + (index % 3 == 2) * 0.06 / fs * outward * bond / np.linalg.norm(bond)  # ~0.4 eV more vibration
        v = v - masses @ v / masses.sum() + np.r_[rng.normal(0, 0.005, 2), rng.uniform(0.005, 0.02)] / fs
        top = positions[self.top_layer, 2].max()
        positions[mol] = x + [0.0, 0.0, top + 4.7 - x[:, 2].min()]
        velocities[mol] = v
        return positions, velocities


def test_a_released_molecule_never_comes_back_within_the_cutoff(ace):
    """Every molecule the exit releases, integrated on (alone: beyond the cutoff that is the whole system's molecule,
    see test_free_flight.py) until its centre of mass reaches the scatter height, stays farther than the cutoff
    from every slab atom; its end time and final state are those of the integrated molecule."""
    base = rigid_initial(ace, 0.5)
    initial = Receding(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base) if f.init})
    releases = {}

    def observer(index, steps, positions, velocities, energy, forces, free):
        if not free:
            releases[index] = steps, positions.copy(), velocities.copy()

    indices = range(16)
    results = run(ace, initial, indices, True, observer)
    scattered = [i for i in indices if results[i].outcome is Outcome.SCATTERED]
    assert len(scattered) >= 12
    mol = list(initial.molecule)
    frame = Frame(initial.frame.numbers[mol], initial.frame.cell, initial.frame.pbc)
    dyn = verlet.Dynamics(frame, torch.as_tensor(initial.masses[mol]), torch.ones(2, dtype=torch.bool), SPEC.dt * fs)
    start = np.stack([releases[i][1][mol] for i in scattered]), np.stack([releases[i][2][mol] for i in scattered])
    state = verlet.init(torch.as_tensor(start[0]), torch.as_tensor(start[1]), dyn)
    slab = releases[scattered[0]][1][initial.top_layer]  # rigid: the same for all
    obstacles = [nearby_images(np.delete(releases[i][1], mol, axis=0), start[0][k].mean(0),
                               np.asarray(initial.frame.cell), 15.0) for k, i in enumerate(scattered)]
    share = initial.masses[mol] / initial.masses[mol].sum()
    steps = np.array([releases[i][0] for i in scattered])
    ends = np.array([round(results[i].end_time / SPEC.dt) for i in scattered])
    reached = np.full(len(scattered), -1)
    final = [None] * len(scattered)
    for n in range(int((ends - steps).max()) + 2):
        x = state.positions.numpy()
        for k in range(len(scattered)):
            if reached[k] >= 0:
                continue
            assert np.linalg.norm(x[k, :, None] - obstacles[k][None], axis=-1).min() > ace.cutoff, scattered[k]
            if share @ x[k, :, 2] - slab[:, 2].mean() > SPEC.termination.scatter_height:
                reached[k] = steps[k] + n
                final[k] = initial.final_state(x[k], state.velocities[k].numpy())
        if (reached >= 0).all():
            break
        state = verlet.step(state, ace, dyn)
    assert (np.abs(reached - ends) <= 1).all(), (reached, ends)
    for k, i in enumerate(scattered):
        # E_trans and J' are conserved exactly; the internal energy to the integrator's fluctuation, which grows with
        # the vibration (~1e-3 eV at 0.5 eV, ~4e-3 eV at 2.3 eV internal energy)
        wobble = 1e-3 + 2e-3 * final[k]["internal_energy"]
        for key, tolerance in (("translational_energy", 1e-6), ("J_final", 1e-6), ("internal_energy", wobble),
                               ("v_final", 2 * wobble)):  # dv/dE = 1 / (~0.5 eV)
            assert getattr(results[i], key) == pytest.approx(final[k][key], abs=tolerance), (i, key)


def test_a_nan_at_the_exit_fails_that_trajectory_alone(ace):
    """A NaN in the whole-system structure of the step that would release trajectory 3 (receding from the slab):
    it fails there with its reason, the others of its batch are unchanged."""
    base = rigid_initial(ace, 0.5)
    initial = Receding(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base) if f.init})
    last = {}

    def observer(index, steps, positions, velocities, energy, forces, free):
        if not free:
            last[index] = steps, positions.copy()

    reference = run(ace, initial, range(8), True, observer)
    assert reference[3].outcome is Outcome.SCATTERED
    step, poison = last[3]
    results = run(Poisoned(ace, [poison]), initial, range(8), True)
    assert (results[3].outcome, results[3].failure) == (Outcome.FAILED, "non-finite forces")
    assert results[3].end_time == pytest.approx(step * SPEC.dt)
    assert {i: r for i, r in results.items() if i != 3} == {i: r for i, r in reference.items() if i != 3}


@pytest.mark.slow
def test_free_flight_keeps_the_sticking_probability_on_the_thermal_slab():
    """P_stick of the same 600 trajectories (H2 v=1, J=1 at 0.5 eV on Cu(111) at 925 K, h2cu-ace) with and without
    free flight: the joining molecule meets its snapshot as drawn rather than evolved for the approach time, so
    outcomes differ one by one but not in distribution. Paired (exact McNemar: the discordant pairs split as a fair
    coin), p > 0.01; and the discordant share is below a half, so the pairing means something."""
    from scipy.stats import binomtest

    from pyscatter.initial.thermal import thermalise

    model = load_model("h2cu-ace")
    spec = RunSpec(surface="111", temperature=925.0, v=1, J=1, termination=Termination(max_time=1000.0))
    slab = build_slab("111", 3.6528)
    snapshots = thermalise(model, slab, 925.0, 16, seed=0, n_chains=16)
    initial = build_initial_conditions(spec, 0.5, slab, snapshots, quantised_molecule(spec, model))
    n = 600
    stuck = {}
    for free_flight in (False, True):
        results = []
        run_dynamics(model, initial, range(n), lambda r, _: results.extend(r), 32, spec.dt, spec.termination,
                     free_flight)
        assert not [r for r in results if r.outcome is Outcome.FAILED]
        stuck[free_flight] = np.array([r.outcome is Outcome.DISSOCIATED for r in sorted(results, key=lambda r: r.index)])
    only_whole = int((stuck[False] & ~stuck[True]).sum())
    only_free = int((stuck[True] & ~stuck[False]).sum())
    assert 0.05 < stuck[False].mean() < 0.95  # an energy where the comparison can tell
    assert only_whole + only_free < n / 2
    assert binomtest(only_free, only_whole + only_free, 0.5).pvalue > 0.01, (only_whole, only_free)
