"""The execution seam: trajectory indices go out to workers, finished trajectories stream back.

One writer (the caller) receives every result through ``on_finished``; workers never touch the store.
A :class:`Job` says everything a worker needs to rebuild the model and the initial conditions of one
condition by itself. ``workers=1`` runs in this process. ``workers=N`` starts N spawned processes that
ask the writer for indices one at a time (no chunk tails) and stream each step's finished trajectories
back, so progress advances per trajectory; the writer ends them within a second when it is interrupted,
and replaces one that dies, handing its unfinished indices out again. An executor (e.g. a
:class:`~pyscatter.workflows.dask.DaskExecutor`: a running scheduler, a ``LocalCluster`` or a
dask-jobqueue cluster) runs chunks of indices as tasks through :func:`run_chunk`; a chunk lost with its
worker is simply computed again and the store's key (condition, index) rules out double counting.
Every trajectory's result depends only on its index, so all of these give bit-identical results.
"""

from __future__ import annotations

import contextlib
import functools
import math
import multiprocessing as mp
import os
import pickle
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass, field, replace
from multiprocessing import connection
from typing import TYPE_CHECKING

from pyscatter.conditions import RunSpec
from pyscatter.engine.engines import engine_named
from pyscatter.models.reference import ModelRef
from pyscatter.outcomes import Outcome, TrajectoryResult

if TYPE_CHECKING:  # torch loads only where trajectories run (the CLI catches WorkerError without it)
    from pyscatter.engine.batch import OnFinished
    from pyscatter.models.base import ForceModel

CHUNK_BATCHES = 2  # a Dask chunk fills a batch at most this many times over (fewer batch drains per trajectory)
TASKS_PER_WORKER = 2  # ... and is small enough that every Dask worker gets at least this many chunks


@dataclass(frozen=True)
class Job:
    """One condition as a worker rebuilds it.

    spec: the run.  collision_energy: eV.  lattice_constant: the slab's fcc lattice constant at the surface
    temperature, Å.  snapshot_path: the run's thermal snapshots (.npz).  model: the run's model
    (:class:`~pyscatter.models.reference.ModelRef`: loaded by name in a worker, or sent to it pickled) with the
    identity the run records; a worker whose model differs refuses.  batch_size: systems integrated
    together per process.  threads: torch threads per local worker process.  engine: an engine's name
    (:data:`~pyscatter.engine.engines.ENGINES`).  slab_file: the run directory's copy of its slab file (a spec with
    ``slab``), else None.
    """

    spec: RunSpec
    collision_energy: float
    lattice_constant: float
    snapshot_path: str
    model: ModelRef
    batch_size: int
    threads: int = 1
    engine: str = "native"
    slab_file: str | None = None


class WorkerError(RuntimeError):
    """A worker process failed; the message is one line."""


@functools.lru_cache(maxsize=2)
def _load(model: ModelRef) -> ForceModel:
    """A worker process loads each model once, not once per chunk or condition."""
    return model.load()[1]


@functools.lru_cache(maxsize=4)
def _initial_conditions(spec: RunSpec, collision_energy: float, lattice_constant: float, snapshot_path: str,
                        model: ForceModel, slab_file: str | None):
    from pyscatter.initial.sampler import build_initial_conditions, quantised_molecule
    from pyscatter.initial.surface import run_slab
    from pyscatter.initial.thermal import ThermalSnapshots

    slab = run_slab(spec, lattice_constant, slab_file)
    return build_initial_conditions(spec, collision_energy, slab, ThermalSnapshots.load(snapshot_path),
                                    quantised_molecule(spec, model))


@functools.lru_cache(maxsize=4)
def electronic_friction(spec: RunSpec, lattice_constant: float, slab_file: str | None = None):
    """The run's electronic friction (:class:`~pyscatter.models.friction.LDFA`: the density of its slab at
    ``lattice_constant`` Å, built or read from ``slab_file``, the surface temperature as electronic temperature), or
    None; DensityError (one line) if its density cannot serve."""
    from pyscatter.initial.surface import run_slab
    from pyscatter.models.friction import LDFA, surface_density

    if spec.friction == "none":
        return None
    return LDFA(surface_density(spec.density, run_slab(spec, lattice_constant, slab_file).atoms), spec.temperature)


def build(job: Job):
    """The job's (model, initial conditions), cached per process; refuses a model whose identity differs
    from the run's."""
    model = job.model.model if job.model.model is not None else _load(job.model)
    if model.identity != job.model.identity:
        raise WorkerError(f"model {job.model.name!r} has identity {model.identity!r} here, but the run was "
                          f"made with {job.model.identity!r}")
    return model, _initial_conditions(job.spec, job.collision_energy, job.lattice_constant, job.snapshot_path, model,
                                      job.slab_file)


def run_job(job: Job, indices: Iterable[int], on_finished: OnFinished) -> None:
    """Every trajectory of ``indices`` in this process, results streamed to ``on_finished``."""
    model, initial = build(job)
    spec = job.spec
    friction = electronic_friction(spec, job.lattice_constant, job.slab_file)
    engine_named(job.engine)(model, initial, indices, on_finished, job.batch_size, spec.dt, spec.termination,
                             spec.free_flight, friction=friction)


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

    ``executor`` (e.g. a :class:`~pyscatter.workflows.dask.DaskExecutor`) runs chunks instead of ``workers``
    local processes.
    """
    if executor is not None:
        check_picklable(job.model)
        _run_chunks(executor, max(1, getattr(executor, "workers", 1)), job, list(indices), on_finished)
    elif workers <= 1:
        run_job(job, indices, on_finished)
    else:
        check_picklable(job.model)
        _run_processes(job, indices, workers, on_finished)


WORKER_DEATHS_IN_A_ROW = 3
"""Worker processes that may die in a row (no replacement having finished a trajectory in between)
before a local run stops with a one-line :class:`WorkerError`; its finished trajectories stay stored."""
DEATHS_TO_FAIL = 2
"""A trajectory in flight at this many worker deaths is stored as FAILED, "worker died" (its own crash,
e.g. out of memory, or that of a trajectory sharing its batch); fewer, and it is computed again."""
WORKER_DIED = "worker died"


def _run_processes(job: Job, indices: Iterable[int], workers: int, on_finished: OnFinished) -> None:
    """Indices go out one at a time, on request (drawn in this thread, so ``indices`` may read the store),
    to ``workers`` spawned processes; each step's finished trajectories come back as they finish.

    A worker that dies (e.g. killed for memory) is replaced and its unfinished indices are handed out
    again, first and at most one to a worker while fresh ones remain: each trajectory has its own random
    stream, so its result does not change. See :data:`DEATHS_TO_FAIL` and :data:`WORKER_DEATHS_IN_A_ROW`.
    """
    pool = _Pool(job, iter(indices), on_finished)
    try:
        while pool.fill(workers):
            pool.serve()
    finally:
        pool.close()


@dataclass(eq=False)
class _Worker:
    """A local worker process, its end of the pipe, its start number and the indices it holds."""

    process: mp.process.BaseProcess
    conn: mp.connection.Connection
    number: int
    held: set[int] = field(default_factory=set)
    done: bool = False


class _Pool:
    """The writer's side of the local workers: who holds which index, deaths and replacements."""

    def __init__(self, job: Job, indices: Iterator[int], on_finished: OnFinished):
        self.job, self.indices, self.on_finished = job, indices, on_finished
        self.context = mp.get_context("spawn")
        self.live: list[_Worker] = []
        self.started = 0
        self.drawn_all = False
        self.again: deque[int] = deque()  # indices of dead workers, handed out before fresh ones
        self.deaths: Counter[int] = Counter()  # worker deaths each index was in flight at
        self.in_a_row = 0
        self.streak_start = 0  # start number of the first worker started since the streak began

    def fill(self, workers: int) -> bool:
        """Start workers up to ``workers`` while work remains; False once every index is finished."""
        while len(self.live) < workers and (self.again or not self.drawn_all):
            conn, child = self.context.Pipe()
            process = self.context.Process(target=_worker, args=(self.job, child, os.getpid()), daemon=True)
            process.start()
            child.close()
            self.live.append(_Worker(process, conn, self.started))
            self.started += 1
        return bool(self.live)

    def serve(self) -> None:
        """Answer the workers' messages, then bury the workers that ended (wait at most 1 s)."""
        ready = set(connection.wait([w.conn for w in self.live] + [w.process.sentinel for w in self.live], 1.0))
        for worker in list(self.live):
            if worker.conn in ready:
                self._read(worker, alive=True)
            if worker.process.sentinel in ready:
                self._read(worker, alive=False)  # whatever it sent before it ended
                worker.process.join()
                self.live.remove(worker)
                worker.conn.close()
                if not worker.done:
                    self._died(worker)

    def _read(self, worker: _Worker, alive: bool) -> None:
        while not worker.done and worker.conn.poll():
            try:
                kind, *payload = worker.conn.recv()
            except (EOFError, OSError, pickle.UnpicklingError):  # it died while sending
                return
            if kind == "next" and alive:
                index = self._next(worker)
                if index is not None:
                    worker.held.add(index)
                with contextlib.suppress(OSError):  # it died meanwhile: its sentinel says so
                    worker.conn.send(index)
            elif kind == "results":
                finished, calls = payload
                worker.held.difference_update(r.index for r in finished)
                if finished and worker.number >= self.streak_start:
                    self.in_a_row = 0
                self.on_finished(finished, calls)
            elif kind == "error":
                raise WorkerError(payload[0])
            elif kind == "done":
                worker.done = True

    def _next(self, worker: _Worker) -> int | None:
        """The index for ``worker``: one left by a dead worker, unless it holds one and fresh ones remain."""
        holds_suspect = any(self.deaths[i] for i in worker.held)
        if self.again and (not holds_suspect or self.drawn_all):
            return self.again.popleft()
        index = None if self.drawn_all else next(self.indices, None)
        if index is None:
            self.drawn_all = True
            return self.again.popleft() if self.again else None
        return index

    def _died(self, worker: _Worker) -> None:
        """Hand out its indices again (or store them FAILED), or stop after too many deaths in a row."""
        if self.in_a_row == 0:
            self.streak_start = self.started
        self.in_a_row += 1
        lost = sorted(worker.held)
        self.deaths.update(lost)
        failed = [TrajectoryResult(i, Outcome.FAILED, math.nan, math.nan, math.nan, failure=WORKER_DIED)
                  for i in lost if self.deaths[i] >= DEATHS_TO_FAIL]
        self.again.extend(i for i in lost if self.deaths[i] < DEATHS_TO_FAIL)
        if failed:
            self.on_finished(failed, 0)
        if self.in_a_row >= WORKER_DEATHS_IN_A_ROW:
            raise WorkerError(f"{self.in_a_row} worker processes died in a row (the last with exit code "
                              f"{worker.process.exitcode}); stopped: finished trajectories are stored, "
                              "running again resumes")

    def close(self) -> None:
        """End every worker still running (an interrupted or stopped run leaves no processes behind)."""
        for worker in self.live:
            if worker.process.is_alive():
                worker.process.terminate()
        for worker in self.live:
            worker.process.join(timeout=2.0)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
        self.live = []


def _worker(job: Job, conn: mp.connection.Connection, writer_pid: int) -> None:
    """A local worker: ask the writer for indices until it answers None, stream each step's finished
    trajectories back."""
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the writer decides when to stop, and ends the workers
    torch.set_num_threads(job.threads)

    def watch() -> None:  # end this worker if the writer dies (kill -9 leaves no orphans)
        while os.getppid() == writer_pid:
            time.sleep(1.0)
        os._exit(1)

    def next_index() -> int | None:
        conn.send(("next",))
        return conn.recv()

    threading.Thread(target=watch, daemon=True).start()
    try:
        run_job(job, iter(next_index, None), lambda finished, calls: conn.send(("results", finished, calls)))
        conn.send(("done",))
    except BaseException as err:  # noqa: BLE001 - reported to the writer as one line
        conn.send(("error", " ".join(f"{type(err).__name__}: {err}".split())))


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
