"""Dask set-up: a :class:`DaskExecutor` on a running scheduler (``tcp://`` or ``tls://``), a dask-jobqueue
cluster or a ``LocalCluster`` on 127.0.0.1, and :func:`open_executor`, which checks its options first.

The executor runs chunks of trajectory indices through :func:`pyscatter.workflows.execution.execute`;
nothing here knows about trajectories. Errors name this module's parameters (``tls_ca_file``), not
command-line flags.
"""

from __future__ import annotations

import contextlib
import math
import os
from concurrent.futures import Executor, Future

from pyscatter.optional import import_optional

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
    """Refuse, in one line naming the parameter, options of :func:`open_executor` that cannot work,
    before anything starts."""
    tls = {"tls_ca_file": tls_ca_file, "tls_cert": tls_cert, "tls_key": tls_key}
    given = [name for name, path in tls.items() if path is not None]
    if scheduler is not None and scheduler.startswith("tls://"):
        missing = [name for name in ("tls_ca_file", "tls_cert") if tls[name] is None]
        if missing:
            raise ValueError(f"a tls:// scheduler needs {' and '.join(missing)}")
    elif given:
        raise ValueError(f"{', '.join(given)} {'goes' if len(given) == 1 else 'go'} only with a tls:// scheduler")
    if dashboard and dask_workers is None:
        raise ValueError("dashboard goes with dask_workers (a running scheduler serves its own)")
    for name in given:
        if not os.path.isfile(tls[name]) or not os.access(tls[name], os.R_OK):
            raise ValueError(f"{name}: cannot read {tls[name]}")
    if not (math.isfinite(connect_timeout) and connect_timeout > 0):
        raise ValueError(f"connect_timeout must be a finite number of seconds > 0, got {connect_timeout}")
    if scheduler is not None or dask_workers is not None:
        _dask()


def open_executor(scheduler: str | None = None, dask_workers: int | None = None, *, dashboard: bool = False,
                  connect_timeout: float = 10.0, tls_ca_file: str | None = None, tls_cert: str | None = None,
                  tls_key: str | None = None) -> contextlib.AbstractContextManager:
    """A :class:`DaskExecutor` on the scheduler at ``scheduler`` (an address) or on a local cluster of
    ``dask_workers`` processes, as a context manager; with neither, None (local execution).

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
