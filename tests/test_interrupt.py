"""Live progress and interruption: workers stream trajectories as they finish, and Ctrl-C or SIGTERM stops
a run within about two seconds, keeping every finished trajectory for the next invocation to resume."""

import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from pyscatter.conditions import RunSpec, Termination
from pyscatter.store import SNAPSHOT_FILE, RunReader
from pyscatter.workflows.run import run

SPEC = RunSpec(surface="111", temperature=300.0, v=0, J=0, n_snapshots=2, termination=Termination(max_time=150.0),
               model="emt")
ARGS = ["--surface", "111", "--T", "300", "--v", "0", "--J", "0", "--snapshots", "2", "--max-time", "150",
        "--model", "emt", "--batch-size", "2", "--workers", "2"]

CLI = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
       "from pyscatter.cli.main import main; sys.exit(main())")
"""``pyscatter`` with Python's Ctrl-C handler, even where this process was started with SIGINT ignored (a
background job of a non-interactive shell), which a child would inherit."""


def test_progress_advances_per_trajectory_not_per_chunk(tmp_path):
    seen = []
    run(SPEC, [0.5], 24, out_dir=tmp_path, batch_size=4, workers=2,
        on_progress=lambda energy, done, total, tally: seen.append(done))
    assert seen[-1] == 24 and seen == sorted(seen)
    assert len(set(seen)) >= 12  # a chunked run reports a handful of jumps (24 / 2 workers / 2 tasks)


def _stored(directory) -> int:
    """Trajectories stored so far: 0 before the run has made its store (its snapshots file comes after the store's
    tables); any error reading it propagates."""
    if not (directory / SNAPSHOT_FILE).is_file():
        return 0
    with RunReader(directory) as store:
        return sum(store.counts(store.condition_id(e)).n_trajectories for e in store.collision_energies())


def _rows(directory) -> list[tuple]:
    """Every stored trajectory of the run's one energy, by index: (index, outcome, end time, drift, error, final state)."""
    with RunReader(directory) as store:
        (energy,) = store.collision_energies()
        return [(t.index, t.outcome, t.end_time, t.energy_drift, t.max_energy_error, t.failure, t.v_final, t.J_final,
                 t.translational_energy, t.internal_energy) for t in store.trajectories(store.condition_id(energy))]


def _descendants(pid: int) -> set[int]:
    """Process ids of the living descendants of ``pid``."""
    try:
        return {child.pid for child in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_run_quickly_and_keeps_finished_trajectories(tmp_path, signum):
    out = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-c", CLI, "run", *ARGS, "--trajectories", "400",
                                "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    workers = set()
    while _stored(out) < 4 and time.time() < deadline and process.poll() is None:
        workers |= _descendants(process.pid)
        time.sleep(0.5)
    assert process.poll() is None, process.communicate()[1][-2000:]
    workers |= _descendants(process.pid)
    assert workers  # the two worker processes (and their helpers)
    sent = time.perf_counter()
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=30)
    stopped = time.perf_counter() - sent
    assert process.returncode == 130, stderr[-2000:]
    assert stopped < 10.0, stopped  # about 2 s on a quiet machine; CI machines may be loaded
    assert "rerun the same command to resume" in stderr
    left = []
    for pid in workers:
        try:
            left.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(left, timeout=10)
    assert not [p.pid for p in alive if p.status() != psutil.STATUS_ZOMBIE]  # gone within 10 s of the run's exit
    kept = _stored(out)
    assert 4 <= kept < 400
    for directory in (out, tmp_path / "uninterrupted"):
        done = subprocess.run([sys.executable, "-m", "pyscatter.cli.main", "run", *ARGS, "--trajectories", str(kept + 2),
                               "--out", str(directory), "--json"], capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stderr[-2000:]
    resumed, uninterrupted = _rows(out), _rows(tmp_path / "uninterrupted")
    assert [row[0] for row in uninterrupted] == list(range(kept + 2))
    assert [row[0] for row in resumed][:kept + 2] == list(range(kept + 2))
    for a, b in zip(resumed, uninterrupted):  # results depend on the index only: bit for bit
        np.testing.assert_equal(a, b)
