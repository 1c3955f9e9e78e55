"""The execution seam: trajectory indices go out to workers, finished trajectories stream back.

One writer (the caller) receives every result through ``on_finished``; workers never touch the store.
A :class:`Job` says everything a worker needs to rebuild the model and the initial conditions of one
condition by itself. ``workers=1`` runs in this process. ``workers=N`` starts N spawned processes that
pull indices one at a time from a shared queue (no chunk tails) and stream each step's finished
trajectories back, so progress advances per trajectory; the writer ends them within a second when it
is interrupted. An executor (e.g. a :class:`~pyscatter.workflows.dask.DaskExecutor`: a running scheduler,
a ``LocalCluster`` or a dask-jobqueue cluster) runs chunks of indices as tasks through :func:`run_chunk`; a
chunk lost with its worker is simply computed again and the store's key (condition, index) rules out
double counting.
Every trajectory's result depends only on its index, so all of these give bit-identical results.
"""

from __future__ import annotations

import functools
import itertools
import math
import multiprocessing as mp
import os
import pickle
import queue
import signal
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass, replace

import torch

from pyscatter.conditions import RunSpec
from pyscatter.engine.batch import OnFinished
from pyscatter.engine.engines import engine_named
from pyscatter.models.base import ForceModel
from pyscatter.models.reference import ModelRef
from pyscatter.outcomes import TrajectoryResult

CHUNK_BATCHES = 2  # a Dask chunk fills a batch at most this many times over (fewer batch drains per trajectory)
TASKS_PER_WORKER = 2  # ... and is small enough that every Dask worker gets at least this many chunks


@dataclass(frozen=True)
class Job:
    """One condition as a worker rebuilds it.

    spec: the run.  collision_energy: eV.  lattice_constant: Cu lattice constant at the surface
    temperature, Å.  snapshot_path: the run's thermal snapshots (.npz).  model: the run's model
    (:class:`~pyscatter.models.reference.ModelRef`: loaded by name in a worker, or sent to it pickled) with the
    identity the run records; a worker whose model differs refuses.  batch_size: systems integrated
    together per process.  threads: torch threads per local worker process.  engine: an engine's name
    (:data:`~pyscatter.engine.engines.ENGINES`).
    """

    spec: RunSpec
    collision_energy: float
    lattice_constant: float
    snapshot_path: str
    model: ModelRef
    batch_size: int
    threads: int = 1
    engine: str = "native"


class WorkerError(RuntimeError):
    """A worker process failed; the message is one line."""


@functools.lru_cache(maxsize=2)
def _load(model: ModelRef) -> ForceModel:
    """A worker process loads each model once, not once per chunk or condition."""
    return model.load()[1]


@functools.lru_cache(maxsize=4)
def _initial_conditions(spec: RunSpec, collision_energy: float, lattice_constant: float, snapshot_path: str,
                        model: ForceModel):
    from pyscatter.initial.sampler import build_initial_conditions, quantised_molecule
    from pyscatter.initial.surface import build_slab
    from pyscatter.initial.thermal import ThermalSnapshots

    slab = build_slab(spec.surface, lattice_constant)
    return build_initial_conditions(spec, collision_energy, slab, ThermalSnapshots.load(snapshot_path),
                                    quantised_molecule(spec, model))


def build(job: Job):
    """The job's (model, initial conditions), cached per process; refuses a model whose identity differs
    from the run's."""
    model = job.model.model if job.model.model is not None else _load(job.model)
    if model.identity != job.model.identity:
        raise WorkerError(f"model {job.model.name!r} has identity {model.identity!r} here, but the run was "
                          f"made with {job.model.identity!r}")
    return model, _initial_conditions(job.spec, job.collision_energy, job.lattice_constant, job.snapshot_path, model)


def run_job(job: Job, indices: Iterable[int], on_finished: OnFinished) -> None:
    """Every trajectory of ``indices`` in this process, results streamed to ``on_finished``."""
    model, initial = build(job)
    spec = job.spec
    engine_named(job.engine)(model, initial, indices, on_finished, job.batch_size, spec.dt, spec.termination,
                             spec.free_flight)


def check_picklable(model: ModelRef) -> None:
    """Refuse, in one line, a model object that cannot be sent to worker processes (one known by name is loaded
    there)."""
    if model.by_name:
        return
    try:
        pickle.dumps(model.model)
    except Exception as err:  # noqa: BLE001 - any pickling failure means the same to the user
        raise ValueError(f"model object {type(model.model).__name__} cannot be sent to worker processes "
                         f"({type(err).__name__}: {err}); use workers=1") from None


def execute(job: Job, indices: Iterable[int], workers: int, on_finished: OnFinished,
            executor: Executor | None = None) -> None:
    """Run every trajectory in ``indices`` and report results to ``on_finished`` in this process.

    ``executor`` (e.g. a :class:`~pyscatter.workflows.dask.DaskExecutor`) runs chunks instead of ``workers`` local processes.
    """
    if executor is not None:
        check_picklable(job.model)
        _run_chunks(executor, max(1, getattr(executor, "workers", 1)), job, list(indices), on_finished)
    elif workers <= 1:
        run_job(job, indices, on_finished)
    else:
        check_picklable(job.model)
        _run_processes(job, indices, workers, on_finished)


def _run_processes(job: Job, indices: Iterable[int], workers: int, on_finished: OnFinished) -> None:
    """Indices go out one at a time (fed from this thread, so ``indices`` may read the store) to ``workers``
    spawned processes; each step's finished trajectories come back as they finish."""
    context = mp.get_context("spawn")
    tasks, results = context.Queue(maxsize=4 * workers), context.Queue()
    pending = itertools.chain(indices, [None] * workers)
    item = next(pending)
    processes = [context.Process(target=_worker, args=(job, tasks, results, os.getpid()), daemon=True)
                 for _ in range(workers)]
    for process in processes:
        process.start()
    running = workers
    try:
        while running:
            while item is not _FED:
                try:
                    tasks.put_nowait(item)
                except queue.Full:
                    break
                item = next(pending, _FED)
            try:
                kind, *payload = results.get(timeout=0.05)
            except queue.Empty:
                dead = [p for p in processes if p.exitcode not in (None, 0)]
                if dead:
                    raise WorkerError(f"a worker process died (exit code {dead[0].exitcode})") from None
                continue
            if kind == "results":
                on_finished(*payload)
            elif kind == "error":
                raise WorkerError(payload[0])
            else:
                running -= 1
    finally:
        tasks.cancel_join_thread()  # indices still buffered for dead workers must not hold up the exit
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=2.0)


_FED = object()  # every index and stop mark is in the task queue


def _worker(job: Job, tasks, results, writer_pid: int) -> None:
    """A local worker: pull indices until the stop mark, stream each step's finished trajectories."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the writer decides when to stop, and ends the workers
    torch.set_num_threads(job.threads)

    def watch() -> None:  # end this worker if the writer dies (kill -9 leaves no orphans)
        while os.getppid() == writer_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
    try:
        run_job(job, iter(tasks.get, None), lambda finished, calls: results.put(("results", finished, calls)))
        results.put(("done",))
    except BaseException as err:  # noqa: BLE001 - reported to the writer as one line
        results.put(("error", " ".join(f"{type(err).__name__}: {err}".split())))


def chunk_size(n_indices: int, batch_size: int, workers: int) -> int:
    """Indices per Dask task: at most ``CHUNK_BATCHES`` batches, and ``TASKS_PER_WORKER`` tasks per worker."""
    return max(1, min(CHUNK_BATCHES * batch_size, math.ceil(n_indices / (TASKS_PER_WORKER * workers))))


def run_chunk(job: Job, chunk: Sequence[int]) -> tuple[list[TrajectoryResult], int]:
    """One Dask task: the results of every trajectory in ``chunk`` and the force calls spent on them."""
    results: list[TrajectoryResult] = []
    calls = [0]

    def collect(finished: list[TrajectoryResult], force_calls: int) -> None:
        results.extend(finished)
        calls[0] += force_calls

    run_job(replace(job, batch_size=min(job.batch_size, len(chunk))), chunk, collect)
    return results, calls[0]


def _run_chunks(executor: Executor, workers: int, job: Job, indices: Sequence[int], on_finished: OnFinished) -> None:
    size = chunk_size(len(indices), job.batch_size, workers)
    pending: set[Future] = {
        executor.submit(run_chunk, job, list(indices[start : start + size])) for start in range(0, len(indices), size)
    }
    try:
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                on_finished(*future.result())
    finally:
        for future in pending:
            future.cancel()
