"""Scale-out through the one execution seam: determinism on 1 process, 2 local processes and Dask; a worker
killed mid-run; the client interrupted then resumed; the SLURMCluster recipe of docs/clusters.md constructs."""

import os
import re
import signal
import sqlite3
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from pyscatter.conditions import Termination
from pyscatter.conditions import RunSpec
from pyscatter.workflows.dask import DaskExecutor
from pyscatter.workflows.execution import CHUNK_BATCHES, chunk_size
from pyscatter.workflows.run import run

SPEC = RunSpec(surface="111", temperature=300.0, v=0, J=0, n_snapshots=2, termination=Termination(max_time=150.0), model="emt")
N = 16
CLUSTERS = Path(__file__).resolve().parents[1] / "docs" / "clusters.md"


def _rows(directory: Path):
    """Every stored column of every trajectory, by index (NULL for fields that do not apply)."""
    con = sqlite3.connect(directory / "results.sqlite")
    try:
        return con.execute("SELECT * FROM trajectories ORDER BY idx").fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """N trajectories in this one process, batch 4."""
    out = tmp_path_factory.mktemp("one_process")
    run(SPEC, [0.5], N, out_dir=out, batch_size=4)
    return out


@pytest.fixture(scope="module")
def dask_executor():
    with DaskExecutor(n_workers=2) as executor:
        yield executor


def test_chunks_fill_batches_and_share_out_the_work():
    assert chunk_size(10000, 256, 2) == CHUNK_BATCHES * 256
    assert chunk_size(16, 2, 2) == 4  # two tasks per worker
    assert chunk_size(1, 256, 8) == 1


def test_one_process_two_local_processes_and_dask_give_bit_identical_trajectories(reference, dask_executor, tmp_path):
    assert dask_executor.workers == 2
    run(SPEC, [0.5], N, out_dir=tmp_path / "local", batch_size=3, workers=2)
    dask = run(SPEC, [0.5], N, out_dir=tmp_path / "dask", batch_size=2, executor=dask_executor)
    expected = _rows(reference)
    assert len(expected) == N
    assert _rows(tmp_path / "local") == expected
    assert _rows(tmp_path / "dask") == expected
    assert dask[0]["n_trajectories"] == N
    assert dask[0]["n_dissociated"] == sum(row[2] == "dissociated" for row in expected)


def test_client_interrupted_then_resumed_on_dask(reference, dask_executor, tmp_path):
    def interrupt(energy, done, total, tally):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(SPEC, [0.5], N, out_dir=tmp_path, batch_size=2, executor=dask_executor, on_progress=interrupt)
    assert 0 < len(_rows(tmp_path)) < N
    run(SPEC, [0.5], N, out_dir=tmp_path, batch_size=2, executor=dask_executor)
    assert _rows(tmp_path) == _rows(reference)


def test_local_processes_interrupted_then_resumed(reference, tmp_path):
    def interrupt(energy, done, total, tally):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(SPEC, [0.5], N, out_dir=tmp_path, batch_size=2, workers=2, on_progress=interrupt)
    assert 0 < len(_rows(tmp_path)) < N
    run(SPEC, [0.5], N, out_dir=tmp_path, batch_size=2, workers=2)
    assert _rows(tmp_path) == _rows(reference)


def test_a_worker_killed_mid_run_loses_and_double_counts_nothing(reference, tmp_path):
    killed = []

    with DaskExecutor(n_workers=2) as executor:
        client = executor.client

        def kill_a_busy_worker(energy, done, total, tally):
            if killed:
                return
            busy = [address for address, keys in client.processing().items() if keys]
            assert busy, "no chunk in flight to lose"
            pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
            os.kill(pid, signal.SIGKILL)
            killed.append((pid, done))

        summary = run(SPEC, [0.5], N, out_dir=tmp_path, batch_size=2, executor=executor, on_progress=kill_a_busy_worker)
        live = set(client.run(os.getpid).values())
    (pid, done_when_killed), = killed
    assert done_when_killed < N and pid not in live
    assert _rows(tmp_path) == _rows(reference)
    assert summary[0]["n_trajectories"] == N


def test_docs_slurm_recipe_constructs(tmp_path):
    """The SLURMCluster recipe of docs/clusters.md, up to submitting jobs (no Slurm here), builds the expected job script."""
    pytest.importorskip("dask_jobqueue")
    code = re.search(r"```python\n(.*?)```", CLUSTERS.read_text(), re.S).group(1)
    construct = code.split("cluster.scale")[0]
    namespace = {}
    import dask

    with dask.config.set({"jobqueue.slurm.scheduler-options": {"host": "127.0.0.1", "dashboard_address": ":0"}}):
        exec(construct, namespace)  # the scheduler listens on loopback only
    cluster = namespace["cluster"]
    try:
        script = cluster.job_script()
        assert "#SBATCH" in script and "--nthreads 1" in script
        assert "source /shared/pyscatter/.venv/bin/activate" in script
        assert "--chdir=/shared/project" in script and "tcp://127.0.0.1:" in script
        with DaskExecutor(cluster=cluster) as executor:
            assert executor.workers == 1  # no jobs asked for yet
    finally:
        cluster.close()


def test_run_command_on_a_local_dask_cluster(reference, tmp_path, capsys):
    from pyscatter.cli.main import main

    small = ["run", "--surface", "111", "--T", "300", "--v", "0", "--J", "0", "--snapshots", "2", "--max-time", "150",
             "--model", "emt", "--trajectories", "4", "--batch-size", "4", "--out", str(tmp_path)]
    with pytest.raises(SystemExit):
        main([*small, "--dask-workers", "1", "--scheduler", "tcp://127.0.0.1:1"])
    assert "not allowed with argument" in capsys.readouterr().err
    assert main([*small, "--dask-workers", "1"]) == 0
    assert _rows(tmp_path) == _rows(reference)[:4]
