"""The execution seam: trajectory indices go out to workers, finished trajectories stream back.

One writer (the caller) receives every result through ``on_finished``; workers never touch the store.
A :class:`Job` says everything a worker needs to rebuild the model and the initial conditions of one
condition by itself. ``workers=1`` runs in this process. ``workers=N`` starts N spawned processes that
pull indices one at a time from a shared queue (no chunk tails) and stream each step's finished
trajectories back, so progress advances per trajectory; the writer ends them within a second when it
is interrupted. A Dask cluster (:class:`DaskExecutor`: a running scheduler, a ``LocalCluster`` or a
dask-jobqueue cluster) runs chunks of indices as tasks through :func:`run_chunk`; a chunk lost with its
worker is simply computed again and the store's key (condition, index) rules out double counting.
Every trajectory's result depends only on its index, so all of these give bit-identical results.
"""

from __future__ import annotations

import contextlib
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
from pyscatter.engine.runner import OnFinished, run_dynamics
from pyscatter.models.base import ForceModel
from pyscatter.optional import import_optional
from pyscatter.outcomes import TrajectoryResult

CHUNK_BATCHES = 2  # a Dask chunk fills a batch at most this many times over (fewer batch drains per trajectory)
TASKS_PER_WORKER = 2  # ... and is small enough that every Dask worker gets at least this many chunks


@dataclass(frozen=True)
class Job:
    """One condition as a worker rebuilds it.

    spec: the run.  collision_energy: eV.  lattice_constant: Cu lattice constant at the surface
    temperature, Å.  snapshot_path: the run's thermal snapshots (.npz).  model_identity: the identity
    the run records for its model; a worker whose model differs refuses.  batch_size: systems integrated
    together per process.  threads: torch threads per local worker process.  trust_model: load a
    pickled model file (see :func:`pyscatter.models.load_model`).  model: a model object to use instead
    of loading ``spec.model`` (sent to worker processes pickled).  device: where a worker that loads
    ``spec.model`` evaluates it (a torch model: e.g. "cuda"; processes may share one GPU).
    """

    spec: RunSpec
    collision_energy: float
    lattice_constant: float
    snapshot_path: str
    model_identity: str
    batch_size: int
    threads: int = 1
    trust_model: bool = False
    model: ForceModel | None = None
    device: str = "cpu"


class WorkerError(RuntimeError):
    """A worker process failed; the message is one line."""


@functools.lru_cache(maxsize=2)
def _load(name: str, trust: bool, device: str) -> ForceModel:
    """A worker process loads each model once, not once per chunk or condition."""
    from pyscatter.models import load_model

    return load_model(name, trust=trust, device=device)


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
    model = job.model if job.model is not None else _load(job.spec.model, job.trust_model, job.device)
    if model.identity != job.model_identity:
        raise WorkerError(f"model {job.spec.model!r} has identity {model.identity!r} here, but the run was "
                          f"made with {job.model_identity!r}")
    return model, _initial_conditions(job.spec, job.collision_energy, job.lattice_constant, job.snapshot_path, model)


def run_job(job: Job, indices: Iterable[int], on_finished: OnFinished) -> None:
    """Every trajectory of ``indices`` in this process, results streamed to ``on_finished``."""
    model, initial = build(job)
    spec = job.spec
    run_dynamics(model, initial, indices, on_finished, job.batch_size, spec.dt, spec.termination, spec.free_flight)


def check_picklable(model: ForceModel | None) -> None:
    """Refuse, in one line, a model object that cannot be sent to worker processes (None: loaded there by name)."""
    if model is None:
        return
    try:
        pickle.dumps(model)
    except Exception as err:  # noqa: BLE001 - any pickling failure means the same to the user
        raise ValueError(f"model object {type(model).__name__} cannot be sent to worker processes "
                         f"({type(err).__name__}: {err}); use workers=1") from None


def execute(job: Job, indices: Iterable[int], workers: int, on_finished: OnFinished,
            executor: Executor | None = None) -> None:
    """Run every trajectory in ``indices`` and report results to ``on_finished`` in this process.

    ``executor`` (e.g. a :class:`DaskExecutor`) runs chunks instead of ``workers`` local processes.
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


# Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536, which makes glibc map and unmap every
# tensor buffer torch allocates: the engine then runs about 2x slower. Unset it for the workers we start.
NO_MALLOC_TRIM = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"


class DaskExecutor(Executor):
    """Chunks go to Dask: the scheduler at ``address``, ``cluster`` (e.g. a dask-jobqueue ``SLURMCluster``),
    or else a ``LocalCluster`` of ``n_workers`` single-threaded worker processes on this machine.

    A ``LocalCluster`` listens on 127.0.0.1 only (scheduler, nannies, workers) and serves a dashboard
    (on 127.0.0.1, a free port: ``cluster.dashboard_link``) only with ``dashboard=True``. ``connect_timeout``:
    s to reach the scheduler before giving up with a one-line :class:`OSError`. ``security``: a
    ``distributed.security.Security`` for a ``tls://`` scheduler (see :func:`open_executor`).
    Use as a context manager; ``workers`` is the number of tasks the cluster runs at once.
    """

    def __init__(self, address: str | None = None, n_workers: int | None = None, cluster=None, *,
                 dashboard: bool = False, connect_timeout: float = 10.0, security=None):
        dask, Client = _dask()
        if sum(x is not None for x in (address, n_workers, cluster)) != 1:
            raise ValueError("give exactly one of a scheduler address, a number of local Dask workers or a cluster")
        self._local = None
        if n_workers is not None:
            if n_workers < 1:
                raise ValueError(f"Dask workers must be >= 1, got {n_workers}")
            with dask.config.set({NO_MALLOC_TRIM: None}):
                cluster = self._local = _local_cluster(n_workers, dashboard)
        self.cluster = cluster
        try:
            self.client = Client(address if address is not None else cluster, timeout=connect_timeout,
                                 security=security)
        except (OSError, TimeoutError, ValueError) as err:  # unreachable, refused (TLS) or a malformed address
            if self._local is not None:
                self._local.close()
            where = address if address is not None else getattr(cluster, "scheduler_address", "the cluster")
            detail = " ".join(str(err).split())
            if isinstance(err, TimeoutError) or detail.startswith("Timed out"):
                raise OSError(f"cannot reach the Dask scheduler at {where} within {connect_timeout:g} s") from None
            raise OSError(f"cannot connect to the Dask scheduler at {where}: {detail}") from None
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


LOCALHOST = "127.0.0.1"
"""The one interface a ``LocalCluster`` of :class:`DaskExecutor` listens on."""


def _dask():
    """(dask, distributed.Client), or :class:`~pyscatter.optional.MissingExtra` naming the dask extra."""
    return import_optional("dask"), import_optional("distributed").Client


def _local_cluster(n_workers: int, dashboard: bool):
    """What ``LocalCluster(n_workers, threads_per_worker=1, host="127.0.0.1")`` starts (a scheduler and one
    nanny per single-threaded worker process, all on 127.0.0.1), with the scheduler's HTTP server (dashboard,
    info, metrics and health pages) only if ``dashboard``: a stock scheduler serves those pages even without."""
    import logging

    from distributed import Nanny, Scheduler, SpecCluster
    from distributed.worker_memory import parse_memory_limit

    class NoHTTPScheduler(Scheduler):
        def start_http_server(self, *args, **kwargs) -> None:
            """Serve nothing over HTTP."""

    quiet = logging.WARNING
    scheduler = {"cls": Scheduler if dashboard else NoHTTPScheduler,
                 "options": {"host": LOCALHOST, "port": 0, "dashboard": dashboard, "dashboard_address": f"{LOCALHOST}:0"}}
    worker = {"cls": Nanny, "options": {
        "host": LOCALHOST, "nthreads": 1, "silence_logs": quiet,
        "memory_limit": parse_memory_limit("auto", 1, n_workers, logger=logging.getLogger(__name__)),
    }}
    return SpecCluster(workers={i: worker for i in range(n_workers)}, scheduler=scheduler, worker=worker,
                       silence_logs=quiet)


def check_executor_options(scheduler: str | None = None, dask_workers: int | None = None, *, dashboard: bool = False,
                           connect_timeout: float = 10.0, tls_ca_file: str | None = None, tls_cert: str | None = None,
                           tls_key: str | None = None) -> None:
    """Refuse, in one line, options of :func:`open_executor` that cannot work, before anything starts."""
    tls = {"--tls-ca-file": tls_ca_file, "--tls-cert": tls_cert, "--tls-key": tls_key}
    given = [flag for flag, path in tls.items() if path is not None]
    if scheduler is not None and scheduler.startswith("tls://"):
        missing = [flag for flag in ("--tls-ca-file", "--tls-cert") if tls[flag] is None]
        if missing:
            raise ValueError(f"a tls:// scheduler needs {' and '.join(missing)}")
    elif given:
        raise ValueError(f"{', '.join(given)} {'goes' if len(given) == 1 else 'go'} only with a tls:// --scheduler")
    if dashboard and dask_workers is None:
        raise ValueError("--dashboard goes with --dask-workers (a running scheduler serves its own dashboard)")
    for flag in given:
        if not os.path.isfile(tls[flag]) or not os.access(tls[flag], os.R_OK):
            raise ValueError(f"{flag}: cannot read {tls[flag]}")
    if not (math.isfinite(connect_timeout) and connect_timeout > 0):
        raise ValueError(f"connect timeout must be a finite number of seconds > 0, got {connect_timeout}")
    if scheduler is not None or dask_workers is not None:
        _dask()


def open_executor(scheduler: str | None = None, dask_workers: int | None = None, *, dashboard: bool = False,
                  connect_timeout: float = 10.0, tls_ca_file: str | None = None, tls_cert: str | None = None,
                  tls_key: str | None = None) -> contextlib.AbstractContextManager:
    """``--scheduler ADDRESS`` / ``--dask-workers N`` as a context manager: a :class:`DaskExecutor`, or None for local.

    ``dashboard``: serve the local cluster's dashboard on 127.0.0.1. ``connect_timeout``: s. A ``tls://``
    scheduler needs ``tls_ca_file`` (PEM CA) and ``tls_cert`` (PEM client certificate; ``tls_key`` its
    key unless appended to it). Everything is checked first (:func:`check_executor_options`).
    """
    check_executor_options(scheduler, dask_workers, dashboard=dashboard, connect_timeout=connect_timeout,
                           tls_ca_file=tls_ca_file, tls_cert=tls_cert, tls_key=tls_key)
    if scheduler is None and dask_workers is None:
        return contextlib.nullcontext(None)
    security = None
    if tls_ca_file is not None:
        from distributed.security import Security

        security = Security(tls_ca_file=tls_ca_file, tls_client_cert=tls_cert, tls_client_key=tls_key,
                            require_encryption=True)
    return DaskExecutor(address=scheduler, n_workers=dask_workers, dashboard=dashboard,
                        connect_timeout=connect_timeout, security=security)
