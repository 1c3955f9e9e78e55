"""Stage 1, ``sample``: teacher trajectories through pyscatter's own engine, recorded every ``record_every_fs``.

One file ``frames/<condition>.npz`` per facet x surface temperature x state (v, J) x collision
energy, holding the teacher's energies (eV) and forces (eV/Å) of every recorded structure (Å).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from pyscatter.conditions import RunSpec, Termination
from pyscatter.initial.surface import build_slab
from pyscatter.models.base import ForceModel, Frame, ModelOutput
from pyscatter.surrogate.frames import save_npz, teacher_lattice_constant
from pyscatter.surrogate.settings import Progress, SurrogateSettings

class RecordingModel(ForceModel):
    """A :class:`ForceModel` that passes calls to ``model`` and keeps every ``every``-th call's structures and labels."""

    def __init__(self, model: ForceModel, every: int):
        self.model, self.every = model, int(every)
        for name in ("name", "species", "cutoff", "dtype", "identity"):
            setattr(self, name, getattr(model, name))
        self.calls = 0  # batch calls
        self.structures = 0  # structures evaluated
        self.positions: list[np.ndarray] = []
        self.energies: list[np.ndarray] = []
        self.forces: list[np.ndarray] = []

    def __call__(self, frame: Frame, positions: torch.Tensor, compute_forces: bool = True) -> ModelOutput:
        out = self.model(frame, positions, compute_forces)
        if compute_forces and self.calls % self.every == 0:
            self.positions.append(positions.detach().cpu().numpy().copy())
            self.energies.append(out.energies.detach().cpu().numpy().copy())
            self.forces.append(out.forces.detach().cpu().numpy().copy())
        self.calls += 1
        self.structures += positions.shape[0]
        return out

    def select(self, frame: Frame, keep: torch.Tensor) -> None:
        """The engine compacts its batch: the teacher's cached neighbour lists follow."""
        self.model.select(frame, keep)

    def frames(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Distinct recorded structures (idle slots repeat theirs): positions (M, N, 3), energies (M,), forces (M, N, 3)."""
        pos, e, f = (np.concatenate(a) for a in (self.positions, self.energies, self.forces))
        _, first = np.unique(pos.reshape(len(pos), -1), axis=0, return_index=True)
        keep = np.sort(first)
        return pos[keep], e[keep], f[keep]


def condition_name(facet: str, temperature: float, state: tuple[int, int], energy: float) -> str:
    return f"Cu{facet}_{temperature:g}K_v{state[0]}J{state[1]}_E{energy:g}"


def sample(directory: Path, teacher: ForceModel, settings: SurrogateSettings, progress: Progress) -> None:
    """Stage 1: record teacher trajectories of every condition (skips conditions already on disk)."""
    from pyscatter.initial.thermal import load_or_thermalise

    for sub in ("frames", "thermal"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    every = max(1, round(settings.record_every_fs / settings.dt))
    conditions = [(f, t, s, e) for f in settings.facets for t in settings.temperatures for s in settings.states for e in settings.collision_energies]
    for k, (facet, temperature, state, energy) in enumerate(conditions, 1):
        name = condition_name(facet, temperature, state, energy)
        path = directory / "frames" / f"{name}.npz"
        if path.exists():
            continue
        spec = RunSpec(
            surface=facet, temperature=temperature, v=state[0], J=state[1], seed=settings.seed, dt=settings.dt,
            n_snapshots=settings.n_snapshots, free_flight=False,
            termination=Termination(max_time=settings.max_time, initial_height=settings.initial_height),
        )
        slab = build_slab(facet, teacher_lattice_constant(directory, teacher, temperature))
        snapshots = load_or_thermalise(
            directory / "thermal" / f"Cu{facet}_{temperature:g}K.npz", teacher, slab, temperature, settings.n_snapshots,
            settings.seed, equilibration_fs=settings.equilibration_fs,
        )
        started = time.perf_counter()
        frame, (positions, energies, forces), structures = record(
            teacher, spec, energy, slab, snapshots, range(settings.trajectories), every, settings.batch_size)
        save_npz(path, positions=positions, energies=energies, forces=forces, numbers=frame.numbers,
              cell=frame.cell, top_height=slab.top_layer_height, facet=facet)
        progress(f"sample {k}/{len(conditions)} {name}: {len(positions)} frames, {structures} teacher structure evaluations, {time.perf_counter() - started:.0f} s")


def record(model: ForceModel, spec: RunSpec, energy: float, slab, snapshots, indices, every: int, batch_size: int):
    """Trajectories ``indices`` of ``spec`` at collision ``energy`` (eV) on ``model``, every ``every``-th force call
    recorded: (frame, (positions (M, N, 3) Å, energies (M,) eV, forces (M, N, 3) eV/Å), structures evaluated)."""
    from pyscatter.engine.runner import run_dynamics
    from pyscatter.initial.sampler import build_initial_conditions, quantised_molecule

    initial = build_initial_conditions(spec, energy, slab, snapshots, quantised_molecule(spec, model))
    recorder = RecordingModel(model, every)
    run_dynamics(recorder, initial, indices, lambda results, calls: None, batch_size, dt=spec.dt, termination=spec.termination)
    return initial.frame, recorder.frames(), recorder.structures

