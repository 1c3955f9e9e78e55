"""Replay stored trajectories, frame by frame, from a run directory's spec, seed and thermal snapshots.

A trajectory's result depends only on its index, so integrating it alone (batch size 1) with the
engine reproduces the stored run bit for bit; nothing needs to be saved while a run goes. Frames are
recorded through the engine's observer hook (:data:`pyscatter.engine.runner.Observer`), one per fs
(every ``round(1 fs / dt)`` steps) plus the last integrated step.

During free flight (the molecule out of the model's range of every slab atom, integrated alone) a
frame holds the slab **as drawn** (the thermal snapshot's positions and velocities, not evolved) plus
the free molecule; its energy and forces are the snapshot's plus the molecule's, which is exact for the
non-interacting system except that the slab stands still. A molecule that leaves by free-flight exit is
not integrated to the scatter height: the last frame is where the engine stopped, and ``end_time_fs`` in
its ``info`` is the trajectory's end time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from pyscatter.analysis.stored import open_run, stored_energies
from pyscatter.engine.runner import run_dynamics
from pyscatter.initial.thermal import ThermalSnapshots
from pyscatter.models.base import ForceModel, Frame
from pyscatter.models.reference import ModelRef
from pyscatter.outcomes import Outcome, TrajectoryResult
from pyscatter.store import SNAPSHOT_FILE, StoreError, stored_slab_file
from pyscatter.workflows.execution import Job, build, electronic_friction

FRAME_INTERVAL_FS = 1.0
"""fs between recorded frames."""
TRAJECTORY_DIR = "trajectories"
"""Subdirectory of a run directory that ``pyscatter run --save-trajectories`` writes to."""


@dataclass
class Replay:
    """One trajectory integrated again: its result and its frames (ASE ``Atoms`` with velocities, energy and
    forces; ``info``: index, collision_energy (eV), time_fs, free_flight; the last frame also outcome and
    end_time_fs)."""

    collision_energy: float
    result: TrajectoryResult
    frames: list[Atoms]

    def write(self, path: str | Path) -> Path:
        """Write the frames as extended XYZ (``ase.io.read(path, ":")`` reads them back)."""
        from ase.io import write

        write(path, self.frames, format="extxyz")
        return Path(path)


def run_model(directory: str | Path, model: ModelRef | ForceModel | None = None, trust_model: bool = False) -> ModelRef:
    """The run's model, loaded (from its spec's model unless given as an object or a loaded :class:`ModelRef`) and
    checked against the identity it recorded."""
    with open_run(directory) as store:
        spec, identity = store.spec, store.provenance["model_identity"]
    if model is None:
        if spec.model.startswith(("ase:", "object:")):
            raise StoreError(f"{directory} was run with a Python model object ({spec.model}): replay it from Python "
                             "with pyscatter.workflows.replay.replay(..., model=...)")
        model = ModelRef(spec.model, trust=trust_model)
    elif not isinstance(model, ModelRef):
        model = ModelRef(spec.model, model=model, by_name=False)
    reference, loaded = model.load()
    if loaded.identity != identity:
        raise StoreError(f"{directory} was made with model identity {identity!r}, not {loaded.identity!r}")
    return reference


def replay(directory: str | Path, index: int, energy: float | None = None, model: ModelRef | ForceModel | None = None,
           trust_model: bool = False) -> Replay:
    """Integrate trajectory ``index`` at collision energy ``energy`` (eV; may be left out if the run has one)
    of the run in ``directory`` again, recording its frames. ``model``: the run's model object (needed for
    runs made with one; otherwise loaded from the spec)."""
    directory = Path(directory)
    with open_run(directory) as store:
        spec, energies = store.spec, store.collision_energies()
        if energy is None and len(energies) != 1:
            raise ValueError(f"{directory} has collision energies {energies} eV: choose one")
        energy = energies[0] if energy is None else stored_energies(store, [energy])[0]
    snapshot_path = directory / SNAPSHOT_FILE
    snapshots = ThermalSnapshots.load(snapshot_path)
    job = Job(spec, energy, snapshots.lattice_constant, str(snapshot_path.absolute()),
              run_model(directory, model, trust_model), batch_size=1, slab_file=stored_slab_file(directory))
    model, initial = build(job)
    recorder = _Recorder(model, initial, index, energy, max(1, round(FRAME_INTERVAL_FS / spec.dt)), spec.dt)
    finished: list[TrajectoryResult] = []
    run_dynamics(model, initial, [index], lambda results, calls: finished.extend(results), 1, spec.dt,
                 spec.termination, spec.free_flight, observer=recorder,
                 friction=electronic_friction(spec, snapshots.lattice_constant, job.slab_file))
    (result,) = finished
    return Replay(energy, result, recorder.frames(result))


class _Recorder:
    """The observer of one replayed trajectory: keeps one state per recorded step (later reports of a step win)."""

    def __init__(self, model: ForceModel, initial, index: int, collision_energy: float, every: int, dt: float):
        self.model, self.initial, self.index, self.energy, self.every, self.dt = model, initial, index, collision_energy, every, dt
        self.states: dict[int, tuple] = {}  # steps -> state, every ``every`` steps
        self.latest: tuple[int, tuple] | None = None
        self.slab: tuple | None = None

    def __call__(self, index, steps, positions, velocities, energy, forces, free) -> None:
        if free:
            positions, velocities, energy, forces = self._with_slab(positions, velocities, energy, forces)
        state = (positions.copy(), velocities.copy(), energy, forces.copy(), free)
        self.latest = (steps, state)
        if steps % self.every == 0:
            self.states[steps] = state

    def _with_slab(self, positions, velocities, energy, forces):
        """The drawn slab snapshot (energy and forces computed once) plus the free molecule."""
        initial, mol = self.initial, list(self.initial.molecule)
        if self.slab is None:
            slab_positions, slab_velocities = (x.copy() for x in initial.sample(self.index))
            slab_atoms = [i for i in range(initial.frame.n_atoms) if i not in mol]
            frame = Frame(initial.frame.numbers[slab_atoms], initial.frame.cell, initial.frame.pbc)
            out = self.model(frame, torch.as_tensor(slab_positions[None, slab_atoms]), compute_forces=True)
            slab_forces = np.zeros_like(slab_positions)
            slab_forces[slab_atoms] = out.forces[0].numpy()
            self.slab = (slab_positions, slab_velocities, float(out.energies[0]), slab_forces)
        p, v, e, f = (x.copy() if isinstance(x, np.ndarray) else x for x in self.slab)
        p[mol], v[mol], f[mol] = positions, velocities, forces
        return p, v, e + energy, f

    def frames(self, result: TrajectoryResult) -> list[Atoms]:
        """The recorded states (and the last integrated step) as ``Atoms``."""
        steps, state = self.latest
        self.states.setdefault(steps, state)
        frames = []
        for steps in sorted(self.states):
            positions, velocities, energy, forces, free = self.states[steps]
            atoms = self.initial.frame.atoms(positions)
            atoms.set_masses(self.initial.masses)
            atoms.set_velocities(velocities)
            atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
            atoms.info.update(index=self.index, collision_energy=self.energy, time_fs=steps * self.dt, free_flight=free)
            frames.append(atoms)
        frames[-1].info.update(outcome=result.outcome.label, end_time_fs=result.end_time)
        return frames


def trajectory_path(directory: str | Path, energy: float, index: int) -> Path:
    """``DIR/trajectories/E<energy>_<index>.extxyz``."""
    return Path(directory) / TRAJECTORY_DIR / f"E{energy:g}_{index}.extxyz"


def save_trajectories(directory: str | Path, n: int, outcome: str | None = None, energies: Sequence[float] | None = None,
                      model: ModelRef | ForceModel | None = None, trust_model: bool = False) -> list[Path]:
    """Replay and write (:func:`trajectory_path`) the first ``n`` stored trajectories (by index) of each energy
    whose outcome is ``outcome`` (any if None); returns the files. Raises StoreError if a replay does not end
    with the stored outcome and end time."""
    directory = Path(directory)
    wanted = None if outcome is None else Outcome[outcome.upper()]
    with open_run(directory) as store:
        chosen = {}
        for energy in stored_energies(store, energies):
            stored = [t for t in store.trajectories(store.condition_id(energy)) if wanted in (None, t.outcome)]
            chosen[energy] = stored[:n]
    model = run_model(directory, model, trust_model)
    written = []
    for energy, trajectories in chosen.items():
        for stored in trajectories:
            again = replay(directory, stored.index, energy, model)
            if (again.result.outcome, again.result.end_time) != (stored.outcome, stored.end_time):
                raise StoreError(f"trajectory {stored.index} at {energy:g} eV replays as {again.result.outcome.label} at "
                                 f"{again.result.end_time:g} fs, but was stored as {stored.outcome.label} at {stored.end_time:g} fs")
            path = trajectory_path(directory, energy, stored.index)
            path.parent.mkdir(exist_ok=True)
            written.append(again.write(path))
    return written
