"""Every bad input is refused before any work: exit code 2, one ``pyscatter: error:`` line on stderr (a
model note may precede it), no traceback, and the working directory exactly as it was (nothing created,
nothing changed). Most cases run in-process through ``main``; a few as real processes for the exit
code and the time. Run directories with ``#``, ``?``, ``%`` and spaces in their path work for
``run``, ``status``, ``report`` and ``plot`` and create nothing outside themselves."""

import errno
import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.io.cube import write_cube

from pyscatter.cli.main import main
from pyscatter.conditions import MAX_TRAJECTORIES, RunSpec, Termination
from pyscatter.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
PYSCATTER = [sys.executable, "-c", "import sys; from pyscatter.cli import main; sys.exit(main())"]
"""What the ``pyscatter`` console script runs."""
RUN = ["run", "--surface", "111", "--T", "300", "--v", "0", "--J", "0", "--model", "emt"]
TINY = ["--trajectories", "2", "--snapshots", "1", "--max-time", "20", "--workers", "1"]
CAMPAIGN = {"facets": '["111"]', "states": "[[0, 0]]", "energies": "[0.5]", "models": '["emt"]', "T": "300",
            "trajectories": "2", "seed": "0"}
EXISTING = RunSpec(surface="111", temperature=300.0, v=0, J=0, model="emt", n_snapshots=1,
                   termination=Termination(max_time=20.0))
"""The run already in ``held/`` (no trajectories yet)."""


def _campaign(**changes) -> str:
    """A campaign TOML: :data:`CAMPAIGN` with ``changes`` (value None: key left out; raw TOML text values)."""
    table = {**CAMPAIGN, **changes}
    return "".join(f"{key} = {value}\n" for key, value in table.items() if value is not None)


# (id, command line, what it must say); files: a campaign file is c.toml, "afile" a regular file, "garbage.model"
# random bytes, "held/" a run directory of EXISTING, "store/results.sqlite" random bytes.
CASES = [
    ("batch-size 0", RUN + ["--batch-size", "0"], "--batch-size: expected a positive integer"),
    ("batch-size -5", RUN + ["--batch-size", "-5"], "--batch-size: expected a positive integer"),
    ("seed -1", RUN + ["--seed", "-1"], "--seed: expected a non-negative integer"),
    ("trajectories 1e12", RUN + ["--trajectories", "1000000000000"], f"from 1 to {MAX_TRAJECTORIES:,}"),
    ("trajectories 0", RUN + ["--trajectories", "0"], "--trajectories: expected an integer from 1"),
    ("max-time inf", RUN + ["--max-time", "inf"], "--max-time: expected a finite number"),
    ("max-time below dt", RUN + ["--max-time", "0.05"], "need dt < max-time"),
    ("dt nan", RUN + ["--dt", "nan"], "--dt: expected a finite number"),
    ("energy -1", RUN + ["--energy", "-1"], "--energy: collision energy must be a finite number > 0 eV, got -1.0"),
    ("energy nan", RUN + ["--energy", "nan"], "--energy: collision energy must be a finite number > 0 eV, got nan"),
    ("energy word", RUN + ["--energy", "high"], "--energy: collision energy must be a number of eV, got 'high'"),
    ("T 0", RUN[:4] + ["0"] + RUN[5:], "surface temperature must be a finite number > 0 K"),
    ("workers 0", RUN + ["--workers", "0"], "--workers: expected a positive integer"),
    ("threads 0", RUN + ["--threads", "0"], "--threads: expected a positive integer"),
    ("unknown surface", ["run", "--surface", "112"] + RUN[3:], "unknown facet '112'"),
    ("unknown molecule", RUN + ["--molecule", "N2"], "unknown molecule 'N2'"),
    ("v -1", RUN[:6] + ["-1"] + RUN[7:], "--v: expected a non-negative integer"),
    ("v above dissociation", RUN[:6] + ["40"] + RUN[7:], "above the dissociation limit"),
    ("lattice constant 0", RUN + ["--lattice-constant", "0"], "lattice constant must be a finite number > 0"),
    ("friction unknown", RUN + ["--friction", "odf"], "unknown friction 'odf': choose one of none, ldfa"),
    ("density without friction", RUN + ["--density", "slab.cube"], "a surface density is used only with friction ldfa"),
    ("density unreadable", RUN + TINY + ["--friction", "ldfa", "--density", "garbage.model"],
     "cannot read the density cube garbage.model"),
    ("density missing", RUN + TINY + ["--friction", "ldfa", "--density", "none.cube"], "cannot read the density cube none.cube"),
    ("density negative", RUN + TINY + ["--friction", "ldfa", "--density", "negative.cube"],
     "density cube negative.cube holds a negative density"),
    ("density off the slab", RUN + TINY + ["--friction", "ldfa", "--density", "slab.cube"],
     "density cube slab.cube does not cover the slab's cell"),
    ("friction on nqcd", RUN + TINY + ["--friction", "ldfa", "--engine", "nqcd"], "the nqcd engine has no electronic friction"),
    ("missing model file", RUN[:-1] + ["/nonexistent"], "model file not found: /nonexistent"),
    ("garbage model file", RUN[:-1] + ["garbage.model"], "is not a model file"),
    ("--out a regular file", RUN + ["--out", "afile"], "cannot write run directory afile"),
    ("--out holds another run", RUN + ["--out", "held"], "holds a different run"),
    ("--dashboard without dask", RUN + ["--dashboard"], "--dashboard goes with --dask-workers"),
    ("tls files, tcp scheduler", RUN + ["--scheduler", "tcp://127.0.0.1:9", "--tls-ca-file", "afile"],
     "--tls-ca-file goes only with a tls:// --scheduler"),
    ("tls scheduler, no files", RUN + ["--scheduler", "tls://127.0.0.1:9"], "needs --tls-ca-file and --tls-cert"),
    ("tls file missing", RUN + ["--scheduler", "tls://127.0.0.1:9", "--tls-ca-file", "no.pem", "--tls-cert", "afile"],
     "--tls-ca-file: cannot read no.pem"),
    ("malformed scheduler", RUN + ["--scheduler", "nohost", "--connect-timeout", "3"], "missing port number"),
    ("connect-timeout 0", RUN + ["--scheduler", "tcp://127.0.0.1:9", "--connect-timeout", "0"],
     "--connect-timeout: expected a number > 0"),
    ("nqcd engine with 2 workers", RUN + ["--engine", "nqcd", "--workers", "2"], "nqcd engine runs in this process"),
    ("curve energies inf", ["curve", *RUN[1:], "--energies", "0.3", "inf"], "--energies: collision energy must be a finite number > 0 eV, got inf"),
    ("curve target-ci 0.7", ["curve", *RUN[1:], "--energies", "0.3", "--target-ci", "0.7"],
     "target CI half-width must be in (0, 0.5)"),
    ("campaign trajectories '10'", ["campaign", "c.toml"], ("trajectories must be an integer, got '10'",
                                                             {"trajectories": '"10"'})),
    ("campaign snapshots '64'", ["campaign", "c.toml"], ("snapshots must be an integer, got '64'",
                                                          {"snapshots": '"64"'})),
    ("campaign lattice_constant '3.6'", ["campaign", "c.toml"], ("lattice_constant must be a number, got '3.6'",
                                                                  {"lattice_constant": '"3.6"'})),
    ("campaign seed 'abc'", ["campaign", "c.toml"], ("seed must be an integer, got 'abc'", {"seed": '"abc"'})),
    ("campaign trajectories 0.5", ["campaign", "c.toml"], ("trajectories must be an integer, got 0.5",
                                                            {"trajectories": "0.5"})),
    ("campaign trajectories 1e12", ["campaign", "c.toml"], ("trajectories must be between 1 and",
                                                             {"trajectories": "1000000000000"})),
    ("campaign T 'hot'", ["campaign", "c.toml"], ("T must be a number, got 'hot'", {"T": '"hot"'})),
    ("campaign T list with 'x'", ["campaign", "c.toml"], ("T must be a number, got 'x'", {"T": '[300, "x"]'})),
    ("campaign batch_size '4'", ["campaign", "c.toml"], ("batch_size must be a positive integer",
                                                          {"batch_size": '"4"'})),
    ("campaign unknown key", ["campaign", "c.toml"], ("unknown keys ['colour']", {"colour": "1"})),
    ("campaign missing key", ["campaign", "c.toml"], ("missing keys ['energies']", {"energies": None})),
    ("campaign negative energy", ["campaign", "c.toml"], ("collision energy must be a finite number > 0 eV",
                                                           {"energies": "[-0.5]"})),
    ("campaign states [[0]]", ["campaign", "c.toml"], ("states must be [v, J] pairs", {"states": "[[0]]"})),
    ("campaign invalid TOML", ["campaign", "c.toml"], ("c.toml: not valid TOML", {"seed": "= 3"})),
    ("campaign file missing", ["campaign", "none.toml"], "cannot read campaign file none.toml"),
    ("campaign workers 0", ["campaign", "--workers", "0", "c.toml"], "--workers: expected a positive integer"),
    ("campaign missing model", ["campaign", "c.toml"], ("model file not found", {"models": '["/nonexistent"]'})),
    ("status of no run directory", ["status", "nowhere"], "nowhere is not a pyscatter run directory"),
    ("status of a store of random bytes", ["status", "store"], "is not a usable pyscatter store"),
    ("report of no run directory", ["report", "nowhere"], "nowhere is not a pyscatter run directory"),
    ("plot of no run directory", ["plot", "nowhere", "--out", "p.png"], "nowhere is not a pyscatter run directory"),
    ("ebk unknown molecule", ["ebk", "--molecule", "N2", "--v", "0", "--J", "0", "--model", "emt"],
     "unknown molecule 'N2'"),
    ("mep images 0", ["mep", "--surface", "111", "--model", "emt", "--images", "0"],
     "--images: expected a positive integer"),
]


@pytest.fixture(scope="module", autouse=True)
def imported():
    """The modules a run imports, imported once: the in-process time limit is on the refusal, not on imports."""
    import pyscatter.analysis.finalstate  # noqa: F401
    import pyscatter.analysis.plotting  # noqa: F401
    import pyscatter.models.emt  # noqa: F401
    import pyscatter.workflows.campaign  # noqa: F401
    import pyscatter.workflows.curve  # noqa: F401
    import pyscatter.workflows.run  # noqa: F401


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working directory with the files the cases refer to; run directories default to ``runs/`` in it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYSCATTER_CONFIG_DIR", str(tmp_path / "config"))
    (tmp_path / "afile").write_text("not a directory")
    (tmp_path / "garbage.model").write_bytes(os.urandom(3000))
    for name, density in (("negative.cube", -1e-3), ("slab.cube", 1e-3)):  # a 5 Å cube: no slab's cell
        with open(tmp_path / name, "w") as handle:
            write_cube(handle, Atoms("Cu", cell=[5.0, 5.0, 5.0]), np.full((5, 5, 5), density))
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "results.sqlite").write_bytes(os.urandom(5000))
    RunStore(tmp_path / "held", EXISTING, {"model_identity": "emt"}).close()
    return tmp_path


def _listing(directory: Path) -> dict:
    """Every path under ``directory``, with size and modification time for files (a store opened and closed
    again leaves its directory's own mtime changed by its transient ``-wal``/``-shm`` files)."""
    return {str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else "dir"
            for p in directory.rglob("*")}


def _refused(argv, capsys, directory: Path) -> str:
    """Run ``main(argv)``: check the refusal (exit 2, one error line, nothing changed); the error line."""
    before = _listing(directory)
    started = time.perf_counter()
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse
        code = exit_.code
    elapsed = time.perf_counter() - started
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("pyscatter: note:")]
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("pyscatter: error: "), err
    assert _listing(directory) == before
    assert elapsed < 5.0
    return lines[0]


@pytest.mark.parametrize("argv, expected", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_refused_in_one_line_before_anything_is_written(argv, expected, workdir, capsys):
    message, changes = expected if isinstance(expected, tuple) else (expected, None)
    if changes is not None:
        (workdir / "c.toml").write_text(_campaign(**changes))
    assert message in _refused(argv, capsys, workdir)


def test_the_table_is_large_enough_and_distinct():
    assert len(CASES) >= 30
    assert len({name for name, *_ in CASES}) == len(CASES)


def test_a_filesystem_without_flock_is_refused_and_left_as_found(workdir, capsys, monkeypatch):
    def no_locks(*args):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    line = _refused(RUN + ["--out", "nfs/run"], capsys, workdir)
    assert "cannot lock run directory nfs/run" in line and "no flock" in line


def test_missing_dask_is_one_line(workdir, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    line = _refused(RUN + ["--dask-workers", "2"], capsys, workdir)
    assert line == ("pyscatter: error: Dask execution needs the optional dependency distributed: "
                    "pip install 'pyscatter[dask]'")


@pytest.mark.parametrize("argv", [
    ["run", "--surface", "111", "--T", "300", "--v", "-1", "--J", "0"],
    ["run", "--surface", "111", "--T", "300", "--v", "0", "--J", "0", "--trajectories", "1000000000000"],
    ["run", "--surface", "112", "--T", "300", "--v", "0", "--J", "0"],
    ["campaign", "none.toml"],
], ids=["v -1", "trajectories 1e12", "unknown surface", "campaign file missing"])
def test_refusal_as_a_process(argv, tmp_path):
    """The real exit code, stderr and time of a ``pyscatter`` process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    done = subprocess.run([*PYSCATTER, *argv], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert time.perf_counter() - started < 5.0
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("pyscatter: error: "), done.stderr
    assert list(tmp_path.iterdir()) == []


def test_run_directories_with_url_characters_work(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    weird = "a#b?c%d e"
    assert main(RUN + TINY + ["--out", weird]) == 0
    assert main(["status", weird, "--json"]) == 0
    assert '"n_done": 2' in capsys.readouterr().out
    assert main(["report", weird]) == 0
    assert main(["plot", weird, "--out", f"{weird}/curve.png", "--no-fit"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [weird]
    written = {p.name for p in (tmp_path / weird).iterdir()} - {"final_states.png"}  # only with scattered molecules
    assert written == {".lock", "results.sqlite", "thermal_snapshots.npz", "final_states.csv", "final_states_v.csv",
                       "final_states_J.csv", "curve.png", "reactivity_map.png", "reactivity_sites.csv",
                       "reactivity_orientation.csv"}


@pytest.mark.parametrize("error, line", [
    (__import__("sqlite3").OperationalError("database is locked"), "OperationalError: database is locked"),
    (MemoryError(), "MemoryError"),
    (OverflowError("int too large\nto convert"), "OverflowError: int too large to convert"),
    (ImportError("No module named 'numba'"), "No module named 'numba'"),
    (PermissionError(13, "Permission denied", "run/results.sqlite"), "[Errno 13] Permission denied: 'run/results.sqlite'"),
], ids=["sqlite3.Error", "MemoryError", "OverflowError", "ImportError", "OSError"])
def test_errors_of_any_layer_are_one_line(error, line, workdir, capsys, monkeypatch):
    import pyscatter.cli.status

    def fail(args):
        raise error

    monkeypatch.setattr(pyscatter.cli.status, "_status", fail)
    assert _refused(["status", "held"], capsys, workdir) == f"pyscatter: error: {line}"
