"""How a run computes its trajectories, as one value: processes, threads, batch size, executor, engine, deadline.

A run's results do not depend on any of it (every trajectory's result depends only on its index).
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import Executor
from dataclasses import dataclass, field

from pyscatter.engine.engines import engine_named


@dataclass(frozen=True)
class Execution:
    """workers: local processes (1: this one).  threads: torch threads per process, this one included (1 by
    default: on small CPU batches torch's intra-op threads cost more than they give).  batch_size: systems integrated
    together per process (None: the model's ``default_batch_size``).  executor: e.g. a
    :class:`~pyscatter.workflows.dask.DaskExecutor`, which runs the trajectories instead of ``workers`` processes.
    engine: an engine's name (:data:`~pyscatter.engine.engines.ENGINES`).  last_start: a time (``time.time()``, s)
    after which no trajectory starts; those started finish.
    """

    workers: int = 1
    threads: int = 1
    batch_size: int | None = None
    executor: Executor | None = field(default=None, compare=False)
    engine: str = "native"
    last_start: float | None = None

    def __post_init__(self) -> None:
        for name in ("workers", "threads", "batch_size"):
            value = getattr(self, name)
            if value is None and name == "batch_size":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if engine_named(self.engine).in_process and not self.in_process:
            raise ValueError(f"the {self.engine} engine runs in this process: use workers=1 and no executor")

    @property
    def in_process(self) -> bool:
        """Whether the trajectories run in this process."""
        return self.workers == 1 and self.executor is None

    @classmethod
    def from_keywords(cls, options: dict) -> "Execution":
        """The settings among the keyword arguments ``options`` (removed from it), defaults for the others."""
        return cls(**{f.name: options.pop(f.name) for f in dataclasses.fields(cls) if f.name in options})
