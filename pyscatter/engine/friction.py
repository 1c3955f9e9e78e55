"""Molecular dynamics with electronic friction (MDEF) as pure functions of (state, model) -> state: the molecule's
atoms feel -η(r) v and a random force at the electronic temperature T_el (fluctuation-dissipation: variance
2 η k_B T_el per unit time), η from the LDFA (:class:`~pyscatter.models.friction.LDFA`).

Splitting O B A B O (Leimkuhler & Matthews 2013): half a time step of the Ornstein-Uhlenbeck process dv = -(η/m) v dt
+ sqrt(2 η k_B T_el)/m dW, solved exactly for η frozen at the current positions (exact for constant η), one
velocity-Verlet step (:func:`pyscatter.engine.verlet.step`, unchanged), and half an O step with η at the new positions.
With η = 0 an O step is the identity bitwise (c₁ = 1, c₂ = 0), so the step is velocity Verlet's bitwise.

The energy the nuclei give to the electrons is the kinetic energy the O steps remove (friction minus random force);
with it added back, the total energy is conserved up to the Verlet error. Units as in :mod:`~pyscatter.engine.verlet`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from ase import units

from pyscatter.engine import verlet
from pyscatter.models.base import ForceModel
from pyscatter.models.friction import LDFA

NOISE_SHAPE = (2, 2, 3)
"""Standard normal variates per system per step: (O step before, after) x (the molecule's atoms) x (x, y, z)."""


@dataclass(frozen=True)
class FrictionAtoms:
    """LDFA friction on the molecule's ``atoms`` (2,) of a batch whose slab atoms are ``slab`` (M,); ``masses`` (2,)
    amu; ``streams(index)``: trajectory ``index``'s noise stream; ``kT``: k_B T_el, eV."""

    ldfa: LDFA
    atoms: torch.Tensor
    slab: torch.Tensor
    masses: torch.Tensor
    streams: Callable[[int], np.random.Generator]

    @property
    def kT(self) -> float:
        return units.kB * self.ldfa.temperature

    def coefficients(self, positions: torch.Tensor) -> torch.Tensor:
        """η (B, 2), amu per ASE time unit, of the molecule's atoms of systems at ``positions`` (B, N, 3) Å."""
        return self.ldfa.coefficients(positions[:, self.atoms], positions[:, self.slab])


def ornstein_uhlenbeck(velocities: torch.Tensor, eta: torch.Tensor, masses: torch.Tensor, kT: float, dt: float,
                       noise: torch.Tensor) -> torch.Tensor:
    """Velocities (B, K, 3) after time ``dt`` (ASE units) of the exact OU process with friction ``eta`` (B, K) on atoms
    of ``masses`` (K,) amu at k_B T = ``kT`` eV; ``noise`` (B, K, 3) standard normal: v c₁ + sqrt(kT/m (1 - c₁²)) ξ,
    c₁ = exp(-η dt / m)."""
    c1 = torch.exp(-eta * dt / masses)
    c2 = torch.sqrt(kT / masses * (1.0 - c1 * c1))
    return velocities * c1[..., None] + c2[..., None] * noise


def _thermostat(state: verlet.MDState, eta: torch.Tensor, friction: FrictionAtoms, dt: float, noise: torch.Tensor,
                moving: torch.Tensor) -> tuple[verlet.MDState, torch.Tensor]:
    """Half an O step on the friction atoms of the ``moving`` systems (B,); the state and the kinetic energy (B,) eV
    the step removed."""
    before = state.velocities[:, friction.atoms]
    after = torch.where(moving[:, None, None], ornstein_uhlenbeck(before, eta, friction.masses, friction.kT, dt, noise),
                        before)
    velocities = state.velocities.clone()
    velocities[:, friction.atoms] = after
    removed = 0.5 * (friction.masses[:, None] * (before.square() - after.square())).sum((-2, -1))
    return replace(state, velocities=velocities), removed


def step(state: verlet.MDState, eta: torch.Tensor, model: ForceModel, dyn: verlet.Dynamics, friction: FrictionAtoms,
         noise: torch.Tensor) -> tuple[verlet.MDState, torch.Tensor, torch.Tensor]:
    """One O B A B O step of every system: the new state, η (B, 2) at its positions and the energy (B,) eV given to
    the electrons in it. ``eta``: η at the current positions (ignored for fresh systems, which only get forces and
    η); ``noise`` (B, *:data:`NOISE_SHAPE`) standard normal variates of each system's own stream."""
    moving = ~state.fresh
    half = 0.5 * dyn.dt
    state, first = _thermostat(state, eta, friction, half, noise[:, 0], moving)
    state = verlet.step(state, model, dyn)
    eta = friction.coefficients(state.positions)
    state, second = _thermostat(state, eta, friction, half, noise[:, 1], moving)
    return state, eta, first + second
