"""A dead local worker does not stop the run: it is replaced and its trajectories are computed again
(bit-identical to an uninterrupted run's, each trajectory having its own random stream); a trajectory in
flight at two deaths is stored as failed, "worker died"; workers dying in a row stop the run with one line.

The reference is the same run in one process with another batch size, so a lost, doubled or changed
trajectory shows as a differing row."""

import multiprocessing as mp
import os
import signal
import sqlite3

import numpy as np
import psutil
import pytest

from pyscatter.conditions import RunSpec, Termination
from pyscatter.initial.thermal import ThermalSnapshots
from pyscatter.models.emt import EMTModel
from pyscatter.models.reference import ModelRef
from pyscatter.store import SNAPSHOT_FILE
from pyscatter.workflows import execution
from pyscatter.workflows.execution import Job, build
from pyscatter.workflows.run import run

SPEC = RunSpec(surface="111", temperature=300.0, v=0, J=0, n_snapshots=2, termination=Termination(max_time=150.0),
               model="emt")
N = 16
ARGS = ["run", "--surface", "111", "--T", "300", "--v", "0", "--J", "0", "--snapshots", "2", "--max-time", "150",
        "--model", "emt", "--batch-size", "2", "--workers", "2", "--energy", "0.5"]


class KillingEMT(EMTModel):
    """EMT whose process kills itself (SIGKILL, as the kernel's out-of-memory killer does) when it is asked
    for the forces on the hydrogen positions ``victim`` (Å): one trajectory's start."""

    def __init__(self, victim: np.ndarray):
        super().__init__()
        self.victim = victim

    def __call__(self, frame, positions, compute_forces=True):
        hydrogens = positions[:, frame.numbers == 1].detach().cpu().numpy()
        if hydrogens.shape[1:] == self.victim.shape and (abs(hydrogens - self.victim) < 1e-9).all(axis=(1, 2)).any():
            os.kill(os.getpid(), signal.SIGKILL)
        return super().__call__(frame, positions, compute_forces)

    def __reduce__(self):  # sent to the workers as built, without the neighbour lists of earlier calls
        return KillingEMT, (self.victim,)


RUN_WORKER = execution._worker


def _first_lives(job, conn, writer_pid):
    """A worker target: the first worker process started (it creates the file $MARK) runs as usual, every
    later one dies as it starts."""
    try:
        os.close(os.open(os.environ["MARK"], os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        os.kill(os.getpid(), signal.SIGKILL)
    RUN_WORKER(job, conn, writer_pid)


def _rows(directory):
    con = sqlite3.connect(directory / "results.sqlite")
    try:
        return con.execute("SELECT * FROM trajectories ORDER BY idx").fetchall()
    finally:
        con.close()


def _columns(directory) -> list[str]:
    """The column names of the store's trajectory table, in the order of :func:`_rows`."""
    con = sqlite3.connect(directory / "results.sqlite")
    try:
        return [row[1] for row in con.execute("PRAGMA table_info(trajectories)")]
    finally:
        con.close()


def _worker_processes() -> list[psutil.Process]:
    """This process's spawned worker processes still running (any depth)."""
    return [p for p in psutil.Process().children(recursive=True)
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE and "spawn_main" in " ".join(p.cmdline())]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("one_process")
    run(SPEC, [0.5], N, out_dir=out, batch_size=3)
    return out


def test_a_killed_worker_is_replaced_and_the_run_equals_the_uninterrupted_one(reference, tmp_path):
    killed = []

    def kill_a_worker(energy, done, total, tally):
        if not killed and done >= 4:
            victim = mp.active_children()[0]
            os.kill(victim.pid, signal.SIGKILL)
            killed.append((victim.pid, done))

    summary = run(SPEC, [0.5], N, out_dir=tmp_path, batch_size=2, workers=2, on_progress=kill_a_worker)
    (pid, done_when_killed), = killed
    assert done_when_killed < N - 4  # killed mid-run, with trajectories in flight
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert _rows(tmp_path) == _rows(reference)
    assert summary[0]["n_trajectories"] == N and summary[0]["n_failed"] == 0
    assert _worker_processes() == []


def test_a_trajectory_in_flight_at_two_deaths_is_stored_failed_and_the_run_goes_on(reference, tmp_path):
    victim = 3
    path = reference / SNAPSHOT_FILE
    job = Job(SPEC, 0.5, ThermalSnapshots.load(path).lattice_constant, str(path), ModelRef.given(EMTModel()), 1)
    initial = build(job)[1]
    start = initial.sample(victim)[0][list(initial.molecule)]

    summary = run(SPEC, [0.5], 12, out_dir=tmp_path, batch_size=1, workers=2, model=KillingEMT(start))
    rows, expected = _rows(tmp_path), _rows(reference)[:12]
    assert [r for r in rows if r[1] != victim] == [r for r in expected if r[1] != victim]
    (failed,) = [r for r in rows if r[1] == victim]
    columns = _columns(tmp_path)
    assert failed[columns.index("outcome")] == "failed" and failed[columns.index("failure")] == "worker died"
    assert summary[0]["n_trajectories"] == 12 and summary[0]["n_failed"] == 1
    assert _worker_processes() == []


def test_workers_dying_in_a_row_stop_the_run_with_one_line(reference, tmp_path, monkeypatch, capsys):
    from pyscatter.cli.main import main

    monkeypatch.setattr(execution, "_worker", _first_lives)
    monkeypatch.setenv("MARK", str(tmp_path / "mark"))
    out = tmp_path / "run"
    assert main([*ARGS, "--trajectories", "400", "--out", str(out)]) == 1
    err = capsys.readouterr().err  # notes (the model's, thermalisation) come before
    assert "Traceback" not in err and err.count("error") == 1
    in_a_row = execution.WORKER_DEATHS_IN_A_ROW
    assert err.splitlines()[-1].startswith(f"pyscatter: error: {in_a_row} worker processes died in a row "
                                           "(the last with exit code -9)")
    assert _worker_processes() == []  # the one that lived was ended
    rows, expected = _rows(out), {row[1]: row for row in _rows(reference)}
    assert len(rows) < 400 and all(row == expected[row[1]] for row in rows if row[1] in expected)
