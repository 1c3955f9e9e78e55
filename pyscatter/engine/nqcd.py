"""The NQCDynamics.jl engine: the trajectories of :func:`~pyscatter.engine.runner.run_dynamics`,
integrated in Julia (``julia/PyScatterNQCD``) through juliacall.

pyscatter still draws every initial condition (thermal slab + EBK molecule) and analyses
every scattered molecule (v', J'); Julia receives positions, velocities, masses, cell and fixed
atoms, runs ``Simulation{Classical}`` with velocity Verlet at the same dt, stops each
trajectory with terminating callbacks for the three outcomes and runs the trajectories of a
chunk as a SciML ensemble. Forces come either from any pyscatter :class:`ForceModel`, called
back once per step (:func:`atomic_units_model`), or, for :class:`JuliaACEModel`, from
ACEpotentials.jl inside Julia with no Python crossing per step.

Units: pyscatter's ASE units (Å, eV, amu, Å per ASE time unit, fs) meet Hartree atomic units
(bohr, hartree, electron mass, atomic time) here and in :mod:`pyscatter.models.julia`, through the
``AU_X`` constants of :mod:`pyscatter.models.julia_session`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import islice

import numpy as np
import torch

from pyscatter.conditions import Termination
from pyscatter.engine.batch import InitialConditions, OnFinished
from pyscatter.models.base import ForceModel, Frame
from pyscatter.models.julia import JuliaACEModel
from pyscatter.models.julia_session import AU_ENERGY, AU_FORCE, AU_LENGTH, AU_MASS, AU_TIME_FS, AU_VELOCITY, julia
from pyscatter.outcomes import Outcome, TrajectoryResult

# ---------------------------------------------------------------------------------------------
# Marshalling (pure numpy; Julia stores (3, N, T) column-major, pyscatter (T, N, 3) row-major)


def to_julia_layout(values: np.ndarray, unit: float) -> np.ndarray:
    """(T, N, 3) pyscatter array in pyscatter units -> (3, N, T) Fortran-ordered in atomic units ``unit``."""
    return np.asfortranarray(np.transpose(np.asarray(values, dtype=np.float64), (2, 1, 0)) / unit)


def from_julia_layout(values, unit: float) -> np.ndarray:
    """(3, N, T) array in atomic units -> (T, N, 3) C-ordered in pyscatter units."""
    return np.ascontiguousarray(np.transpose(np.asarray(values, dtype=np.float64), (2, 1, 0)) * unit)


def julia_starts(positions: np.ndarray, velocities: np.ndarray, mobile: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts (T, N, 3) in Å and ASE velocity units -> (r0, v0) (3, N, T) in bohr and bohr per atomic time.

    Fixed atoms get zero velocity, as in the native engine.
    """
    return to_julia_layout(positions, AU_LENGTH), to_julia_layout(np.asarray(velocities) * np.asarray(mobile)[:, None], AU_VELOCITY)


@dataclass(frozen=True)
class JuliaSystem:
    """What Julia needs besides the starts, in atomic units, indices 1-based.

    numbers: (N,).  masses: (N,) electron masses.  fixed: fixed atoms.  criteria: keyword
    arguments of ``PyScatterNQCD.Criteria`` (cell columns are cell vectors, bohr; distances
    bohr; dt atomic time).
    """

    numbers: np.ndarray
    masses: np.ndarray
    fixed: np.ndarray
    criteria: dict


def julia_system(initial: InitialConditions, dt: float, termination: Termination) -> JuliaSystem:
    """The system and stopping criteria of ``initial`` (time step ``dt`` fs, ``termination``) for Julia."""
    masses = np.asarray(initial.masses, dtype=np.float64) / AU_MASS
    molecule = np.asarray(initial.molecule, dtype=np.int64)
    return JuliaSystem(
        numbers=np.asarray(initial.frame.numbers, dtype=np.int64),
        masses=masses,
        fixed=np.flatnonzero(~np.asarray(initial.mobile, dtype=bool)) + 1,
        criteria=dict(
            molecule=molecule + 1,
            top_layer=np.asarray(initial.top_layer, dtype=np.int64) + 1,
            cell=np.asfortranarray(initial.frame.cell.T / AU_LENGTH),
            periodic=np.asarray(initial.frame.pbc, dtype=bool),
            molecule_masses=masses[molecule],
            dissociation_distance=termination.dissociation_distance / AU_LENGTH,
            scatter_height=termination.scatter_height / AU_LENGTH,
            max_steps=termination.max_steps(dt),
            dt=dt / AU_TIME_FS,
        ),
    )


def julia_results(raw, indices: list[int], initial: InitialConditions, dt: float,
                  termination: Termination) -> tuple[list[TrajectoryResult], int]:
    """Convert ``PyScatterNQCD.run_ensemble``'s output (attributes outcome, steps, positions,
    velocities, energy_drift, max_energy_error, evaluations; atomic units) for trajectories
    ``indices`` into results and the number of force evaluations spent. A trajectory whose energy
    error exceeded ``termination.max_energy_error`` (or is not finite) is FAILED, as in the native engine.
    """
    positions = from_julia_layout(raw.positions, AU_LENGTH)
    velocities = from_julia_layout(raw.velocities, AU_VELOCITY)
    drift = np.asarray(raw.energy_drift, dtype=np.float64) * AU_ENERGY
    max_error = np.asarray(raw.max_energy_error, dtype=np.float64) * AU_ENERGY
    mol = list(initial.molecule)
    results = []
    for k, (index, code, steps) in enumerate(zip(indices, np.asarray(raw.outcome), np.asarray(raw.steps))):
        outcome = Outcome(int(code))
        if not max_error[k] <= termination.max_energy_error:
            outcome = Outcome.FAILED
        final = initial.final_state(positions[k, mol], velocities[k, mol]) if outcome is Outcome.SCATTERED else {}
        if outcome is Outcome.FAILED:
            final = {"failure": f"total-energy error {max_error[k]:.4g} eV above the bound of "
                                f"{termination.max_energy_error:g} eV"}
        results.append(TrajectoryResult(
            index=int(index), outcome=outcome, end_time=int(steps) * dt,
            energy_drift=float(drift[k]), max_energy_error=float(max_error[k]), **final,
        ))
    return results, int(np.sum(np.asarray(raw.evaluations)))


# ---------------------------------------------------------------------------------------------
# Force models


def atomic_units_model(model: ForceModel, frame: Frame) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    """``model`` as the function Julia calls every step: positions (3, N) bohr ->
    (energy hartree, dV/dR (N, 3) hartree/bohr, C-ordered, i.e. Julia's (3, N)).
    """

    def evaluate(positions_bohr) -> tuple[float, np.ndarray]:
        r = np.asarray(positions_bohr, dtype=np.float64).T * AU_LENGTH
        out = model(frame, torch.from_numpy(np.ascontiguousarray(r))[None], compute_forces=True)
        derivative = -out.forces[0].detach().cpu().numpy().astype(np.float64) / AU_FORCE
        return float(out.energies[0]) / AU_ENERGY, np.ascontiguousarray(derivative)

    return evaluate


# ---------------------------------------------------------------------------------------------
# Engine

def run_dynamics_nqcd(model: ForceModel, initial: InitialConditions, indices: Iterable[int], on_finished: OnFinished,
                      batch_size: int, dt: float = 0.1, termination: Termination = Termination()) -> None:
    """:func:`~pyscatter.engine.runner.run_dynamics` in NQCDynamics.jl (time step ``dt`` fs), without free flight.

    Trajectories go to Julia ``batch_size`` at a time as one ensemble (threaded for
    :class:`JuliaACEModel`, serial for Python force models); ``on_finished(results, force_calls)``
    follows every chunk. Each trajectory starts from ``initial.sample(index)``, so results
    depend only on the index.
    """
    pending = iter(indices)
    chunk = list(islice(pending, batch_size))
    if not chunk:
        return
    jl = julia()
    system = julia_system(initial, dt, termination)
    criteria = jl.Criteria(**system.criteria)
    evaluator = model.evaluator(initial.frame) if isinstance(model, JuliaACEModel) else jl.PythonEvaluator(atomic_units_model(model, initial.frame))
    while chunk:
        starts = [initial.sample(i) for i in chunk]
        r0, v0 = julia_starts(np.stack([s[0] for s in starts]), np.stack([s[1] for s in starts]), initial.mobile)
        raw = jl.run_ensemble(evaluator, system.numbers, system.masses, system.fixed, criteria, r0, v0)
        on_finished(*julia_results(raw, chunk, initial, dt, termination))
        chunk = list(islice(pending, batch_size))
