"""Free flight is exact: beyond the cutoff energies add up and forces separate for every model, the free
molecule propagates as the full system's molecule does, and the engine's free-flight entry and exit agree
with integrating the whole system (the statistical comparison of P_stick is in ``slow`` and benchmarks)."""

import numpy as np
import pytest
import torch
from ase.units import fs

from pyscatter.conditions import RunSpec, Termination
from pyscatter.engine import verlet
from pyscatter.engine.free_flight import nearby_images, stays_clear
from pyscatter.engine.runner import run_dynamics
from pyscatter.initial.sampler import build_initial_conditions, quantised_molecule
from pyscatter.initial.surface import build_slab
from pyscatter.initial.thermal import thermalise
from pyscatter.models import load_model
from pyscatter.models.base import Frame
from pyscatter.outcomes import Outcome


def _mace(directory):
    from pyscatter.models.mace import random_mace

    path = directory / "random.model"
    torch.save(random_mace(dtype=torch.float64, seed=3), path)
    return load_model(str(path), trust=True)


MODELS = {"emt": lambda _: load_model("emt"), "h2cu-ace": lambda _: load_model("h2cu-ace"), "mace": _mace}


def _split(model, gap: float):
    """Slab + H2 whose nearest H-Cu distance is ``cutoff + gap`` (Å): full, slab-only and molecule-only frames."""
    slab = build_slab("111", 3.62)
    atoms = slab.atoms
    rng = np.random.default_rng(0)
    cu = atoms.positions + rng.normal(0, 0.05, atoms.positions.shape)
    top = cu[:, 2].max()
    h2 = np.array([[1.0, 1.2, 0.0], [1.55, 1.6, 0.3]])
    h2[:, 2] += top + model.cutoff + gap - h2[:, 2].min()
    frame = Frame(np.r_[atoms.numbers, 1, 1], atoms.cell.array, (True, True, False))
    full = np.concatenate([cu, h2])
    nearest = np.linalg.norm(full[-2:, None] - cu[None], axis=-1).min()
    assert nearest >= model.cutoff + gap - 1e-9  # directly above an atom: no lateral image is closer
    return frame, full, Frame(atoms.numbers, atoms.cell.array, (True, True, False)), Frame([1, 1], atoms.cell.array, (True, True, False))


@pytest.mark.parametrize("name", MODELS)
def test_beyond_the_cutoff_energies_add_up_and_forces_separate(name, tmp_path):
    model = MODELS[name](tmp_path)
    frame, full, slab_frame, molecule_frame = _split(model, 0.05)
    as_batch = lambda x: torch.as_tensor(x[None], dtype=torch.float64)  # noqa: E731
    whole = model(frame, as_batch(full))
    slab = model(slab_frame, as_batch(full[:-2]))
    molecule = model(molecule_frame, as_batch(full[-2:]))
    assert float(whole.energies[0]) == pytest.approx(float(slab.energies[0] + molecule.energies[0]), abs=1e-9)
    np.testing.assert_allclose(whole.forces[0, :-2].numpy(), slab.forces[0].numpy(), atol=1e-9)
    np.testing.assert_allclose(whole.forces[0, -2:].numpy(), molecule.forces[0].numpy(), atol=1e-9)
    # and just inside the cutoff they do not: the test can tell
    frame, full, slab_frame, molecule_frame = _split(model, -0.8)
    whole = model(frame, as_batch(full))
    apart = model(slab_frame, as_batch(full[:-2])).energies[0] + model(molecule_frame, as_batch(full[-2:])).energies[0]
    assert abs(float(whole.energies[0] - apart)) > 1e-7


@pytest.fixture(scope="module")
def ace_initial():
    model = load_model("h2cu-ace")
    spec = RunSpec(surface="111", temperature=925.0, v=1, J=1)
    slab = build_slab("111", 3.6528)
    snapshots = thermalise(model, slab, 925.0, 2, seed=0, n_chains=2, equilibration_fs=100.0)
    return model, spec, build_initial_conditions(spec, 0.5, slab, snapshots, quantised_molecule(spec, model))


def test_free_molecule_propagates_as_the_full_systems_molecule(ace_initial):
    """150 steps (15 fs) from the 7 Å start, before any contact: the 2-atom integration equals the molecule of
    the 56-atom integration."""
    model, spec, initial = ace_initial
    positions, velocities = initial.sample(3)
    mol = list(initial.molecule)
    dt = spec.dt * fs
    masses = torch.as_tensor(initial.masses)
    full = verlet.Dynamics(initial.frame, masses, torch.as_tensor(initial.mobile), dt)
    alone = verlet.Dynamics(Frame(initial.frame.numbers[mol], initial.frame.cell, initial.frame.pbc), masses[mol],
                            torch.ones(2, dtype=torch.bool), dt)
    a = verlet.init(torch.as_tensor(positions[None]), torch.as_tensor(velocities[None]), full)
    b = verlet.init(torch.as_tensor(positions[None, mol]), torch.as_tensor(velocities[None, mol]), alone)
    for _ in range(151):
        a, b = verlet.step(a, model, full), verlet.step(b, model, alone)
    gap = np.linalg.norm(a.positions[0, mol, None].numpy() - a.positions[0, None, :-2].numpy(), axis=-1).min()
    assert gap > model.cutoff  # still no contact
    np.testing.assert_allclose(b.positions[0].numpy(), a.positions[0, mol].numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(b.velocities[0].numpy(), a.velocities[0, mol].numpy(), rtol=0, atol=1e-12)


def test_free_flight_saves_calls_and_keeps_outcomes_and_clocks(ace_initial):
    """The same trajectory indices with and without free flight: fewer structure evaluations, end times on the same
    clock, every outcome final and energy-conserving. Outcomes are not compared one by one: the approaching molecule
    joins its thermal snapshot as drawn, not the snapshot evolved for the approach time (the same canonical
    distribution), so each trajectory meets a slab in another phase. (With the degree-10 h2cu-ace these 8 happened to
    agree within 0.1 eV in final translational energy; with degree 12 one differs by 0.19 eV and two change outcome.)"""
    model, spec, initial = ace_initial
    runs = {}
    for free_flight in (False, True):
        results, calls = [], []
        run_dynamics(model, initial, range(8), lambda r, c: (results.extend(r), calls.append(c)), 8, spec.dt,
                     Termination(), free_flight)
        runs[free_flight] = ({r.index: r for r in results}, sum(calls))
    (full, full_calls), (free, free_calls) = runs[False], runs[True]
    assert sorted(free) == sorted(full) == list(range(8))
    steps = sum(round(r.end_time / spec.dt) + 1 for r in free.values())
    assert free_calls < 0.85 * steps and full_calls == sum(round(r.end_time / spec.dt) + 1 for r in full.values())
    for i in range(8):
        assert free[i].outcome in (Outcome.DISSOCIATED, Outcome.SCATTERED)
        assert abs(free[i].max_energy_error) < 0.01
        if free[i].outcome is Outcome.SCATTERED:
            assert 0.0 < free[i].translational_energy < 1.5  # eV: 0.5 collision + ~0.8 internal (v=1) + a little slab heat


def test_free_molecule_never_comes_closer_than_the_exit_bound(ace_initial):
    """The free-flight exit bound (:func:`stays_clear`) against the integrated free molecule: it never claims a
    molecule stays farther from the slab atoms (periodic images included) than the molecule comes within the
    horizon, and it is tight enough to be of use. Molecules: the run's v=1, J=1 states, half of them spun up (up
    to J ≈ 8), slowly receding (0.002-0.03 Å/fs) and drifting sideways."""
    model, spec, initial = ace_initial
    mol = list(initial.molecule)
    slab = [i for i in range(initial.frame.n_atoms) if i not in mol]
    masses = initial.masses[mol]
    cell = np.asarray(initial.frame.cell)
    rng = np.random.default_rng(1)
    states, slabs = [], []
    for i in range(24):
        positions, v = initial.sample(i)
        x, v = positions[mol], v[mol]
        x = x - [0.0, 0.0, 1.5]  # nearer the surface, where the bound decides
        bond = x[1] - x[0]
        spin = rng.normal(size=3)
        v = v + (i % 2) * 0.05 / fs * np.array([-1, 1])[:, None] * np.cross(spin / np.linalg.norm(spin), bond / np.linalg.norm(bond))
        v = v - (masses @ v) / masses.sum() + np.r_[rng.normal(0, 0.01, 2), rng.uniform(0.002, 0.03)] / fs
        states.append((x, v))
        slabs.append(positions[slab])
    steps, dt = 600, spec.dt * fs
    frame = Frame(initial.frame.numbers[mol], initial.frame.cell, initial.frame.pbc)
    dyn = verlet.Dynamics(frame, torch.as_tensor(masses), torch.ones(2, dtype=torch.bool), dt)
    state = verlet.init(torch.as_tensor(np.stack([x for x, _ in states])), torch.as_tensor(np.stack([v for _, v in states])), dyn)
    obstacles = [nearby_images(slab_, x.mean(0), cell, 20.0) for slab_, (x, _) in zip(slabs, states)]
    closest = np.full(len(states), np.inf)
    for _ in range(steps + 1):
        for k, points in enumerate(obstacles):
            d = np.linalg.norm(state.positions[k].numpy()[:, None] - points[None], axis=-1)
            closest[k] = min(closest[k], d.min())
        state = verlet.step(state, model, dyn)
    useful = 0
    for (x, v), points, near in zip(states, obstacles, closest):
        limits = initial.bond_range(x, v)
        assert not stays_clear(x, v, masses, limits, points, near + 1e-3, steps * dt)
        useful += stays_clear(x, v, masses, limits, points, near - 0.4, steps * dt)
    assert useful >= 18


def test_nearby_images_hold_every_slab_atom_within_reach():
    """Brute force over a wide block of images of a hexagonal cell: the selection misses none within the radius."""
    cell = np.array([[7.7, 0.0, 0.0], [3.85, 6.67, 0.0], [0.0, 0.0, 30.0]])
    rng = np.random.default_rng(3)
    slab = rng.uniform(0, 1, (30, 3)) @ cell * [1, 1, 0.3]
    brute = (slab[None] + np.array([i * cell[0] + j * cell[1] for i in range(-8, 9) for j in range(-8, 9)])[:, None]).reshape(-1, 3)
    for centre, radius in zip(rng.uniform(-10, 20, (40, 3)), [8.5, 14.0] * 20):  # radius: 1.3 and 2.1 cell heights
        horizontal = np.linalg.norm(brute[:, :2] - centre[:2], axis=-1)
        want = brute[(horizontal < radius) & (brute[:, 2] - centre[2] > -radius)]
        got = nearby_images(slab, centre, cell, radius)
        assert len(got) == len(want)
        assert np.allclose(np.sort(got, axis=0), np.sort(want, axis=0))
