"""The default model ``h2cu-ace`` end to end: the README condition integrated by pyscatter and,
independently, by ASE's VelocityVerlet on ace-jax's own calculator; energy conservation over a
whole trajectory; and the shipped model's CI-NEB barriers recomputed against its teacher's.

Units: Å, eV, fs (ASE time units inside the integrators).
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from ase import units

pytest.importorskip("ace_jax")

from conftest import TEACHER, needs_teacher
from pyscatter.conditions import RunSpec
from pyscatter.engine import verlet
from pyscatter.initial.sampler import build_initial_conditions, quantised_molecule
from pyscatter.initial.surface import build_slab, lattice_constant
from pyscatter.initial.thermal import thermalise
from pyscatter.models import BARRIER_TOLERANCE, SHIPPED, load_model

README = RunSpec(surface="111", temperature=925.0, v=1, J=1, n_snapshots=2)  # the README's main condition
ENERGY = 0.5  # eV, the README's collision energy
DT_FS = 0.1
INDEX = 3  # a trajectory that dissociates in ~500 steps from 2.8 Å (H within 1.1 Å of a Cu atom on the way)


@pytest.fixture(scope="module")
def condition():
    """The default model, and the README condition's initial conditions on two thermal snapshots of it."""
    model = load_model("h2cu-ace")
    slab = build_slab(README.surface, lattice_constant(model, README.temperature))
    snapshots = thermalise(model, slab, README.temperature, README.n_snapshots, README.seed, n_chains=2)
    molecule = quantised_molecule(README, model)
    return model, slab, snapshots, molecule


def initial_conditions(condition, height: float):
    model, slab, snapshots, molecule = condition
    spec = replace(README, termination=replace(README.termination, initial_height=height))
    return build_initial_conditions(spec, ENERGY, slab, snapshots, molecule)


def pyscatter_trajectory(model, initial, index: int, steps: int, stop=None):
    """Positions (steps + 1, N, 3) and total energies (steps + 1,) from pyscatter's velocity Verlet;
    ``stop(positions, velocities)`` ends the trajectory early."""
    positions, velocities = initial.sample(index)
    dyn = verlet.Dynamics(initial.frame, torch.as_tensor(initial.masses), torch.as_tensor(initial.mobile), DT_FS * units.fs)
    state = verlet.step(verlet.init(torch.as_tensor(positions)[None], torch.as_tensor(velocities)[None], dyn), model, dyn)
    path, energies = [state.positions[0].numpy().copy()], []
    for _ in range(steps + 1):
        energies.append(float(state.potential_energy[0] + verlet.kinetic_energy(state.velocities, dyn.masses)[0]))
        if len(path) > steps or (stop is not None and stop(state.positions[0].numpy(), state.velocities[0].numpy())):
            break
        state = verlet.step(state, model, dyn)
        path.append(state.positions[0].numpy().copy())
    return np.array(path), np.array(energies)


def shortest_h_cu(initial, positions: np.ndarray) -> float:
    from ase.geometry import get_distances

    h, cu = initial.frame.numbers == 1, initial.frame.numbers == 29
    return min(get_distances(x[h], x[cu], cell=initial.frame.cell, pbc=initial.frame.pbc)[1].min() for x in positions)


def test_readme_condition_equals_ase_velocity_verlet_on_ace_jax(condition):
    """500 steps of 0.1 fs from 2.8 Å: pyscatter (verlet.init/step, numba kernel) and ASE's VelocityVerlet with
    FixAtoms on ace-jax's ACECalculator (analytic radials) on the same .npz agree to 1e-6 Å, through the
    molecule's impact on the surface."""
    from ace_jax import ACECalculator
    from ase.md.verlet import VelocityVerlet

    model = condition[0]
    initial = initial_conditions(condition, height=2.8)
    steps = 500
    ours, _ = pyscatter_trajectory(model, initial, INDEX, steps)

    atoms = initial.atoms(INDEX)  # the same start, masses, velocities and FixAtoms(bottom two layers)
    atoms.calc = ACECalculator(str(SHIPPED["h2cu-ace"]), spline_tol=None)
    reference = [atoms.positions.copy()]
    md = VelocityVerlet(atoms, timestep=DT_FS * units.fs)
    for _ in range(steps):
        md.run(1)
        reference.append(atoms.positions.copy())
    reference = np.array(reference)

    assert ours.shape == reference.shape == (steps + 1, len(initial.masses), 3)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-6)
    # the trajectory reaches the repulsive wall and the fixed atoms stay where they are
    assert shortest_h_cu(initial, ours[::5]) < 2.0
    assert np.abs(ours[:, ~initial.mobile] - ours[0, ~initial.mobile]).max() == 0.0
    assert np.abs(ours[-1, initial.mobile] - ours[0, initial.mobile]).max() > 0.05


def test_total_energy_is_conserved_over_a_whole_trajectory(condition):
    """From the README's 7 Å to dissociation (r(H-H) > 2.25 Å) or scattering, at most 3 ps: the total
    energy stays within 10 meV of its start (the numba kernel uses fastmath)."""
    model = condition[0]
    initial = initial_conditions(condition, height=README.termination.initial_height)
    a, b = initial.molecule
    top = initial.top_layer

    def finished(x, v):
        bond = np.linalg.norm(x[b] - x[a])
        com = 0.5 * (x[a] + x[b])  # H2: equal masses
        return bond > README.termination.dissociation_distance or (
            com[2] - x[top, 2].mean() > README.termination.scatter_height and v[a, 2] + v[b, 2] > 0)

    steps = int(README.termination.max_time / DT_FS)
    path, energies = pyscatter_trajectory(model, initial, 0, steps, stop=finished)
    assert len(path) <= steps, "the trajectory neither dissociated nor scattered within 3 ps"
    assert shortest_h_cu(initial, path[::10]) < 2.0  # it met the surface on the way
    print(f"{len(energies)} steps, bond {np.linalg.norm(path[-1, b] - path[-1, a]):.2f} Å, largest energy error {1e3 * np.abs(energies - energies[0]).max():.2f} meV")
    assert np.abs(energies - energies[0]).max() <= 0.010
    assert len(energies) > 1000  # ≥ 100 fs: 7 Å at 0.5 eV alone takes ~100 fs


# --- barriers ----------------------------------------------------------------------------------


def recomputed_barrier(surface: str):
    """The shipped model's CI-NEB barrier on Cu(surface) as ``surrogate build`` computed it: 10 images,
    fmax 0.05 eV/Å, 1000 steps, on the teacher's lattice constant at 300 K (the build's lowest surface
    temperature), here through pyscatter.mep.dissociation_path."""
    from pyscatter.mep import dissociation_path
    from pyscatter.models.mace import load_mace

    record = json.loads(SHIPPED["h2cu-ace"].with_suffix(".json").read_text())
    settings = record["settings"]
    a = lattice_constant(load_mace(TEACHER, dtype=torch.float64, trust=True), min(settings["temperatures"]))
    path = dissociation_path(load_model("h2cu-ace"), surface, lattice_constant=a, n_images=settings["neb_images"],
                             fmax=settings["neb_fmax"], steps=settings["neb_steps"])
    return path, record["evaluation"]["barriers"][surface]


def check_barrier(path, stored, tolerance: float = BARRIER_TOLERANCE) -> None:
    assert abs(path.barrier - stored["teacher_eV"]) <= tolerance  # the claim: within 30 meV of the teacher (or as given)
    assert path.barrier == pytest.approx(stored["surrogate_eV"], abs=0.005)  # and the number it ships with
    top = int(np.argmax(path.energies))
    assert 0 < top < len(path.energies) - 1 and path.hh_distance[top] > 0.9  # a real transition state


@needs_teacher
def test_cu111_barrier_is_the_teachers():
    path, stored = recomputed_barrier("111")
    assert path.converged
    check_barrier(path, stored)


@needs_teacher
@pytest.mark.slow
def test_cu211_barrier_is_the_teachers():
    """~2 min. The build: 0.511 eV against the teacher's 0.502 eV, started from the teacher's band. (The model shipped
    before 2026-12-03 had a spurious well under the Cu(211) top layer that this relaxation fell into.)"""
    path, stored = recomputed_barrier("211")
    check_barrier(path, stored)


# --- under the surface ---------------------------------------------------------------------------

SUBSURFACE_TOLERANCE = 0.5  # eV


def subsurface_errors(model, surface: str, points: int = 24) -> np.ndarray:
    """Model - teacher (eV) of E(H at a random point 3 Å under to 1 Å over the top layer, at least 1.4 Å from every
    Cu atom) - E(the same H 2.5 Å over the top layer), on the ideal slab, the other H atom half a cell diagonal away
    1.5 Å over the surface."""
    from ase import Atoms

    from pyscatter.models.mace import load_mace
    from pyscatter.models.calculator import ForceModelCalculator

    calculators = [ForceModelCalculator(model), ForceModelCalculator(load_mace(TEACHER, dtype=torch.float64, trust=True))]
    slab = build_slab(surface, 3.657)  # Å: the teacher's lattice constant at 300 K
    copper, top, cell = slab.atoms, slab.top_layer_height, slab.atoms.cell.array
    rng = np.random.default_rng(1)

    def energies(h, partner):
        atoms = copper.copy() + Atoms("H2", positions=[h, partner])
        out = []
        for calculator in calculators:
            atoms.calc = calculator
            out.append(atoms.get_potential_energy())
        return np.array(out)

    errors = []
    while len(errors) < points:
        lateral = rng.random(2) @ cell[:2, :2]
        h = np.array([*lateral, top + rng.uniform(-3.0, 1.0)])
        probe = copper.copy() + Atoms("H", positions=[h])
        if probe.get_distances(len(copper), range(len(copper)), mic=True).min() < 1.4:
            continue
        partner = np.array([*(lateral + 0.5 * (cell[0, :2] + cell[1, :2])), top + 1.5])
        e = energies(h, partner) - energies([*lateral, top + 2.5], partner)
        errors.append(e[0] - e[1])
    return np.array(errors)


@needs_teacher
@pytest.mark.parametrize("surface", ["111", "100", "110", "211"])
def test_no_spurious_well_under_the_surface(surface):
    """An H atom anywhere from 3 Å under to 1 Å over the top layer, at least 1.4 Å from every Cu atom: its energy
    relative to 2.5 Å over the surface is within 0.5 eV of the teacher's, at 24 random points. Trajectories stop at
    the dissociation distance before reaching there, but minimisations and longer dynamics after it do not."""
    errors = subsurface_errors(load_model("h2cu-ace"), surface)
    print(f"Cu({surface}): model - teacher from {errors.min():+.2f} to {errors.max():+.2f} eV")
    assert np.abs(errors).max() <= SUBSURFACE_TOLERANCE
