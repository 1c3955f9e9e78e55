"""Initial conditions of one condition: a thermal slab snapshot plus an EBK-quantised molecule.

Trajectory ``i`` draws everything from its own generator, seeded by (seed, collision energy, i),
so its start does not depend on batch size, interruption or the number of workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ase.constraints import FixAtoms

from pyscatter.conditions import RunSpec
from pyscatter.initial.molecule import (
    MOLECULES,
    DiatomicLevel,
    bond_range,
    DiatomicPotential,
    InternalDraw,
    diatomic_potential,
    draw_internal_state,
    final_state,
    internal_state,
    quantise,
)
from pyscatter.initial.surface import Slab
from pyscatter.initial.thermal import ThermalSnapshots
from pyscatter.models.base import ForceModel, Frame


FRICTION_NOISE = 1
"""Stream key of a trajectory's electronic-friction noise (:func:`trajectory_rng`)."""


def trajectory_rng(seed: int, collision_energy: float, index: int, *stream: int) -> np.random.Generator:
    """The random stream of trajectory ``index`` at ``collision_energy`` (eV, resolved to 1 µeV); with a ``stream``
    key (e.g. :data:`FRICTION_NOISE`) another stream of that trajectory, independent of its start's."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(int(round(collision_energy * 1e6)), index,
                                                                         *stream)))


@dataclass(frozen=True)
class TrajectoryDraw:
    """Every random variate of trajectory ``index``'s start, in the order they are drawn.

    snapshot: index of the thermal slab snapshot.  internal: vibrational phase, bond and
    angular-momentum directions (:class:`~pyscatter.initial.molecule.InternalDraw`).
    impact: fractional coordinates (2,) of the centre of mass's lateral position in the surface cell.
    """

    index: int
    snapshot: int
    internal: InternalDraw
    impact: np.ndarray


def draw_trajectory(seed: int, collision_energy: float, index: int, n_snapshots: int) -> TrajectoryDraw:
    """The draws of trajectory ``index`` at ``collision_energy`` (eV) from its own random stream.

    Depends on nothing else (no model, no level): a run's initial conditions can be regenerated from
    its spec and the number of thermal snapshots alone.
    """
    rng = trajectory_rng(seed, collision_energy, index)
    snapshot = int(rng.integers(n_snapshots))
    internal = draw_internal_state(rng)
    return TrajectoryDraw(index, snapshot, internal, rng.random(2))


@dataclass(frozen=True)
class MoleculeOnSurface:
    """The molecule (last two atoms) above a thermal slab, at normal incidence.

    collision_energy: eV.  height: centre of mass above the mean top-layer height at t=0, Å.
    """

    slab: Slab
    snapshots: ThermalSnapshots
    potential: DiatomicPotential
    level: DiatomicLevel
    collision_energy: float
    height: float
    seed: int
    frame: Frame = field(init=False)
    masses: np.ndarray = field(init=False)
    mobile: np.ndarray = field(init=False)
    molecule: tuple[int, int] = field(init=False)
    top_layer: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        atoms = self.slab.atoms
        n = len(atoms)
        molecule = self.level.molecule
        numbers = np.concatenate([atoms.numbers, molecule.numbers])
        masses = np.concatenate([atoms.get_masses(), molecule.masses])
        set_ = object.__setattr__
        set_(self, "frame", Frame(numbers, atoms.cell.array, (True, True, False)))
        set_(self, "masses", masses)
        set_(self, "mobile", np.concatenate([~self.slab.fixed, [True, True]]))
        set_(self, "molecule", (n, n + 1))
        set_(self, "top_layer", np.asarray(self.slab.top_layer))

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions (N, 3) Å and velocities (N, 3) ASE units of trajectory ``index``."""
        return self.start(self.draw(index))

    def draw(self, index: int) -> TrajectoryDraw:
        """The random variates of trajectory ``index`` (:func:`draw_trajectory`)."""
        return draw_trajectory(self.seed, self.collision_energy, index, len(self.snapshots.positions))

    def start(self, draw: TrajectoryDraw) -> tuple[np.ndarray, np.ndarray]:
        """Positions (N, 3) Å and velocities (N, 3) ASE units of the start ``draw`` describes."""
        slab_positions = self.snapshots.positions[draw.snapshot]
        slab_velocities = self.snapshots.velocities[draw.snapshot]
        rel_positions, rel_velocities = internal_state(self.level, draw.internal)
        lateral = draw.impact @ self.frame.cell[:2]
        com = np.array([lateral[0], lateral[1], slab_positions[self.top_layer, 2].mean() + self.height])
        mass = self.level.molecule.total_mass
        approach = np.array([0.0, 0.0, -np.sqrt(2.0 * self.collision_energy / mass)])
        positions = np.concatenate([slab_positions, com + rel_positions])
        velocities = np.concatenate([slab_velocities, approach + rel_velocities])
        return positions, velocities

    def noise(self, index: int) -> np.random.Generator:
        """Trajectory ``index``'s stream of the random force of electronic friction."""
        return trajectory_rng(self.seed, self.collision_energy, index, FRICTION_NOISE)

    def final_state(self, positions: np.ndarray, velocities: np.ndarray) -> dict[str, float]:
        """Real-valued v', J', translational and internal energy (eV) of the scattered molecule."""
        fs = final_state(self.potential, self.level.molecule, positions, velocities)
        return {
            "v_final": float(fs.v),
            "J_final": float(fs.J),
            "translational_energy": float(fs.translational_energy),
            "internal_energy": float(fs.internal_energy),
        }

    def bond_range(self, positions: np.ndarray, velocities: np.ndarray) -> tuple[float, float]:
        """Shortest and longest bond (Å) the free molecule with positions, velocities (2, 3) reaches ((0, inf) if unbound)."""
        return bond_range(self.potential, self.level.molecule, positions, velocities)

    def atoms(self, index: int):
        """Trajectory ``index``'s start as ASE ``Atoms`` with velocities and FixAtoms (for checks)."""
        positions, velocities = self.sample(index)
        atoms = self.frame.atoms(positions)
        atoms.set_masses(self.masses)
        atoms.set_velocities(velocities)
        atoms.set_constraint(FixAtoms(mask=~self.mobile))
        return atoms


def quantised_molecule(spec: RunSpec, model: ForceModel) -> tuple[DiatomicPotential, DiatomicLevel]:
    """The incident molecule's gas-phase potential under ``model`` and its EBK level (v, J).

    Raises ValueError for a level beyond the dissociation limit.
    """
    molecule = MOLECULES[spec.molecule]
    potential = diatomic_potential(model, molecule.numbers)
    return potential, quantise(potential, molecule, spec.v, spec.J)


def build_initial_conditions(
    spec: RunSpec,
    collision_energy: float,
    slab: Slab,
    snapshots: ThermalSnapshots,
    molecule: tuple[DiatomicPotential, DiatomicLevel],
) -> MoleculeOnSurface:
    """Combine the thermal slab with the quantised molecule (from :func:`quantised_molecule`)."""
    potential, level = molecule
    return MoleculeOnSurface(slab, snapshots, potential, level, collision_energy, spec.termination.initial_height, spec.seed)
