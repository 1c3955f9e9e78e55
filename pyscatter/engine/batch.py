"""What the native engine integrates: where trajectories start (:class:`InitialConditions`), a system ready to be
integrated (:class:`Start`), the systems drawn from the sampler (:class:`Draws`) and a batch of systems integrated
together (:class:`Batch`), with its per-system energy bookkeeping. Positions Å, velocities ASE units, energies eV."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from pyscatter.conditions import Termination
from pyscatter.engine import friction as mdef
from pyscatter.engine import verlet
from pyscatter.models.base import ForceModel, Frame
from pyscatter.outcomes import Outcome, TrajectoryResult


class InitialConditions(Protocol):
    """Where trajectories start and how scattered molecules are analysed.

    frame: species and cell of the full system (slab + molecule).  masses: (N,) amu.
    mobile: (N,) bool.  molecule: indices of the two molecular atoms.  top_layer: slab top-layer indices.
    """

    frame: Frame
    masses: np.ndarray
    mobile: np.ndarray
    molecule: tuple[int, int]
    top_layer: np.ndarray

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions (N, 3) Å and velocities (N, 3) ASE units of trajectory ``index``."""
        ...

    def noise(self, index: int) -> np.random.Generator:
        """Trajectory ``index``'s stream of the random force of electronic friction (independent of its start's)."""
        ...

    def final_state(self, positions: np.ndarray, velocities: np.ndarray) -> dict[str, float]:
        """v_final, J_final, translational_energy, internal_energy of a free molecule (2, 3) arrays."""
        ...

    def bond_range(self, positions: np.ndarray, velocities: np.ndarray) -> tuple[float, float]:
        """Shortest and longest bond (Å) a free molecule (2, 3) reaches; (0, inf) if unbound (free flight only)."""
        ...


OnFinished = Callable[[list[TrajectoryResult], int], None]
Observer = Callable[[int, int, np.ndarray, np.ndarray, float, np.ndarray, bool], None]
"""``observer(index, steps, positions, velocities, potential_energy, forces, free)``, called after every step
for every system integrated in it: trajectory index, steps taken, arrays (n, 3) (Å, ASE units, eV/Å) and
energy (eV). ``free`` False: the whole slab+molecule system; True: the free molecule alone during free
flight (n = 2; its energy and forces). A system (re)placed in a batch is reported once with the same
``steps`` before it moves (its first force evaluation), e.g. a molecule joining the slab."""


@dataclass
class Start:
    """A system ready to be integrated: trajectory index, positions and velocities (N, 3), steps already
    taken, and energy drift / largest energy error (eV) accumulated before."""

    index: int
    positions: np.ndarray
    velocities: np.ndarray
    steps: int = 0
    drift: float = 0.0
    max_error: float = 0.0
    slab: tuple[np.ndarray, np.ndarray] | None = None  # slab positions, velocities awaiting a free molecule
    slab_top: float = math.inf  # height (Å) of that slab's highest atom


class Batch:
    """Systems of one frame integrated together: the MD state plus per-system bookkeeping (B,).

    With ``friction`` (:mod:`~pyscatter.engine.friction`) each system also carries η (B, 2) of its molecule's atoms,
    the energy it gave to the electrons (B,) eV (part of its conserved total) and its trajectory's noise stream.
    """

    def __init__(self, model: ForceModel, dyn: verlet.Dynamics, termination: Termination,
                 observer: Observer | None = None, free: bool = False, friction: mdef.FrictionAtoms | None = None):
        self.model, self.dyn, self.termination = model, dyn, termination
        self.observer, self.free, self.friction = observer, free, friction
        self.state: verlet.MDState | None = None
        self.starts: list[Start] = []
        self.reference = torch.zeros(0, dtype=torch.float64)
        self.max_error = torch.zeros(0, dtype=torch.float64)
        self.total = torch.zeros(0, dtype=torch.float64)
        self.eta = torch.zeros(0, 2, dtype=torch.float64)
        self.electronic = torch.zeros(0, dtype=torch.float64)
        self.noise: list[np.random.Generator] = []

    @property
    def size(self) -> int:
        return len(self.starts)

    def place(self, slots: list[int], starts: list[Start]) -> None:
        """Put ``starts`` into the existing ``slots`` (their lists are rebuilt), or append them if ``slots`` is None."""
        pos = torch.as_tensor(np.stack([s.positions for s in starts]), dtype=torch.float64)
        vel = torch.as_tensor(np.stack([s.velocities for s in starts]), dtype=torch.float64)
        steps = torch.tensor([s.steps for s in starts], dtype=torch.int64)
        errors = torch.tensor([s.max_error for s in starts], dtype=torch.float64)
        if slots is not None:
            index = torch.tensor(slots, dtype=torch.long)
            self.state = verlet.place(self.state, index, pos, vel, self.dyn, steps)
            for slot, start in zip(slots, starts):
                self.starts[slot] = start
                if self.friction is not None:
                    self.noise[slot] = self.friction.streams(start.index)
            self.max_error[index] = errors
            self.electronic[index] = 0.0
            return
        new = verlet.init(pos, vel, self.dyn, steps)
        self.state = new if self.state is None else verlet.concatenate(self.state, new)
        self.starts += starts
        zeros = torch.zeros(len(starts), dtype=torch.float64)
        self.reference = torch.cat([self.reference, zeros])
        self.max_error = torch.cat([self.max_error, errors])
        self.total = torch.cat([self.total, zeros])
        self.eta = torch.cat([self.eta, torch.zeros(len(starts), 2, dtype=torch.float64)])
        self.electronic = torch.cat([self.electronic, zeros])
        if self.friction is not None:
            self.noise += [self.friction.streams(start.index) for start in starts]

    def keep(self, slots: torch.Tensor) -> None:
        """Compact the batch to ``slots`` (in that order); the model's cached lists follow."""
        self.state = verlet.select(self.state, slots)
        self.starts = [self.starts[i] for i in slots.tolist()]
        self.reference, self.max_error, self.total = self.reference[slots], self.max_error[slots], self.total[slots]
        self.eta, self.electronic = self.eta[slots], self.electronic[slots]
        self.noise = [self.noise[i] for i in slots.tolist()] if self.friction is not None else []
        self.model.select(self.dyn.frame, slots)

    def step(self) -> torch.Tensor:
        """One velocity-Verlet step (with friction: O B A B O) of every system; returns the mask (B,) of systems that
        failed in it."""
        fresh = self.state.fresh
        if self.friction is None:
            self.state = verlet.step(self.state, self.model, self.dyn)
        else:
            noise = torch.zeros(self.size, *mdef.NOISE_SHAPE, dtype=torch.float64)
            for slot in torch.nonzero(~fresh).flatten().tolist():  # a fresh system does not move: it draws nothing
                noise[slot] = torch.from_numpy(self.noise[slot].standard_normal(mdef.NOISE_SHAPE))
            self.state, self.eta, given = mdef.step(self.state, self.eta, self.model, self.dyn, self.friction, noise)
            self.electronic = self.electronic + given
        s = self.state
        self.total = verlet.kinetic_energy(s.velocities, self.dyn.masses) + s.potential_energy
        if self.friction is not None:
            self.total = self.total + self.electronic
        if fresh.any():
            drift = torch.tensor([self.starts[i].drift for i in range(self.size)], dtype=torch.float64)
            self.reference = torch.where(fresh, self.total - drift, self.reference)
        self.max_error = torch.maximum(self.max_error, (self.total - self.reference).abs())
        finite = torch.isfinite(self.total + (s.positions + s.forces).sum((1, 2)))  # a non-finite entry spoils the sum
        if self.observer is not None:
            for slot, start in enumerate(self.starts):
                self.observer(start.index, int(s.steps[slot]), s.positions[slot].numpy(), s.velocities[slot].numpy(),
                              float(s.potential_energy[slot]), s.forces[slot].numpy(), self.free)
        return ~finite | ~(self.max_error <= self.termination.max_energy_error)

    def failure(self, slot: int) -> str:
        s = self.state
        if not torch.isfinite(s.positions[slot]).all():
            return "non-finite positions"
        if not torch.isfinite(s.forces[slot]).all():
            return "non-finite forces"
        if not torch.isfinite(self.total[slot]):
            return "non-finite energy"
        return (f"total-energy error {float(self.max_error[slot]):.4g} eV above the bound of "
                f"{self.termination.max_energy_error:g} eV")

    def result(self, slot: int, outcome: Outcome, dt: float, steps: int | None = None, **extra) -> TrajectoryResult:
        steps = int(self.state.steps[slot]) if steps is None else steps
        return TrajectoryResult(
            index=self.starts[slot].index, outcome=outcome, end_time=steps * dt,
            energy_drift=float(self.total[slot] - self.reference[slot]),
            max_energy_error=float(self.max_error[slot]), electronic_energy_loss=float(self.electronic[slot]), **extra,
        )


class Draws:
    """Systems straight from the sampler: trajectory ``pending`` indices drawn from ``initial`` in order."""

    def __init__(self, initial: InitialConditions, pending: Iterator[int]):
        self.initial, self.pending = initial, pending
        self.exhausted = False
        self.finished: list[TrajectoryResult] = []  # none: a drawn system has not moved

    def take(self, n: int) -> list[Start]:
        """Up to ``n`` systems (fewer only once every index is drawn)."""
        starts = []
        for _ in range(n):
            index = next(self.pending, None)
            if index is None:
                self.exhausted = True
                break
            positions, velocities = self.initial.sample(index)
            starts.append(Start(index, positions, velocities))
        return starts


def slab_atoms(initial: InitialConditions) -> np.ndarray:
    """Indices of the slab atoms: all but the molecule's."""
    return np.array([i for i in range(initial.frame.n_atoms) if i not in initial.molecule])
