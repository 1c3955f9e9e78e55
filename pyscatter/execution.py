"""The execution seam: trajectory indices go out to workers, finished trajectories come back.

One writer (the caller) receives every result through ``on_finished``; workers never touch the
store. ``workers=1`` runs in this process; ``workers=N`` starts N spawned processes that pull
small chunks of indices from a shared queue, so every process keeps its batch full until the
work runs out.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from pyscatter.engine.runner import OnFinished, run_dynamics
from pyscatter.models.base import ForceModel

CHUNK = 4  # indices handed out at a time


@dataclass(frozen=True)
class Job:
    """Everything a worker needs to rebuild the model and the initial conditions by itself.

    build: a picklable callable returning (model, initial conditions) in the worker process.
    batch_size: systems integrated together per process.  threads: torch threads per worker.
    dynamics: keyword arguments of :func:`~pyscatter.engine.runner.run_dynamics` (dt, max_time, ...).
    """

    build: Callable[[], tuple[ForceModel, object]]
    batch_size: int
    threads: int
    dynamics: dict


class WorkerError(RuntimeError):
    pass


def execute(job: Job, indices: Sequence[int], workers: int, on_finished: OnFinished) -> None:
    """Run every trajectory in ``indices`` and report results to ``on_finished`` in this process."""
    if workers <= 1 or len(indices) <= 1:
        model, initial = job.build()
        run_dynamics(model, initial, iter(indices), on_finished, job.batch_size, **job.dynamics)
        return
    context = mp.get_context("spawn")
    tasks, results = context.Queue(), context.Queue()
    for start in range(0, len(indices), CHUNK):
        tasks.put(list(indices[start : start + CHUNK]))
    for _ in range(workers):
        tasks.put(None)
    procs = [context.Process(target=_worker, args=(job, tasks, results), daemon=True) for _ in range(workers)]
    for p in procs:
        p.start()
    try:
        running = workers
        while running:
            try:
                message = results.get(timeout=1.0)
            except queue.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise WorkerError(f"a worker process died (exit code {dead[0].exitcode})") from None
                continue
            if message is None:
                running -= 1
            elif isinstance(message, str):
                raise WorkerError(message)
            else:
                on_finished(*message)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join()


def _pull(tasks) -> Iterator[int]:
    while (chunk := tasks.get()) is not None:
        yield from chunk


def _worker(job: Job, tasks, results) -> None:
    torch.set_num_threads(job.threads)
    try:
        model, initial = job.build()
        run_dynamics(model, initial, _pull(tasks), lambda res, calls: results.put((res, calls)), job.batch_size, **job.dynamics)
    except Exception as err:  # reported to the writer, which stops the run
        results.put(f"worker failed: {type(err).__name__}: {err}")
        return
    results.put(None)
