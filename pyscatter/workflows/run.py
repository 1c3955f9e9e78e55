"""The pipeline in one place: conditions -> initial conditions -> engine -> outcomes -> store -> tally.

:func:`run` is what ``pyscatter run`` calls: it validates everything before touching the run
directory, prepares (or reuses) the thermal slab snapshots, runs the missing trajectories of
each collision energy through the execution seam, and returns one summary per energy.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import pyscatter
from pyscatter.analysis.tally import Tally
from pyscatter.conditions import RunSpec, check_collision_energy, check_trajectories
from pyscatter.workflows.execution import Job, execute
from pyscatter.initial.molecule import DiatomicLevel, DiatomicPotential
from pyscatter.initial.sampler import build_initial_conditions, quantised_molecule
from pyscatter.initial.surface import Slab, build_slab, lattice_constant
from pyscatter.initial.thermal import ThermalSnapshots, load_or_thermalise
from pyscatter.models import load_model
from pyscatter.models.base import ForceModel, check_species
from pyscatter.outcomes import TrajectoryResult
from pyscatter.store import RunStore

SNAPSHOT_FILE = "thermal_snapshots.npz"


def default_out_dir(spec: RunSpec) -> Path:
    model = Path(spec.model).stem if spec.model != "emt" else "emt"
    return Path("runs") / f"{spec.molecule}_v{spec.v}J{spec.J}_Cu{spec.surface}_{spec.temperature:g}K_{model}_seed{spec.seed}"


def default_batch_size(model: ForceModel) -> int:
    """Slots per process: large for vectorised models, a model's own preference otherwise."""
    return int(getattr(model, "default_batch_size", 1))


@dataclass(frozen=True)
class Prepared:
    """What every condition of a run shares: model, lattice constant at T (Å), slab, snapshots, molecule."""

    model: ForceModel
    lattice_constant: float
    slab: Slab
    snapshots: ThermalSnapshots
    molecule: tuple[DiatomicPotential, DiatomicLevel]


@functools.lru_cache(maxsize=2)
def _worker_model(model: str) -> ForceModel:
    """A worker process loads each model once, not once per chunk or condition."""
    return load_model(model)


@functools.lru_cache(maxsize=4)
def _build_worker(spec: RunSpec, collision_energy: float, lattice_constant_at_T: float, snapshot_path: str):
    """Rebuild model and initial conditions inside a worker process from what the writer prepared (cached per process)."""
    model = _worker_model(spec.model)
    slab = build_slab(spec.surface, lattice_constant_at_T)
    snapshots = ThermalSnapshots.load(snapshot_path)
    return model, build_initial_conditions(spec, collision_energy, slab, snapshots, quantised_molecule(spec, model))


def provenance(spec: RunSpec, model: ForceModel) -> dict:
    return {
        "pyscatter_version": pyscatter.__version__,
        "model_name": model.name,
        "model_identity": model.identity,
        "torch_version": torch.__version__,
        "seed": spec.seed,
    }


Progress = Callable[[float, int, int, Tally], None]


def run(
    spec: RunSpec,
    collision_energies: Sequence[float],
    n_trajectories: int,
    out_dir: str | Path | None = None,
    batch_size: int | None = None,
    workers: int = 1,
    threads: int = 1,
    on_progress: Progress | None = None,
    on_thermalisation: Callable[[int, int], None] | None = None,
    model: ForceModel | None = None,
    executor: Executor | None = None,
    engine: str = "native",
) -> list[dict]:
    """Run or resume every collision energy (eV) to ``n_trajectories`` trajectories; one summary dict each.

    ``threads``: torch threads per process, this one included (1 by default: on small CPU batches
    torch's intra-op threads cost more than they give; use processes instead).
    ``engine``: "native" (batched velocity Verlet) or "nqcd" (NQCDynamics.jl through juliacall; one worker).
    ``on_progress(collision_energy, done, total, tally)`` is called after every commit and
    ``on_thermalisation(steps_done, steps_total)`` while the slab snapshots are made. ``executor``
    (e.g. :class:`~pyscatter.execution.DaskExecutor`) runs the trajectories instead of ``workers`` processes.
    """
    energies = [check_collision_energy(e) for e in collision_energies]
    n_trajectories = check_trajectories(n_trajectories)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if engine not in ("native", "nqcd"):
        raise ValueError(f"unknown engine {engine!r}: choose native or nqcd")
    if engine == "nqcd":
        _check_julia(workers, executor)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _run(spec, energies, n_trajectories, out_dir, batch_size, workers, threads, on_progress, on_thermalisation, model,
                    executor, engine)
    finally:
        torch.set_num_threads(previous_threads)


def _check_julia(workers: int, executor: Executor | None) -> None:
    """Refuse the nqcd engine before anything is written if it cannot run here."""
    if workers > 1 or executor is not None:
        raise ValueError("the nqcd engine runs in this process: use --workers 1 and no Dask")
    from pyscatter.engine.nqcd import JuliaUnavailable, julia

    try:
        julia()
    except JuliaUnavailable as err:
        raise ValueError(" ".join(str(err).split())) from None


def _run(spec, energies, n_trajectories, out_dir, batch_size, workers, threads, on_progress, on_thermalisation, model,
         executor, engine):
    model = model or load_model(spec.model)
    check_species(model, np.array([1, 29]))
    molecule = quantised_molecule(spec, model)
    a = spec.lattice_constant if spec.lattice_constant is not None else lattice_constant(model, spec.temperature)
    directory = Path(out_dir) if out_dir is not None else default_out_dir(spec)
    with RunStore(directory, spec, provenance(spec, model)) as store:
        slab = build_slab(spec.surface, a)
        snapshots = load_or_thermalise(
            directory / SNAPSHOT_FILE, model, slab, spec.temperature, spec.n_snapshots, spec.seed,
            progress=on_thermalisation,
        )
        prepared = Prepared(model, a, slab, snapshots, molecule)
        slots = batch_size or default_batch_size(model)
        summaries = []
        for energy in energies:
            cid = store.condition_id(energy)
            missing = sorted(set(range(n_trajectories)) - store.done_indices(cid))
            if missing:
                _run_condition(store, cid, spec, energy, prepared, directory, missing, slots, workers, threads,
                               executor, engine, n_trajectories, on_progress)
            tally = Tally(store.counts(cid, limit=n_trajectories))
            summaries.append(summary(spec, energy, tally, store.provenance))
        return summaries


def _run_condition(store, cid, spec, energy, prepared, directory, missing, slots, workers, threads, executor, engine,
                   total, on_progress):
    if workers > 1 or executor is not None:
        snapshots = str((directory / SNAPSHOT_FILE).absolute())  # workers may start in another directory
        build = functools.partial(_build_worker, spec, energy, prepared.lattice_constant, snapshots)
    else:
        initial = build_initial_conditions(spec, energy, prepared.slab, prepared.snapshots, prepared.molecule)
        build = lambda: (prepared.model, initial)  # noqa: E731 - in-process only, never pickled
    job = Job(
        build=build,
        batch_size=slots,
        threads=threads,
        dynamics=dict(
            dt=spec.dt, max_time=spec.max_time,
            dissociation_distance=spec.dissociation_distance, scatter_height=spec.scatter_height,
        ),
    )
    last = time.perf_counter()

    def commit(results: list[TrajectoryResult], force_calls: int) -> None:
        nonlocal last
        now = time.perf_counter()
        store.add(cid, results, force_calls, now - last)
        last = now
        if on_progress is not None:
            counts = store.counts(cid, limit=total)
            on_progress(energy, counts.n_trajectories, total, Tally(counts))

    if engine == "nqcd":
        from pyscatter.engine.nqcd import run_dynamics_nqcd

        run_dynamics_nqcd(*job.build(), missing, commit, job.batch_size, **job.dynamics)
        return
    execute(job, missing, workers, commit, executor)


def summary(spec: RunSpec, collision_energy: float, tally: Tally, provenance: dict) -> dict:
    """The JSON record of one condition."""
    return {
        "surface": spec.surface,
        "T": spec.temperature,
        "v": spec.v,
        "J": spec.J,
        "molecule": spec.molecule,
        "collision_energy": collision_energy,
        **tally.as_dict(),
        "model": spec.model,
        "model_identity": provenance["model_identity"],
        "seed": spec.seed,
    }


