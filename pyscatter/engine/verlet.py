"""Velocity Verlet as pure ``init``/``step`` functions of (state, model) -> state.

A :class:`MDState` holds B independent systems of one :class:`~pyscatter.models.base.Frame`.
Positions in Å, velocities in ASE units (Å per ASE time unit), forces in eV/Å, energies in eV,
masses in amu, time step in ASE time units (``dt_fs * ase.units.fs``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch

from pyscatter.models.base import ForceModel, Frame


@dataclass(frozen=True)
class Dynamics:
    """Global fields shared by every system of a batch.

    masses: (N,) amu.  mobile: (N,) bool, False for fixed atoms.  dt: time step, ASE units.
    inverse_mass: (N, 1) 1/amu, zero for fixed atoms (derived).
    """

    frame: Frame
    masses: torch.Tensor
    mobile: torch.Tensor
    dt: float
    inverse_mass: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inverse_mass", ((1.0 / self.masses) * self.mobile)[:, None])


@dataclass(frozen=True)
class MDState:
    """Per-atom fields (B, N, 3) and per-system fields (B,).

    fresh marks systems that were just (re)placed: their forces are not yet known, so the next
    step only evaluates forces for them and leaves positions and velocities unchanged.
    steps counts completed time steps per system.
    """

    positions: torch.Tensor
    velocities: torch.Tensor
    forces: torch.Tensor
    potential_energy: torch.Tensor
    steps: torch.Tensor
    fresh: torch.Tensor

    @property
    def batch_size(self) -> int:
        return self.positions.shape[0]


def kinetic_energy(velocities: torch.Tensor, masses: torch.Tensor) -> torch.Tensor:
    """Kinetic energy per system (B,), eV."""
    return 0.5 * (masses[:, None] * velocities.square()).sum(dim=(-2, -1))


def init(positions: torch.Tensor, velocities: torch.Tensor, dyn: Dynamics, steps: torch.Tensor | None = None) -> MDState:
    """A state of systems whose forces are still to be computed (all fresh), ``steps`` already taken (default 0)."""
    batch = positions.shape[0]
    return MDState(
        positions=positions.clone(),
        velocities=velocities * dyn.mobile[:, None],
        forces=torch.zeros_like(positions),
        potential_energy=torch.zeros(batch, dtype=positions.dtype, device=positions.device),
        steps=torch.zeros(batch, dtype=torch.int64, device=positions.device) if steps is None else steps.clone(),
        fresh=torch.ones(batch, dtype=torch.bool, device=positions.device),
    )


def place(state: MDState, slots: torch.Tensor, positions: torch.Tensor, velocities: torch.Tensor, dyn: Dynamics,
          steps_taken: torch.Tensor | None = None) -> MDState:
    """Put new systems into the given batch slots, ``steps_taken`` already (default 0); they become fresh."""
    pos, vel = state.positions.clone(), state.velocities.clone()
    pos[slots] = positions
    vel[slots] = velocities * dyn.mobile[:, None]
    steps, fresh = state.steps.clone(), state.fresh.clone()
    steps[slots] = 0 if steps_taken is None else steps_taken
    fresh[slots] = True
    return replace(state, positions=pos, velocities=vel, steps=steps, fresh=fresh)


def select(state: MDState, slots: torch.Tensor) -> MDState:
    """The systems in ``slots`` only, in that order (a smaller batch)."""
    return MDState(*(getattr(state, f.name)[slots] for f in fields(MDState)))


def concatenate(first: MDState, second: MDState) -> MDState:
    """The systems of ``first`` followed by those of ``second``."""
    return MDState(*(torch.cat([getattr(first, f.name), getattr(second, f.name)]) for f in fields(MDState)))


def step(state: MDState, model: ForceModel, dyn: Dynamics) -> MDState:
    """One velocity-Verlet step for every system; fresh systems only get their forces.

    The one force call per step evaluates x(t+dt) of running systems and x(0) of fresh ones, so
    refilling a slot costs one slot-step, not an extra batch call. Fixed atoms never move.
    """
    acceleration = state.forces * dyn.inverse_mass
    dt = dyn.dt
    positions = state.positions + dt * state.velocities + (0.5 * dt * dt) * acceleration
    any_fresh = bool(state.fresh.any())
    if any_fresh:
        positions = torch.where(state.fresh[:, None, None], state.positions, positions)
    out = model(dyn.frame, positions, compute_forces=True)
    forces = out.forces.to(positions.dtype)
    velocities = state.velocities + (0.5 * dt) * (acceleration + forces * dyn.inverse_mass)
    if any_fresh:
        velocities = torch.where(state.fresh[:, None, None], state.velocities, velocities)
    return MDState(
        positions=positions,
        velocities=velocities,
        forces=forces,
        potential_energy=out.energies.to(positions.dtype),
        steps=state.steps + (~state.fresh).long() if any_fresh else state.steps + 1,
        fresh=torch.zeros_like(state.fresh) if any_fresh else state.fresh,
    )
