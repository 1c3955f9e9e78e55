"""The execution seam: trajectory indices go out to workers, finished trajectories come back.

One writer (the caller) receives every result through ``on_finished``; workers never touch the
store. ``workers=1`` runs in this process and streams results as they finish. Otherwise the
indices are cut into chunks and each chunk is one task of a ``concurrent.futures``-style
executor: local spawned processes (``workers=N``) or a Dask cluster (:class:`DaskExecutor`:
a running scheduler, a ``LocalCluster`` or a dask-jobqueue cluster). Both go through the same
:func:`run_chunk` and the same commit loop; the writer commits each chunk as it completes.

A task rebuilds the model and initial conditions from the picklable ``Job.build`` (cached per
worker process) and returns its chunk's results, so a chunk lost with its worker is simply computed
again (Dask does that by itself) and the store's key (condition, index) rules out double counting.
Every trajectory's result depends only on its index, so all of these give bit-identical results.
A chunk ends by draining its batch; :class:`SkipUnchanged` makes that tail cost only its running
trajectories.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import torch

from pyscatter.engine.runner import OnFinished, run_dynamics
from pyscatter.models.base import ForceModel, Frame, ModelOutput
from pyscatter.outcomes import TrajectoryResult

CHUNK_BATCHES = 2  # a chunk fills a batch at most this many times over (fewer batch drains per trajectory)
TASKS_PER_WORKER = 2  # ... and is small enough that every worker gets at least this many chunks


@dataclass(frozen=True)
class Job:
    """Everything a worker needs to rebuild the model and the initial conditions by itself.

    build: a picklable callable returning (model, initial conditions) in the worker process.
    batch_size: systems integrated together per process.  threads: torch threads per local worker
    process (Dask workers keep their own setting).
    dynamics: keyword arguments of :func:`~pyscatter.engine.runner.run_dynamics` (dt, max_time, ...).
    """

    build: Callable[[], tuple[ForceModel, object]]
    batch_size: int
    threads: int
    dynamics: dict


class WorkerError(RuntimeError):
    pass


def execute(
    job: Job, indices: Sequence[int], workers: int, on_finished: OnFinished, executor: Executor | None = None,
) -> None:
    """Run every trajectory in ``indices`` and report results to ``on_finished`` in this process.

    ``executor`` (e.g. a :class:`DaskExecutor`) runs the chunks instead of ``workers`` local processes.
    """
    if executor is not None:
        _run_chunks(executor, _executor_workers(executor), job, indices, on_finished)
    elif workers <= 1 or len(indices) <= 1:
        model, initial = job.build()
        run_dynamics(SkipUnchanged(model), initial, iter(indices), on_finished, job.batch_size, **job.dynamics)
    else:
        pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                                   initializer=_start_worker, initargs=(job.threads, os.getpid()))
        try:
            _run_chunks(pool, workers, job, indices, on_finished)
        except BrokenProcessPool as err:
            raise WorkerError(f"a worker process died: {err}") from None
        except BaseException:
            for process in list(pool._processes.values()):  # stop chunks that nobody will commit
                process.terminate()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def chunk_size(n_indices: int, batch_size: int, workers: int) -> int:
    """Indices per task: at most ``CHUNK_BATCHES`` batches, and ``TASKS_PER_WORKER`` tasks per worker."""
    return max(1, min(CHUNK_BATCHES * batch_size, math.ceil(n_indices / (TASKS_PER_WORKER * workers))))


def _start_worker(threads: int, writer_pid: int) -> None:
    """Set the worker's torch threads, and end the worker if the writer dies (kill -9 leaves no orphans)."""
    torch.set_num_threads(threads)

    def watch() -> None:
        while os.getppid() == writer_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def run_chunk(job: Job, chunk: Sequence[int]) -> tuple[list[TrajectoryResult], int]:
    """One task: the results of every trajectory in ``chunk`` and the force calls spent on them."""
    model, initial = job.build()
    results: list[TrajectoryResult] = []
    calls = [0]

    def collect(finished: list[TrajectoryResult], force_calls: int) -> None:
        results.extend(finished)
        calls[0] += force_calls

    run_dynamics(SkipUnchanged(model), initial, iter(chunk), collect, min(job.batch_size, len(chunk)), **job.dynamics)
    return results, calls[0]


class SkipUnchanged:
    """A force model that evaluates only the structures whose positions changed since its previous call.

    The finished slots of a draining batch sit still, so the tail of a chunk costs what its running
    trajectories cost, not a whole batch per step. Exact: the engine already requires a structure's
    energy and forces not to depend on the rest of the batch.
    """

    def __init__(self, model: ForceModel):
        self.model = model
        self._positions: torch.Tensor | None = None
        self._out: ModelOutput | None = None

    def __getattr__(self, name: str):
        return getattr(self.model, name)

    def __call__(self, frame: Frame, positions: torch.Tensor, compute_forces: bool = True) -> ModelOutput:
        last = self._out
        if last is None or last.forces is None or not compute_forces or self._positions.shape != positions.shape:
            out = self.model(frame, positions, compute_forces)
        else:
            changed = (positions != self._positions).flatten(1).any(dim=1)
            if changed.all():
                out = self.model(frame, positions, compute_forces)
            else:
                out = ModelOutput(last.energies.clone(), last.forces.clone())
                if changed.any():
                    part = self.model(frame, positions[changed], compute_forces)
                    out.energies[changed] = part.energies.to(out.energies.dtype)
                    out.forces[changed] = part.forces.to(out.forces.dtype)
        self._positions, self._out = positions, out
        return out


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


def _executor_workers(executor: Executor) -> int:
    return max(1, getattr(executor, "workers", 1))


# Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536, which makes glibc map and unmap every
# tensor buffer torch allocates: the engine then runs about 2x slower. Unset it for the workers we start.
NO_MALLOC_TRIM = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"


class DaskExecutor(Executor):
    """Chunks go to Dask: the scheduler at ``address``, ``cluster`` (e.g. a dask-jobqueue ``SLURMCluster``),
    or else a ``LocalCluster`` of ``n_workers`` single-threaded worker processes on this machine.

    Use as a context manager; ``workers`` is the number of tasks the cluster runs at once.
    """

    def __init__(self, address: str | None = None, n_workers: int | None = None, cluster=None):
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError:
            raise ImportError("Dask execution needs the 'dask' extra: pip install 'pyscatter[dask]'") from None
        if sum(x is not None for x in (address, n_workers, cluster)) != 1:
            raise ValueError("give exactly one of a scheduler address, a number of local Dask workers or a cluster")
        self._local = None
        if n_workers is not None:
            if n_workers < 1:
                raise ValueError(f"Dask workers must be >= 1, got {n_workers}")
            with dask.config.set({NO_MALLOC_TRIM: None}):
                cluster = self._local = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                                     dashboard_address=":0")
        self.cluster = cluster
        self.client = Client(address if address is not None else cluster)
        self._executor = self.client.get_executor(pure=False)

    @property
    def workers(self) -> int:
        """Worker threads connected now, or the workers the cluster has asked for (jobs still queued)."""
        return max(sum(self.client.nthreads().values()), len(getattr(self.cluster, "plan", ())), 1)

    def submit(self, fn, /, *args, **kwargs) -> Future:
        return self._executor.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._executor.shutdown(wait=wait and not cancel_futures)
        self.client.close()
        if self._local is not None:
            self._local.close()


def open_executor(scheduler: str | None = None, dask_workers: int | None = None) -> contextlib.AbstractContextManager:
    """``--scheduler ADDRESS`` / ``--dask-workers N`` as a context manager: a :class:`DaskExecutor`, or None for local."""
    if scheduler is None and dask_workers is None:
        return contextlib.nullcontext(None)
    return DaskExecutor(address=scheduler, n_workers=dask_workers)
