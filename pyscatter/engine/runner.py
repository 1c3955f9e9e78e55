"""Continuous batching: integrate many trajectories, refilling each finished slot at once.

``run_dynamics`` pulls trajectory indices from an iterator, draws each one's initial condition
from its own random stream, integrates all slots with one batched force call per step, stops
each by the :mod:`~pyscatter.engine.termination` criteria and hands finished trajectories to a
callback. A trajectory's result depends only on its index, never on which slot or batch it ran in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Protocol

import numpy as np
import torch
from ase.units import fs

from pyscatter.engine import verlet
from pyscatter.engine.termination import StoppingCriteria, classify
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

    def final_state(self, positions: np.ndarray, velocities: np.ndarray) -> dict[str, float]:
        """v_final, J_final, translational_energy, internal_energy of a free molecule (2, 3) arrays."""
        ...


OnFinished = Callable[[list[TrajectoryResult], int], None]


def run_dynamics(
    model: ForceModel,
    initial: InitialConditions,
    indices: Iterable[int],
    on_finished: OnFinished,
    batch_size: int,
    dt: float = 0.1,
    max_time: float = 3000.0,
    dissociation_distance: float = 2.25,
    scatter_height: float = 7.1,
) -> None:
    """Integrate every trajectory in ``indices`` (dt, max_time in fs; distances in Å).

    ``on_finished(results, force_calls)`` is called after each step in which trajectories
    finished, with the structure force evaluations spent since its previous call.
    """
    pending = iter(indices)
    dtype = torch.float64
    masses = torch.as_tensor(initial.masses, dtype=dtype)
    dyn = verlet.Dynamics(initial.frame, masses, torch.as_tensor(initial.mobile, dtype=torch.bool), dt * fs)
    crit = StoppingCriteria(
        molecule=initial.molecule,
        top_layer=torch.as_tensor(initial.top_layer, dtype=torch.long),
        cell=torch.as_tensor(initial.frame.cell, dtype=dtype),
        pbc=initial.frame.pbc,
        masses=masses,
        dissociation_distance=dissociation_distance,
        scatter_height=scatter_height,
        max_steps=int(round(max_time / dt)),
    )

    first = [i for i in (_next(pending) for _ in range(batch_size)) if i is not None]
    if not first:
        return
    batch_size = len(first)
    slot_index = torch.tensor(first, dtype=torch.long)
    starts = [initial.sample(i) for i in first]
    state = verlet.init(
        torch.as_tensor(np.stack([s[0] for s in starts]), dtype=dtype),
        torch.as_tensor(np.stack([s[1] for s in starts]), dtype=dtype),
        dyn,
    )
    initial_energy = torch.zeros(batch_size, dtype=dtype)
    max_error = torch.zeros(batch_size, dtype=dtype)
    force_calls = 0
    while (slot_index >= 0).any():
        active = slot_index >= 0
        state = replace(state, fresh=state.fresh | ~active)  # finished slots with nothing to refill stay put
        was_fresh = state.fresh
        state = verlet.step(state, model, dyn)
        force_calls += int(active.sum())
        total = verlet.kinetic_energy(state.velocities, masses) + state.potential_energy
        initial_energy = torch.where(was_fresh, total, initial_energy)
        max_error = torch.maximum(max_error, (total - initial_energy).abs())
        outcome = classify(state.positions, state.velocities, state.steps, crit)
        done = (outcome != int(Outcome.RUNNING)) & active
        if not done.any():
            continue
        results = []
        refill_slots, refill_pos, refill_vel = [], [], []
        for slot in torch.nonzero(done).flatten().tolist():
            results.append(_result(state, slot, int(slot_index[slot]), Outcome(int(outcome[slot])), total, initial_energy, max_error, initial, dt))
            nxt = _next(pending)
            if nxt is None:
                slot_index[slot] = -1
                continue
            slot_index[slot] = nxt
            pos, vel = initial.sample(nxt)
            refill_slots.append(slot)
            refill_pos.append(pos)
            refill_vel.append(vel)
        if refill_slots:
            state = verlet.place(
                state, torch.tensor(refill_slots),
                torch.as_tensor(np.stack(refill_pos), dtype=dtype), torch.as_tensor(np.stack(refill_vel), dtype=dtype), dyn,
            )
            max_error[refill_slots] = 0.0
        on_finished(results, force_calls)
        force_calls = 0
        alive = slot_index >= 0
        if 0 < int(alive.sum()) <= len(slot_index) // 2:  # no work left to refill with: halve the batch
            keep = torch.nonzero(alive).flatten()
            state = verlet.select(state, keep)
            slot_index, initial_energy, max_error = slot_index[keep], initial_energy[keep], max_error[keep]


def _next(iterator) -> int | None:
    return next(iterator, None)


def _result(state, slot, index, outcome, total, initial_energy, max_error, initial: InitialConditions, dt) -> TrajectoryResult:
    final = {}
    if outcome is Outcome.SCATTERED:
        mol = list(initial.molecule)
        final = initial.final_state(state.positions[slot, mol].numpy(), state.velocities[slot, mol].numpy())
    return TrajectoryResult(
        index=index,
        outcome=outcome,
        end_time=float(state.steps[slot]) * dt,
        energy_drift=float(total[slot] - initial_energy[slot]),
        max_energy_error=float(max_error[slot]),
        **final,
    )
