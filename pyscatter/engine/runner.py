"""Continuous batching: integrate many trajectories, refilling each finished slot at once.

:func:`run_dynamics` pulls trajectory indices from an iterator, draws each one's initial condition from
its own random stream, integrates all slots with one batched force call per step, stops each by the
:mod:`~pyscatter.engine.termination` criteria and hands finished trajectories to a callback. When slots
finish with nothing left to refill them, the batch is compacted (the model's neighbour lists follow
through ``model.select``). A trajectory's result depends only on its index, never on its slot or batch.
With ``free_flight`` the molecule approaches and leaves alone while out of the model's range of the slab
(:mod:`~pyscatter.engine.free_flight`).

A trajectory whose energy, forces or positions become non-finite, or whose total energy strays more than
``termination.max_energy_error`` from its start, ends as FAILED with its reason; the run goes on.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from ase.units import fs

from pyscatter.conditions import Termination
from pyscatter.engine import verlet
from pyscatter.engine.batch import Batch, Draws, InitialConditions, Observer, OnFinished, slab_atoms
from pyscatter.engine.friction import FrictionAtoms
from pyscatter.engine.free_flight import Approach, Contact, exits
from pyscatter.engine.termination import StoppingCriteria, classify
from pyscatter.models.base import ForceModel
from pyscatter.models.friction import LDFA
from pyscatter.outcomes import Outcome, TrajectoryResult


def run_dynamics(
    model: ForceModel,
    initial: InitialConditions,
    indices: Iterable[int],
    on_finished: OnFinished,
    batch_size: int,
    dt: float = 0.1,
    termination: Termination = Termination(),
    free_flight: bool = False,
    observer: Observer | None = None,
    friction: LDFA | None = None,
) -> None:
    """Integrate every trajectory in ``indices`` (time step ``dt`` in fs) to its outcome.

    ``on_finished(results, force_calls)`` is called after each step in which trajectories finished, with
    the slab+molecule structures evaluated since its previous call. ``observer`` (:data:`Observer`) sees
    every step of every trajectory, e.g. to record one (run it alone: results do not depend on the batch).
    ``friction``: electronic friction on the molecule's atoms (:mod:`~pyscatter.engine.friction`), each trajectory's
    random force from ``initial.noise(index)``. The molecule is free while none of its atoms is within the model's
    cutoff or the density's (``friction.density.cutoff``: beyond it η = 0) of a slab atom.
    """
    crit = StoppingCriteria.of(initial, termination, dt)
    masses = torch.as_tensor(initial.masses, dtype=torch.float64)
    dyn = verlet.Dynamics(initial.frame, masses, torch.as_tensor(initial.mobile, dtype=torch.bool), dt * fs)
    contact = Contact(model.cutoff if friction is None else max(model.cutoff, friction.density.cutoff), crit)
    draws = Draws(initial, iter(indices))
    source = Approach(model, initial, draws, batch_size, dt, termination, contact, observer) if free_flight else draws
    molecule = torch.tensor(initial.molecule)
    atoms = None if friction is None else FrictionAtoms(friction, molecule, torch.as_tensor(slab_atoms(initial)),
                                                        masses[molecule], initial.noise)
    batch = Batch(model, dyn, termination, observer, friction=atoms)
    first = source.take(batch_size)
    if source.finished:
        on_finished(source.finished, 0)
        source.finished = []
    if not first:
        return
    batch.place(None, first)
    force_calls = 0
    while batch.size:
        force_calls += batch.size
        failed = batch.step()
        s = batch.state
        outcome, height, vz = classify(s.positions, s.velocities, s.steps, crit)
        outcome = torch.where(failed, int(Outcome.FAILED), outcome)
        leaving = exits(s, outcome == int(Outcome.RUNNING), height, vz, initial, contact, dt) if free_flight else {}
        done = (outcome != int(Outcome.RUNNING)).clone()
        for slot in leaving:
            done[slot] = True
        if not done.any():
            continue
        results = source.finished
        source.finished = []
        finished = torch.nonzero(done).flatten().tolist()
        results += [_result(batch, slot, Outcome(int(outcome[slot])), leaving.get(slot), initial, crit.max_steps, dt)
                    for slot in finished]
        refills = source.take(len(finished))
        results += source.finished
        source.finished = []
        if refills:
            batch.place(finished[:len(refills)], refills)
        on_finished(results, force_calls)
        force_calls = 0
        if len(refills) < len(finished):
            keep = torch.tensor(sorted(set(range(batch.size)) - set(finished[len(refills):])), dtype=torch.long)
            batch.keep(keep)


def _result(batch: Batch, slot: int, code: Outcome, exit_steps: int | None, initial: InitialConditions,
            max_steps: int, dt: float) -> TrajectoryResult:
    """The result of the finished system in ``slot``: classified ``code``, or with ``exit_steps`` a free-flight exit
    that far (steps of ``dt`` fs) from the scatter height (trapped if it would end after ``max_steps``)."""
    s, mol = batch.state, list(initial.molecule)
    if code is Outcome.FAILED:
        return batch.result(slot, code, dt, failure=batch.failure(slot))
    if exit_steps is not None:
        end = int(s.steps[slot]) + max(exit_steps, 1)
        if end > max_steps:
            return batch.result(slot, Outcome.TRAPPED, dt, steps=max_steps)
        final = initial.final_state(s.positions[slot, mol].numpy(), s.velocities[slot, mol].numpy())
        return batch.result(slot, Outcome.SCATTERED, dt, steps=end, **final)
    if code is Outcome.SCATTERED:
        final = initial.final_state(s.positions[slot, mol].numpy(), s.velocities[slot, mol].numpy())
        return batch.result(slot, code, dt, **final)
    return batch.result(slot, code, dt)
