"""EBK levels, sampling and final-state analysis of the diatomic against independent references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import units
from ase.calculators.emt import EMT
from scipy.integrate import solve_ivp
from scipy.stats import kstest

from pyscatter.initial.molecule import (
    HBAR,
    MOLECULES,
    DiatomicPotential,
    diatomic_potential,
    final_state,
    level_summary,
    quantise,
    sample_internal_state,
)
from pyscatter.models.base import ASECalculatorModel, ForceModel, Frame, ModelOutput

# H2-like Morse parameters: well depth (eV), range (1/Å), equilibrium bond length (Å)
D, A, R_E = 4.7, 1.94, 0.741
OFFSET = -3.2  # arbitrary energy zero of the test model, eV


def morse(r: np.ndarray) -> np.ndarray:
    return D * (1 - np.exp(-A * (np.asarray(r) - R_E))) ** 2 - D


def morse_slope(r: np.ndarray) -> np.ndarray:
    x = np.exp(-A * (np.asarray(r) - R_E))
    return 2 * D * A * x * (1 - x)


class MorsePairModel(ForceModel):
    """A Morse pair potential between the two atoms of a frame, as a batched ForceModel."""

    name = "morse"
    species = frozenset({1})
    cutoff = 10.0
    dtype = torch.float64
    identity = "morse-test"

    def __call__(self, frame: Frame, positions: torch.Tensor, compute_forces: bool = True) -> ModelOutput:
        bond = (positions[:, 1] - positions[:, 0]).double()
        r = bond.norm(dim=-1)
        x = torch.exp(-A * (r - R_E))
        energies = D * (1 - x) ** 2 - D + OFFSET
        force_on_second = -(2 * D * A * x * (1 - x) / r)[:, None] * bond
        return ModelOutput(energies, torch.stack([-force_on_second, force_on_second], dim=1))


def morse_exact(molecule: str, n: int) -> tuple[float, float]:
    """Morse level n above the minimum (eV) and its classical period (fs), both exact for EBK."""
    omega = A * np.sqrt(2 * D / MOLECULES[molecule].reduced_mass)
    x = HBAR * omega * (n + 0.5)
    energy = x - x**2 / (4 * D)
    return energy, 2 * np.pi / (omega * np.sqrt(1 - energy / D)) / units.fs


@pytest.fixture(scope="module")
def analytic() -> DiatomicPotential:
    return diatomic_potential(morse)


@pytest.fixture(scope="module")
def tabulated() -> DiatomicPotential:
    return diatomic_potential(MorsePairModel(), (1, 1))


def test_tabulated_potential_matches_morse(tabulated: DiatomicPotential) -> None:
    r = np.linspace(0.35, 6.0, 997)  # off the grid
    assert np.max(np.abs(tabulated.energy(r) - morse(r))) < 1e-6
    assert np.max(np.abs(tabulated.derivative(r) - morse_slope(r))) < 1e-5
    assert tabulated.r_e == pytest.approx(R_E, abs=1e-6)
    assert tabulated.well_depth == pytest.approx(D, abs=1e-6)
    assert tabulated.dissociation_limit == pytest.approx(OFFSET, abs=1e-6)
    assert tabulated.energy(np.array([tabulated.r_max, 50.0])) == pytest.approx([0.0, 0.0])


@pytest.mark.parametrize("source", ["analytic", "tabulated"])
@pytest.mark.parametrize("molecule", ["H2", "D2"])
def test_morse_levels_and_periods_are_exact(source: str, molecule: str, request: pytest.FixtureRequest) -> None:
    potential = request.getfixturevalue(source)
    for n in range(6):
        level = quantise(potential, molecule, n, 0)
        energy, period = morse_exact(molecule, n)
        assert abs(level.energy - energy) < 1e-4
        assert level.period == pytest.approx(period, rel=1e-6)
        assert morse(level.r_inner) == pytest.approx(energy - D, abs=1e-7)
        assert morse(level.r_outer) == pytest.approx(energy - D, abs=1e-7)
        assert level.absolute_energy == pytest.approx(level.energy - D + potential.dissociation_limit, abs=1e-6)
    if source == "analytic":  # the quadrature itself is exact to rounding
        assert abs(quantise(potential, molecule, 5, 0).energy - morse_exact(molecule, 5)[0]) < 1e-9


def test_low_levels_have_the_harmonic_period(analytic: DiatomicPotential) -> None:
    omega = A * np.sqrt(2 * D / MOLECULES["H2"].reduced_mass)
    assert quantise(analytic, "H2", 0, 0).period == pytest.approx(2 * np.pi / omega / units.fs, rel=0.03)


@pytest.mark.parametrize("molecule", ["H2", "D2", "HD"])
@pytest.mark.parametrize(("v", "J"), [(0, 0), (1, 1), (2, 5)])
def test_sampled_states_requantise_to_their_level(
    analytic: DiatomicPotential, molecule: str, v: int, J: int
) -> None:
    level = quantise(analytic, molecule, v, J)
    rng = np.random.default_rng(1000 * v + J)
    samples = [sample_internal_state(level, rng) for _ in range(200)]
    positions = np.array([p for p, _ in samples])
    velocities = np.array([u for _, u in samples])
    masses = np.array(MOLECULES[molecule].masses)[:, None]
    assert np.abs((masses * positions).sum(axis=1)).max() < 1e-12
    assert np.abs((masses * velocities).sum(axis=1)).max() < 1e-12
    state = final_state(analytic, molecule, positions, velocities)
    assert state.bound.all()
    assert np.abs(state.v - v).max() < 1e-3
    assert np.abs(state.J - J).max() < 1e-3
    assert np.abs(state.internal_energy - level.energy).max() < 1e-9
    assert np.abs(state.translational_energy).max() < 1e-20
    bond = positions[:, 1] - positions[:, 0]
    r = np.linalg.norm(bond, axis=1)
    assert r.min() >= level.r_inner - 1e-9 and r.max() <= level.r_outer + 1e-9


def test_same_generator_state_gives_the_same_sample(analytic: DiatomicPotential) -> None:
    level = quantise(analytic, "HD", 1, 3)
    first = sample_internal_state(level, np.random.default_rng(7))
    second = sample_internal_state(level, np.random.default_rng(7))
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_sampled_bond_lengths_follow_the_classical_time_density(analytic: DiatomicPotential) -> None:
    molecule, v, J = "H2", 3, 4
    level = quantise(analytic, molecule, v, J)
    mu = MOLECULES[molecule].reduced_mass
    l2 = J * (J + 1) * HBAR**2

    def hamilton(t: float, y: np.ndarray) -> list[float]:  # y = (r, p_r, ∫ r dt)
        return [y[1] / mu, -morse_slope(y[0]) + l2 / (mu * y[0] ** 3), y[0]]

    def back_at_start(t: float, y: np.ndarray) -> float:  # r passes r_e outwards again
        return y[0] - R_E

    back_at_start.direction = 1.0
    u_start = morse(R_E) + l2 / (2 * mu * R_E**2)
    p_start = np.sqrt(2 * mu * (level.energy - D - u_start))
    horizon = 1.5 * level.period * units.fs
    orbit = solve_ivp(hamilton, (0.0, horizon), [R_E, p_start, 0.0], events=back_at_start,
                      rtol=1e-11, atol=1e-13, dense_output=True)
    period = orbit.t_events[0][-1]
    assert period / units.fs == pytest.approx(level.period, rel=1e-6)
    time_average = orbit.sol(period)[2] / period

    rng = np.random.default_rng(2024)
    samples = np.array([sample_internal_state(level, rng)[0] for _ in range(20000)])
    r = np.linalg.norm(samples[:, 1] - samples[:, 0], axis=1)
    assert abs(r.mean() - time_average) < 4 * r.std() / np.sqrt(len(r))
    reference = np.sort(orbit.sol(np.linspace(0.0, period, 200001))[0])
    assert kstest(r, lambda x: np.searchsorted(reference, x) / len(reference)).pvalue > 1e-3


def test_levels_beyond_dissociation_are_refused(analytic: DiatomicPotential) -> None:
    with pytest.raises(ValueError, match=r"H2 \(v=40, J=0\) lies above the dissociation limit"):
        quantise(analytic, "H2", 40, 0)
    with pytest.raises(ValueError, match=r"D2 \(v=0, J=300\).*no bound well"):
        quantise(analytic, "D2", 0, 300)


def test_unbound_final_state_is_flagged(analytic: DiatomicPotential) -> None:
    mu = MOLECULES["H2"].reduced_mass
    speed = np.sqrt(2 * 0.5 / mu)  # 0.5 eV of relative kinetic energy above the limit, at long range
    positions = np.array([[[0, 0, -2.0], [0, 0, 2.0]], [[0, 0, -0.37], [0, 0, 0.37]]])
    velocities = np.array([[[0, 0, -speed / 2], [0, 0, speed / 2]], [[0, 0, 0], [0, 0, 0]]])
    state = final_state(analytic, "H2", positions, velocities)
    assert state.bound.tolist() == [False, True]
    assert np.isnan(state.v[0]) and state.v[1] > -0.5


def test_final_state_separates_centre_of_mass_motion(analytic: DiatomicPotential) -> None:
    level = quantise(analytic, "HD", 1, 2)
    positions, velocities = sample_internal_state(level, np.random.default_rng(3))
    com_velocity = np.array([0.01, -0.02, -0.05])
    state = final_state(analytic, "HD", positions + 5.0, velocities + com_velocity)
    assert state.v == pytest.approx(1, abs=1e-6) and state.J == pytest.approx(2, abs=1e-9)
    assert state.com_velocity == pytest.approx(com_velocity)
    kinetic = 0.5 * MOLECULES["HD"].total_mass * com_velocity @ com_velocity
    assert state.translational_energy == pytest.approx(kinetic)


def test_emt_binds_h2() -> None:
    model = ASECalculatorModel(EMT(), species=frozenset({1, 29}), cutoff=6.0)
    potential = diatomic_potential(model, (1, 1))
    assert 0.6 < potential.r_e < 0.9 and potential.well_depth > 1.0
    level = quantise(potential, "H2", 1, 1)
    assert level.r_inner < potential.r_e < level.r_outer
    assert 0 < level.energy < potential.well_depth
    summary = level_summary(level)
    assert summary["molecule"] == "H2" and summary["v"] == 1 and summary["J"] == 1
    positions, velocities = sample_internal_state(level, np.random.default_rng(0))
    state = final_state(potential, "H2", positions, velocities)
    assert state.v == pytest.approx(1, abs=1e-6) and state.J == pytest.approx(1, abs=1e-9)
