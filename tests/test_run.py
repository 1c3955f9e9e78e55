"""End to end through the command line: output, resume, kill -9, determinism, bad input."""

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pyscatter.cli.main import main

SMALL = ["run", "--surface", "111", "--T", "300", "--v", "0", "--J", "0", "--snapshots", "2", "--max-time", "150",
         "--model", "emt"]


def _cli(args, capsys):
    try:
        code = main([str(a) for a in args])
    except SystemExit as exit_:  # argparse's own checks
        code = exit_.code
    return code, capsys.readouterr()


def _rows(db: Path):
    con = sqlite3.connect(db)
    try:
        return con.execute(
            "SELECT idx, outcome, end_time_fs, energy_drift_eV, v_final, J_final FROM trajectories ORDER BY idx"
        ).fetchall()
    finally:
        con.close()


def _tree_digest(directory: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """An uninterrupted run of 12 trajectories at batch size 4 in one worker process."""
    out = tmp_path_factory.mktemp("reference")
    assert main([*SMALL, "--trajectories", "12", "--batch-size", "4", "--workers", "1", "--out", str(out), "--json"]) == 0
    return out


def test_json_output_and_resume(reference_run, capsys, tmp_path):
    code, out = _cli([*SMALL, "--trajectories", "12", "--batch-size", "4", "--out", reference_run, "--json"], capsys)
    assert code == 0
    record = json.loads(out.out.strip().splitlines()[-1])
    for key in ("surface", "T", "v", "J", "molecule", "collision_energy", "n_trajectories", "n_dissociated",
                "n_scattered", "n_trapped", "p_stick", "p_stick_ci", "model", "seed", "force_calls", "wall_time_s"):
        assert key in record
    assert record["n_trajectories"] == 12
    assert record["n_dissociated"] + record["n_scattered"] + record["n_trapped"] == 12
    assert record["p_stick"] == record["n_dissociated"] / 12
    # the 95 % Wilson interval, computed here: (p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)
    n, p, z = 12, record["p_stick"], 1.959963984540054
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert record["p_stick_ci"] == pytest.approx([centre - half, centre + half], abs=1e-12)
    assert "qualitative demonstration potential" in out.err
    before = _rows(reference_run / "results.sqlite")
    # resuming a complete run computes nothing new
    code, out = _cli([*SMALL, "--trajectories", "12", "--out", reference_run, "--json"], capsys)
    assert json.loads(out.out.strip().splitlines()[-1])["force_calls"] == record["force_calls"]
    assert _rows(reference_run / "results.sqlite") == before


def test_batch_size_and_workers_do_not_change_results(reference_run, tmp_path):
    """Batch size 1 in two worker processes against batch size 4 in one."""
    assert main([*SMALL, "--trajectories", "12", "--batch-size", "1", "--workers", "2", "--out", str(tmp_path)]) == 0
    assert _rows(tmp_path / "results.sqlite") == _rows(reference_run / "results.sqlite")


def test_kill_9_then_resume_gives_the_uninterrupted_tally(reference_run, tmp_path):
    """Kill -9 a 48-trajectory run after its first commit; resuming completes it without redoing a row.

    The run is four times the reference's length so that the kill falls well before its end on a fast
    machine too (commits are at most one per second); its first 12 trajectories are the reference's.
    """
    total = 48
    cmd = [sys.executable, "-m", "pyscatter.cli.main", *SMALL, "--trajectories", str(total), "--batch-size", "2",
           "--workers", "2", "--out", str(tmp_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = tmp_path / "results.sqlite"
    deadline = time.time() + 240
    while time.time() < deadline:  # kill once some, but not all, trajectories are committed
        time.sleep(0.1)
        if db.exists():
            try:
                n = len(_rows(db))
            except sqlite3.OperationalError:
                continue
            if n >= 1:
                break
    workers = _children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    committed = _rows(db)  # what the killed run left
    assert 0 < len(committed) < total, "the kill must fall between the first commit and the last"
    reference = _rows(reference_run / "results.sqlite")
    assert {row for row in committed if row[0] < 12} <= set(reference)  # committed trajectories are complete and final
    deadline = time.time() + 15
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers), "worker processes outlived the killed writer"
    assert main([*SMALL, "--trajectories", str(total), "--batch-size", "3", "--out", str(tmp_path)]) == 0
    resumed = _rows(db)
    assert [row[0] for row in resumed] == list(range(total))
    assert resumed[:12] == reference
    assert set(committed) <= set(resumed)  # the resume kept what was committed and completed the rest


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


BAD = [
    (["--surface", "113"], "unknown facet"),
    (["--T", "0"], "temperature"),
    (["--T", "-5"], "temperature"),
    (["--v", "-1"], "non-negative integer"),
    (["--J", "1.5"], "non-negative integer"),
    (["--energy", "0"], "collision energy"),
    (["--energy", "-0.2"], "collision energy"),
    (["--trajectories", "0"], "trajectories"),
    (["--model", "/nonexistent/model.model"], "not found"),
    (["--v", "40"], "dissociation limit"),
    (["--device", "cuda"], "runs on the CPU only"),
]


@pytest.mark.parametrize("change, message", BAD)
def test_bad_input_is_one_line_and_leaves_the_run_directory_alone(reference_run, capsys, change, message):
    before = _tree_digest(reference_run)
    args = dict(zip(SMALL[1::2], SMALL[2::2]))
    args.update(zip(change[::2], change[1::2]))
    args.setdefault("--trajectories", "12")
    code, out = _cli(["run", *(x for kv in args.items() for x in kv), "--out", reference_run], capsys)
    lines = [line for line in out.err.strip().splitlines() if "note:" not in line]
    assert code == 2
    assert len(lines) == 1 and message in lines[0], out.err
    assert _tree_digest(reference_run) == before


def test_corrupt_model_file(tmp_path, capsys):
    bad = tmp_path / "broken.model"
    bad.write_bytes(b"\x00garbage" * 100)
    code, out = _cli([*SMALL, "--model", bad, "--out", tmp_path / "run"], capsys)
    assert code != 0 and len(out.err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_unwritable_output_directory(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, out = _cli([*SMALL, "--trajectories", "1", "--out", blocker / "run"], capsys)
    assert code == 2 and "cannot write run directory" in out.err


def test_a_different_condition_in_an_existing_directory_is_refused(reference_run, capsys):
    before = _tree_digest(reference_run)
    args = [*SMALL, "--trajectories", "12", "--out", reference_run]
    args[args.index("--T") + 1] = "400"
    code, out = _cli(args, capsys)
    assert code == 2 and "different run" in out.err
    assert _tree_digest(reference_run) == before


def test_nqcd_engine_without_julia_is_a_one_line_error(tmp_path, capsys):
    import shutil

    if shutil.which("julia"):
        pytest.skip("Julia is installed here: the engine itself is tested in test_nqcd.py")
    code, out = _cli([*SMALL, "--engine", "nqcd", "--workers", "1", "--out", tmp_path / "run"], capsys)
    lines = [line for line in out.err.strip().splitlines() if "note:" not in line]
    assert code == 2 and len(lines) == 1 and "the nqcd engine needs" in lines[0]
    assert not (tmp_path / "run").exists()


def test_a_resumed_run_keeps_the_lattice_constant_and_snapshots_it_started_with(reference_run, tmp_path, capsys):
    """A float32 model's E(a) minimum moves by ~1e-4 Å between machines and thread counts: a resumed run must keep
    the slab its first trajectories started on (here its snapshots carry a lattice constant 1e-4 Å off EMT's)."""
    import shutil

    from pyscatter.initial.thermal import ThermalSnapshots

    shutil.copytree(reference_run, tmp_path / "run")
    path = tmp_path / "run" / "thermal_snapshots.npz"
    snapshots = ThermalSnapshots.load(path)
    shifted = ThermalSnapshots(snapshots.positions, snapshots.velocities, snapshots.temperature, snapshots.surface,
                               snapshots.lattice_constant + 1e-4, snapshots.model_identity, snapshots.seed,
                               snapshots.protocol)
    shifted.save(path)
    code, _ = _cli([*SMALL, "--trajectories", "14", "--out", tmp_path / "run"], capsys)
    assert code == 0
    kept = ThermalSnapshots.load(path)
    assert kept.lattice_constant == shifted.lattice_constant
    np.testing.assert_array_equal(kept.positions, snapshots.positions)
    assert len(_rows(tmp_path / "run" / "results.sqlite")) == 14


def test_copies_resumed_apart_merge_into_the_uninterrupted_run(reference_run, tmp_path):
    """Half a run, copied and finished elsewhere (as on a GPU machine), merged back: the rows of the uninterrupted run;
    a copy of another run or from other snapshots is refused."""
    import shutil

    from pyscatter.initial.thermal import ThermalSnapshots
    from pyscatter.store import RunReader, RunStore, StoreError

    half, copy = tmp_path / "half", tmp_path / "copy"
    assert main([*SMALL, "--trajectories", "6", "--batch-size", "4", "--out", str(half)]) == 0
    shutil.copytree(half, copy)
    assert main([*SMALL, "--trajectories", "12", "--batch-size", "3", "--out", str(copy)]) == 0
    with RunReader(half) as run:
        spec, provenance = run.spec, run.provenance
    with RunStore(half, spec, provenance) as store:
        assert store.merge(copy) == 6
        assert store.merge(copy) == 0
    assert _rows(half / "results.sqlite") == _rows(reference_run / "results.sqlite")

    other = tmp_path / "other"
    assert main([*SMALL, "--trajectories", "2", "--J", "1", "--out", str(other)]) == 0
    snapshots = ThermalSnapshots.load(copy / "thermal_snapshots.npz")
    moved = ThermalSnapshots(snapshots.positions + 0.01, snapshots.velocities, snapshots.temperature, snapshots.surface,
                             snapshots.lattice_constant, snapshots.model_identity, snapshots.seed, snapshots.protocol)
    moved.save(copy / "thermal_snapshots.npz")
    with RunStore(half, spec, provenance) as store:
        with pytest.raises(StoreError, match="another run"):
            store.merge(other)
        with pytest.raises(StoreError, match="same thermal snapshots"):
            store.merge(copy)


def test_no_trajectory_starts_after_the_last_start_and_those_started_finish(reference_run, tmp_path, monkeypatch, capsys):
    """A clock that passes --start-for's end after 3 indices are drawn: those 3 trajectories finish and are stored as
    in the uninterrupted run, none after; the same command then resumes to the uninterrupted run's rows."""
    import itertools

    import pyscatter.workflows.run as run_module

    ticks = itertools.count()
    monkeypatch.setattr(run_module, "_now", lambda: next(ticks))  # one tick per index drawn
    monkeypatch.setattr(time, "time", lambda: 0.0)  # the CLI's start: the last start at tick 3
    code, out = _cli([*SMALL, "--trajectories", "12", "--batch-size", "4", "--workers", "1", "--start-for", "3",
                      "--out", tmp_path], capsys)
    assert code == 0 and "ended the run short of 12 trajectories" in out.err
    assert _rows(tmp_path / "results.sqlite") == _rows(reference_run / "results.sqlite")[:3]
    monkeypatch.undo()
    code, out = _cli([*SMALL, "--trajectories", "12", "--batch-size", "4", "--out", tmp_path], capsys)
    assert code == 0 and "short of" not in out.err
    assert _rows(tmp_path / "results.sqlite") == _rows(reference_run / "results.sqlite")
