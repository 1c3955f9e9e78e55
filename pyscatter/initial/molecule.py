"""EBK quantisation of the incident diatomic and analysis of its final internal state.

Units are ASE's: energies in eV, lengths in Å, masses in amu, velocities in Å per ASE time
unit (so ½ m v² is in eV), angular momenta and actions in eV·(ASE time). Reported periods are
in fs.

The molecular potential V(r) is taken *relative to the dissociation limit* (V → 0 as r → ∞);
level and internal energies are reported *above the minimum of V* (so the energy of (v, J)
includes its rotational energy), with the absolute energy on the model's own scale alongside.

A level (v, J) is the energy E at which the radial action of the effective potential
U(r) = V(r) + J(J+1)ħ²/(2μr²) satisfies ∮ p_r dr = 2πħ(v + ½) (Einstein–Brillouin–Keller).
Levels above the centrifugal barrier top (or, for J = 0, above V(∞) = 0) are refused; levels
between V(∞) and the barrier top are quasi-bound and classically bound, and are accepted.
"""

from __future__ import annotations

import math

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from ase import units
from scipy.interpolate import CubicHermiteSpline, CubicSpline
from scipy.optimize import brentq, minimize_scalar

from pyscatter.models.base import ForceModel, Frame, check_species

HBAR = units._hbar * units.J * units.s
"""Reduced Planck constant in eV·(ASE time unit)."""

H_MASS = 1.00782503223
"""Atomic mass of ¹H in amu (atom, electron included, as in Born–Oppenheimer dynamics)."""
D_MASS = 2.01410177812
"""Atomic mass of ²H in amu."""

_TABLE_BATCH = 1024  # structures per model call when tabulating V(r)
_WELL_GRID = 2001  # points of the coarse scan for the effective well's bottom and barrier
_ACTION_NODES = np.polynomial.legendre.leggauss(512)  # Gauss–Legendre nodes in θ for the action
_ORBIT_SEGMENTS = 512  # composite Gauss–Legendre segments in θ for the time along the orbit
_ORBIT_NODES = np.polynomial.legendre.leggauss(8)


@dataclass(frozen=True)
class Molecule:
    """A diatomic: name, atomic numbers and atomic masses (amu) of its two atoms."""

    name: str
    numbers: tuple[int, int]
    masses: tuple[float, float]

    @property
    def reduced_mass(self) -> float:
        """μ = m₁m₂/(m₁+m₂), amu."""
        m1, m2 = self.masses
        return m1 * m2 / (m1 + m2)

    @property
    def total_mass(self) -> float:
        """M = m₁+m₂, amu."""
        return sum(self.masses)


MOLECULES: dict[str, Molecule] = {
    m.name: m
    for m in (
        Molecule("H2", (1, 1), (H_MASS, H_MASS)),
        Molecule("D2", (1, 1), (D_MASS, D_MASS)),
        Molecule("HD", (1, 1), (H_MASS, D_MASS)),
    )
}


@dataclass(frozen=True)
class DiatomicPotential:
    """The potential energy curve V(r) of an isolated diatomic, relative to its dissociation limit.

    energy(r): V(r) in eV, exactly 0 for r ≥ r_max; derivative(r): dV/dr in eV/Å.
    r_min, r_max: range of r in Å on which V is known; V is extrapolated below r_min.
    r_e: equilibrium bond length, Å. well_depth: D_e = −V(r_e) > 0, eV.
    dissociation_limit: energy of the separated atoms on the source's own scale, eV
    (so the source's energy at r is V(r) + dissociation_limit).
    """

    energy: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    derivative: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    r_min: float
    r_max: float
    r_e: float
    well_depth: float
    dissociation_limit: float


def diatomic_potential(
    source: ForceModel | Callable[[np.ndarray], np.ndarray],
    numbers: tuple[int, int] = (1, 1),
    r_min: float = 0.3,
    r_max: float | None = None,
    spacing: float = 0.004,
) -> DiatomicPotential:
    """V(r) of the isolated molecule ``numbers`` from a force model, or from an analytic V(r).

    A :class:`ForceModel` is evaluated (in batches of structures, non-periodic box) for a
    2-atom molecule on a grid of bond lengths from ``r_min`` to ``r_max`` (default: model
    cutoff + 1 Å) every ``spacing`` Å; V is the cubic Hermite interpolant of its energies and
    bond-stretching forces. A plain callable V(r) (eV, r in Å, vectorised) is used as is, with
    ``r_max`` defaulting to 10 Å and dV/dr by central differences. Lengths in Å, energies in eV.
    """
    if isinstance(source, ForceModel):
        r_max = source.cutoff + 1.0 if r_max is None else r_max
        grid = np.linspace(r_min, r_max, int(np.ceil((r_max - r_min) / spacing)) + 1)
        spline = CubicHermiteSpline(grid, *_tabulate(source, numbers, grid))
        absolute, absolute_slope = spline, spline.derivative()
    else:
        r_max = 10.0 if r_max is None else r_max
        step = 1e-6
        absolute = source
        absolute_slope = lambda r: (source(r + step) - source(r - step)) / (2 * step)  # noqa: E731
    limit = float(absolute(r_max))

    def energy(r: np.ndarray) -> np.ndarray:
        r = np.asarray(r, dtype=np.float64)
        return np.where(r < r_max, absolute(np.minimum(r, r_max)) - limit, 0.0)

    def derivative(r: np.ndarray) -> np.ndarray:
        r = np.asarray(r, dtype=np.float64)
        return np.where(r < r_max, absolute_slope(np.minimum(r, r_max)), 0.0)

    r = np.linspace(r_min, r_max, _WELL_GRID)
    i = int(np.argmin(energy(r)))
    if i in (0, len(r) - 1) or energy(r[i]) >= 0:
        raise ValueError(f"the {numbers} curve has no bound well between {r_min} and {r_max} Å")
    best = minimize_scalar(lambda x: float(energy(x)), bounds=(r[i - 1], r[i + 1]), method="bounded",
                           options={"xatol": 1e-10})
    return DiatomicPotential(energy, derivative, r_min, r_max, float(best.x), -float(best.fun), limit)


def _tabulate(model: ForceModel, numbers: tuple[int, int], r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Energies (eV) and dE/dr (eV/Å) of the molecule at bond lengths ``r`` (Å), along z."""
    check_species(model, np.asarray(numbers))
    half_box = r[-1] + model.cutoff  # no atom within the cutoff of the box faces either
    frame = Frame(np.asarray(numbers), np.eye(3) * 2 * half_box, (False, False, False))
    positions = np.full((len(r), 2, 3), half_box)
    positions[:, 0, 2] -= r / 2
    positions[:, 1, 2] += r / 2
    energies, slopes = [], []
    for start in range(0, len(r), _TABLE_BATCH):
        out = model(frame, torch.from_numpy(positions[start:start + _TABLE_BATCH]), compute_forces=True)
        forces_z = out.forces.detach().cpu().double().numpy()[:, :, 2]
        energies.append(out.energies.detach().cpu().double().numpy())
        slopes.append((forces_z[:, 0] - forces_z[:, 1]) / 2)
    return np.concatenate(energies), np.concatenate(slopes)


@dataclass(frozen=True)
class _Well:
    """The well of U(r) = V(r) + l2/(2μr²): bottom (r, U) and barrier top (r, U) beyond it."""

    potential: DiatomicPotential
    reduced_mass: float
    l2: float  # squared angular momentum, (eV·ASE time)²
    r_bottom: float
    u_bottom: float
    r_top: float
    u_top: float

    def u(self, r: np.ndarray) -> np.ndarray:
        """Effective radial potential U(r), eV."""
        return _effective_potential(self.potential, self.reduced_mass, self.l2, r)

    def radial_momentum(self, energy: float, r: np.ndarray) -> np.ndarray:
        """|p_r| at energy E (eV) and r (Å), amu·Å/(ASE time); 0 outside the classical region."""
        return np.sqrt(2 * self.reduced_mass * np.maximum(energy - self.u(r), 0.0))

    def turning_points(self, energy: float) -> tuple[float, float]:
        """Inner and outer classical turning points (Å) at energy u_bottom < E < u_top."""
        f = lambda r: float(self.u(r)) - energy  # noqa: E731
        if f(self.potential.r_min) <= 0:
            raise ValueError(
                f"inner turning point at {energy:.4f} eV lies below r_min = {self.potential.r_min} Å"
            )
        return (brentq(f, self.potential.r_min, self.r_bottom, xtol=1e-14),
                brentq(f, self.r_bottom, self.r_top, xtol=1e-14))

    def action(self, energy: float) -> float:
        """∮ p_r dr at energy E (eV), eV·(ASE time); r = mid + half·sin θ removes the √ endpoints."""
        if energy <= self.u_bottom:
            return 0.0
        r_in, r_out = self.turning_points(energy)
        mid, half = (r_in + r_out) / 2, (r_out - r_in) / 2
        x, w = _ACTION_NODES
        theta = np.pi / 2 * x
        p = self.radial_momentum(energy, mid + half * np.sin(theta))
        return float(np.pi * np.sum(w * p * half * np.cos(theta)))  # 2 × (π/2) Σ w p dr/dθ


def _effective_potential(
    potential: DiatomicPotential, reduced_mass: float, l2: float, r: np.ndarray
) -> np.ndarray:
    """U(r) = V(r) + l2/(2μr²), eV, for squared angular momentum l2 in (eV·ASE time)²."""
    return potential.energy(r) + l2 / (2 * reduced_mass * np.asarray(r) ** 2)


def _effective_well(potential: DiatomicPotential, reduced_mass: float, l2: float) -> _Well | None:
    """The deepest well of U(r) for squared angular momentum l2, or None if U has no well."""
    u_of = lambda x: float(_effective_potential(potential, reduced_mass, l2, x))  # noqa: E731
    r = np.linspace(potential.r_min, potential.r_max, _WELL_GRID)
    u = _effective_potential(potential, reduced_mass, l2, r)
    minima = np.flatnonzero((u[1:-1] < u[:-2]) & (u[1:-1] <= u[2:])) + 1
    if minima.size == 0:
        return None
    i = int(minima[np.argmin(u[minima])])
    bottom = minimize_scalar(u_of, bounds=(r[i - 1], r[i + 1]), method="bounded",
                             options={"xatol": 1e-10})
    j = i + int(np.argmax(u[i:]))
    if j == len(r) - 1:  # U keeps rising to r_max, where V = 0 and U then only falls
        r_top, u_top = float(r[j]), float(u[j])
    else:
        top = minimize_scalar(lambda x: -u_of(x), bounds=(r[j - 1], r[j + 1]), method="bounded",
                              options={"xatol": 1e-10})
        r_top, u_top = float(top.x), -float(top.fun)
    return _Well(potential, reduced_mass, l2, float(bottom.x), float(bottom.fun), r_top, u_top)


@dataclass(frozen=True)
class DiatomicLevel:
    """An EBK level (v, J) of a diatomic.

    energy: E above the minimum of V (vibration + rotation), eV.
    absolute_energy: E on the potential source's own energy scale, eV.
    r_inner, r_outer: classical turning points, Å. period: vibrational period, fs.
    """

    molecule: Molecule
    v: int
    J: int
    energy: float
    absolute_energy: float
    r_inner: float
    r_outer: float
    period: float
    well: _Well = field(repr=False)
    theta_of_phase: Callable[[float], float] = field(repr=False)  # half-orbit time fraction → θ

    @property
    def energy_relative_to_limit(self) -> float:
        """E relative to the dissociation limit V(∞) = 0, eV."""
        return self.energy - self.well.potential.well_depth


def _molecule(molecule: Molecule | str) -> Molecule:
    return MOLECULES[molecule] if isinstance(molecule, str) else molecule


def quantise(potential: DiatomicPotential, molecule: Molecule | str, v: int, J: int) -> DiatomicLevel:
    """The EBK level (v, J): ∮ p_r dr = 2πħ(v + ½) on U(r) = V(r) + J(J+1)ħ²/(2μr²).

    Raises ValueError if U has no well or the level would lie above its dissociation limit.
    """
    molecule = _molecule(molecule)
    if v < 0 or J < 0:
        raise ValueError(f"{molecule.name}: v and J must be non-negative, got v={v}, J={J}")
    mu = molecule.reduced_mass
    well = _effective_well(potential, mu, J * (J + 1) * HBAR**2)
    if well is None or well.u_bottom >= well.u_top:
        raise ValueError(f"{molecule.name} (v={v}, J={J}): the J={J} effective potential has no bound well")
    target = 2 * np.pi * HBAR * (v + 0.5)
    e_high = well.u_top - 1e-9 * max(1.0, abs(well.u_top))
    action_max = well.action(e_high)
    if action_max <= target:
        v_max = action_max / (2 * np.pi * HBAR) - 0.5
        raise ValueError(
            f"{molecule.name} (v={v}, J={J}) lies above the dissociation limit {well.u_top:.4f} eV "
            f"(relative to V(∞)) of the J={J} effective potential, where v ≤ {v_max:.2f}"
        )
    energy = brentq(lambda e: well.action(e) - target, well.u_bottom, e_high, xtol=1e-13, rtol=1e-15)
    r_in, r_out = well.turning_points(energy)
    half_period, theta_of_phase = _orbit_timing(well, energy, r_in, r_out)
    return DiatomicLevel(
        molecule, v, J,
        energy=energy + potential.well_depth,
        absolute_energy=energy + potential.dissociation_limit,
        r_inner=r_in, r_outer=r_out,
        period=2 * half_period / units.fs,
        well=well, theta_of_phase=theta_of_phase,
    )


def _orbit_timing(well: _Well, energy: float, r_in: float, r_out: float) -> tuple[float, CubicSpline]:
    """Half period (ASE time) and θ(s) for s = t/(half period) on the outward leg r = mid + half·sin θ.

    dt/dθ = μ·half·cos θ / p_r is smooth on [−π/2, π/2]; it is integrated by composite
    Gauss–Legendre and t(θ) is inverted by a cubic spline.
    """
    mid, half = (r_in + r_out) / 2, (r_out - r_in) / 2
    edges = np.linspace(-np.pi / 2, np.pi / 2, _ORBIT_SEGMENTS + 1)
    x, w = _ORBIT_NODES
    half_width = (edges[1] - edges[0]) / 2
    theta = (edges[:-1] + half_width)[:, None] + half_width * x[None, :]
    p = well.radial_momentum(energy, mid + half * np.sin(theta))
    dt_dtheta = well.reduced_mass * half * np.cos(theta) / p
    t = np.concatenate([[0.0], np.cumsum(half_width * (dt_dtheta * w).sum(axis=1))])
    return float(t[-1]), CubicSpline(t / t[-1], edges)


@dataclass(frozen=True)
class InternalDraw:
    """The random variates of one molecule's internal state (independent of the potential).

    phase: time along the vibrational orbit in half periods, [0, 2): [0, 1) the outward leg from the
    inner turning point, [1, 2) the inward one.  bond: unit vector from the first atom to the second.
    axis: unit vector of the angular momentum, perpendicular to ``bond``.
    """

    phase: float
    bond: np.ndarray
    axis: np.ndarray


def draw_internal_state(rng: np.random.Generator) -> InternalDraw:
    """Uniform vibrational phase, isotropic bond direction, uniformly random angular-momentum direction
    perpendicular to the bond. Draws from ``rng`` only, always the same number of variates."""
    phase = float(rng.uniform(0.0, 2.0))
    bond = _unit(rng.normal(size=3))
    axis = rng.normal(size=3)
    return InternalDraw(phase, bond, _unit(axis - axis.dot(bond) * bond))


def internal_state(level: DiatomicLevel, draw: InternalDraw) -> tuple[np.ndarray, np.ndarray]:
    """Positions (2, 3) Å and velocities (2, 3) of the two atoms relative to their centre of mass.

    The bond length and radial momentum are those at ``draw.phase`` along the classical vibrational
    orbit of ``level``; the angular momentum, of magnitude √(J(J+1))ħ, points along ``draw.axis``.
    The centre of mass is at the origin and the total momentum is zero.
    """
    well, mu = level.well, level.well.reduced_mass
    outward = draw.phase < 1.0
    r = bond_length_at(level, draw.phase)
    p_r = float(well.radial_momentum(level.energy_relative_to_limit, r)) * (1.0 if outward else -1.0)
    bond, axis = draw.bond, draw.axis
    v_rel = p_r / mu * bond + np.sqrt(well.l2) / (mu * r) * np.cross(axis, bond)
    m1, m2 = level.molecule.masses
    weights = np.array([-m2, m1])[:, None] / (m1 + m2)
    return weights * (r * bond), weights * v_rel


def bond_length_at(level: DiatomicLevel, phase: float) -> float:
    """Bond length (Å) at ``phase`` (half periods, [0, 2)) along the vibrational orbit of ``level``."""
    theta = float(level.theta_of_phase(phase if phase < 1.0 else 2.0 - phase))
    return float((level.r_inner + level.r_outer) / 2 + (level.r_outer - level.r_inner) / 2 * np.sin(theta))


def sample_internal_state(level: DiatomicLevel, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """:func:`internal_state` of a fresh :func:`draw_internal_state`: a uniformly random time along the
    classical vibrational orbit, isotropic bond and angular-momentum directions."""
    return internal_state(level, draw_internal_state(rng))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x)


@dataclass(frozen=True)
class FinalState:
    """Final state of diatomics; arrays have the batch shape of the input (``()`` for one molecule).

    v, J: real-valued EBK quantum numbers v′, J′ (v′ is NaN where not bound).
    internal_energy: vibrational + rotational energy above the minimum of V, eV.
    translational_energy: ½ M v_com², eV. com_velocity: (..., 3), Å/(ASE time).
    bound: False where the internal energy is above the J′ effective potential's dissociation
    limit or the atoms are outside its centrifugal barrier.
    """

    v: np.ndarray
    J: np.ndarray
    internal_energy: np.ndarray
    translational_energy: np.ndarray
    com_velocity: np.ndarray
    bound: np.ndarray


def _relative_motion(potential: DiatomicPotential, molecule: Molecule, positions, velocities):
    """Bond length r (Å), squared angular momentum l2, internal energy E (eV, on V's scale) and centre-of-mass
    velocity of molecules with positions, velocities (..., 2, 3)."""
    positions, velocities = np.asarray(positions, np.float64), np.asarray(velocities, np.float64)
    m = np.asarray(molecule.masses)[:, None]
    mu, total = molecule.reduced_mass, molecule.total_mass
    com_velocity = (m * velocities).sum(axis=-2) / total
    bond = positions[..., 1, :] - positions[..., 0, :]
    v_rel = velocities[..., 1, :] - velocities[..., 0, :]
    r = np.linalg.norm(bond, axis=-1)
    v_r = (bond * v_rel).sum(axis=-1) / r
    l2 = (mu * np.linalg.norm(np.cross(bond, v_rel), axis=-1)) ** 2
    energy = 0.5 * mu * v_r**2 + l2 / (2 * mu * r**2) + potential.energy(r)
    return r, l2, energy, com_velocity


def bond_range(potential: DiatomicPotential, molecule: Molecule | str, positions: np.ndarray,
               velocities: np.ndarray) -> tuple[float, float]:
    """Shortest and longest bond (Å) a free molecule with positions, velocities (2, 3) reaches: its inner
    and outer turning points at its internal energy and angular momentum; (0, inf) if it is not bound in
    the well it is in."""
    molecule = _molecule(molecule)
    r, l2, energy, _ = _relative_motion(potential, molecule, positions, velocities)
    well = _effective_well(potential, molecule.reduced_mass, float(l2))
    if well is None or not (energy < well.u_top and r < well.r_top):
        return 0.0, math.inf
    if energy <= well.u_bottom:
        return float(r), float(r)
    inner, outer = well.turning_points(float(energy))
    return min(float(r), inner), max(float(r), outer)


def final_state(
    potential: DiatomicPotential, molecule: Molecule | str, positions: np.ndarray, velocities: np.ndarray
) -> FinalState:
    """Real-valued v′, J′ and the translational state of molecules with positions, velocities (..., 2, 3).

    J′(J′+1)ħ² = L² with L = |μ r × v_rel|; E_int = ½μv_r² + L²/(2μr²) + V(r);
    v′ = ∮ p_r dr (E_int, J′)/(2πħ) − ½. Positions in Å, velocities in Å/(ASE time).
    """
    molecule = _molecule(molecule)
    mu, total = molecule.reduced_mass, molecule.total_mass
    r, l2, energy, com_velocity = _relative_motion(potential, molecule, positions, velocities)
    j = (np.sqrt(1.0 + 4.0 * l2 / HBAR**2) - 1.0) / 2.0
    v = np.full(r.shape, np.nan)
    for index in np.ndindex(r.shape):
        well = _effective_well(potential, mu, float(l2[index]))
        if well is not None and energy[index] < well.u_top and r[index] < well.r_top:
            v[index] = well.action(float(energy[index])) / (2 * np.pi * HBAR) - 0.5
    return FinalState(
        v=v,
        J=j,
        internal_energy=energy + potential.well_depth,
        translational_energy=0.5 * total * (com_velocity**2).sum(axis=-1),
        com_velocity=com_velocity,
        bound=~np.isnan(v),
    )


def level_summary(level: DiatomicLevel) -> dict[str, str | int | float]:
    """JSON-ready description of a level: energy above the minimum (eV), turning points (Å), period (fs)."""
    return {
        "molecule": level.molecule.name,
        "v": level.v,
        "J": level.J,
        "energy_eV": float(level.energy),
        "r_inner_A": float(level.r_inner),
        "r_outer_A": float(level.r_outer),
        "period_fs": float(level.period),
    }
