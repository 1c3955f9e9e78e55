"""Pickled model files run code when loaded: refused unless trusted (flag or trust file), payload never run.

Malicious files are built with ``torch.save`` (zip and legacy format) of an object whose
``__reduce__`` opens a marker file for writing: the marker exists only if the payload ran.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pyscatter.cli.main import main
from pyscatter.models import ModelError, load_model
from pyscatter.models.files import file_kind, trust_path

MACE_FILE = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "h2cu_mace_stark2023.model"


class Payload:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.fixture(autouse=True)
def config_dir(tmp_path, monkeypatch) -> Path:
    """A trust file of this test's own."""
    monkeypatch.setenv("PYSCATTER_CONFIG_DIR", str(tmp_path / "config"))
    return tmp_path / "config"


@pytest.fixture(params=["zip", "legacy"])
def malicious(request, tmp_path) -> tuple[Path, Path]:
    """(model file, marker the payload creates), in torch's zip or legacy format, named like a model."""
    marker, path = tmp_path / f"ran-{request.param}", tmp_path / f"innocent-{request.param}.model"
    torch.save(Payload(marker), path, _use_new_zipfile_serialization=request.param == "zip")
    return path, marker


def test_untrusted_pickle_is_refused_and_its_payload_never_runs(malicious, capsys):
    path, marker = malicious
    assert file_kind(path) in ("torch-zip", "torch-pickle")
    with pytest.raises(ModelError) as err:
        load_model(str(path))
    message = str(err.value)
    assert "\n" not in message and "--trust-model" in message and "pyscatter model trust" in message
    assert "pyscatter model compile" in message
    assert main(["model", "compile", str(path), str(path.with_suffix(".pt"))]) == 2
    assert "--trust-model" in capsys.readouterr().err
    assert not marker.exists()


def test_trust_flag_reaches_torch_load(malicious):
    path, marker = malicious
    with pytest.raises(ModelError, match="not a MACE model"):  # unpickled (payload ran), then refused
        load_model(str(path), trust=True)
    assert marker.exists()


def test_trust_file_reaches_torch_load(malicious, config_dir, capsys):
    path, marker = malicious
    assert main(["model", "trust", str(path)]) == 0
    assert trust_path() == config_dir / "trusted_models.json" and trust_path().is_file()
    assert not marker.exists()  # trusting reads bytes only
    with pytest.raises(ModelError, match="not a MACE model"):
        load_model(str(path))
    assert marker.exists()


def test_a_changed_file_is_no_longer_trusted(malicious):
    path, marker = malicious
    assert main(["model", "trust", str(path)]) == 0
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ModelError, match="--trust-model"):
        load_model(str(path))
    assert not marker.exists()


def test_config_dir_defaults_to_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("PYSCATTER_CONFIG_DIR")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert trust_path() == tmp_path / "xdg" / "pyscatter" / "trusted_models.json"


@pytest.mark.skipif(not MACE_FILE.is_file(), reason=f"needs {MACE_FILE}")
@pytest.mark.filterwarnings("ignore")
def test_published_mace_model_needs_trust_and_its_torchscript_does_not(tmp_path, capsys):
    with pytest.raises(ModelError, match="--trust-model"):
        load_model(str(MACE_FILE))
    model = load_model(str(MACE_FILE), trust=True)
    assert model.species == frozenset({1, 29})
    compiled = tmp_path / "compiled.bin"  # any name: the kind is read from the content
    assert main(["model", "compile", str(MACE_FILE), str(compiled), "--trust-model"]) == 0
    assert file_kind(compiled) == "torchscript"
    assert load_model(str(compiled)).species == frozenset({1, 29})


SPEC_ARGS = ["--surface", "111", "--T", "300", "--v", "0", "--J", "0", "--snapshots", "2", "--max-time", "150",
             "--trajectories", "2"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """What commands read besides the model: a labelled xyz, and a finished EMT run directory (``emt-run``)."""
    from ase.build import molecule
    from ase.calculators.emt import EMT
    from ase.io import write

    from pyscatter.conditions import RunSpec, Termination
    from pyscatter.workflows.run import run

    directory = tmp_path_factory.mktemp("inputs")
    h2 = molecule("H2")
    h2.center(vacuum=5.0)
    h2.calc = EMT()
    h2.get_forces()
    write(directory / "h2.xyz", [h2])
    spec = RunSpec(surface="111", temperature=300.0, v=0, J=0, n_snapshots=2, model="emt",
                   termination=Termination(max_time=50.0))
    run(spec, [0.5], 1, out_dir=directory / "emt-run", batch_size=1)
    return directory


def replayed_run(inputs: Path, model: Path, into: Path) -> Path:
    """A copy of the EMT run whose spec names ``model``: a run made with ``--trust-model``, replayed without."""
    import json
    import shutil
    import sqlite3

    directory = into / "pickled-run"
    shutil.copytree(inputs / "emt-run", directory)
    (db,) = directory.glob("*.sqlite")
    with sqlite3.connect(db) as connection:
        spec = json.loads(connection.execute("SELECT value FROM run WHERE key='spec'").fetchone()[0])
        spec["model"] = str(model)
        connection.execute("UPDATE run SET value=? WHERE key='spec'", (json.dumps(spec, sort_keys=True),))
    return directory


COMMANDS = {
    "run": lambda m, w, i: ["run", *SPEC_ARGS, "--model", m, "--out", f"{w}/run"],
    "run --workers 2": lambda m, w, i: ["run", *SPEC_ARGS, "--model", m, "--workers", "2", "--out", f"{w}/run"],
    "run --committee": lambda m, w, i: ["run", *SPEC_ARGS, "--model", "emt", "--committee", "emt", m, "--out", f"{w}/run"],
    "curve": lambda m, w, i: ["curve", *SPEC_ARGS, "--model", m, "--energies", "0.5", "--out", f"{w}/curve"],
    "curve --committee": lambda m, w, i: ["curve", *SPEC_ARGS, "--model", "emt", "--committee", m, "emt",
                                          "--energies", "0.5", "--out", f"{w}/curve"],
    "campaign": lambda m, w, i: ["campaign", str(i / "grid.toml"), "--root", f"{w}/campaign"],
    "replay": lambda m, w, i: ["replay", str(i / "pickled-run"), "--index", "0", "--out", f"{w}/replay.xyz"],
    "ebk": lambda m, w, i: ["ebk", "--v", "0", "--J", "0", "--model", m],
    "mep": lambda m, w, i: ["mep", "--surface", "111", "--model", m, "--out", f"{w}/mep"],
    "model eval": lambda m, w, i: ["model", "eval", "--model", m, "--input", str(i / "h2.xyz"), "--output", f"{w}/e.xyz"],
    "model finetune": lambda m, w, i: ["model", "finetune", "--foundation", m, "--train", str(i / "h2.xyz"),
                                       "--freeze", "1", "--out", f"{w}/tuned.model"],
    "surrogate build": lambda m, w, i: ["surrogate", "build", "--teacher", m, "--out", f"{w}/build"],
    "bench force-call --model": lambda m, w, i: ["bench", "force-call", "--model", m, "--quick"],
    "bench force-call --teacher": lambda m, w, i: ["bench", "force-call", "--model", "emt", "--teacher", m, "--quick"],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_refuses_an_untrusted_pickle_and_creates_nothing(command, malicious, inputs, tmp_path,
                                                                       monkeypatch, capsys):
    path, marker = malicious
    given = tmp_path / "given"
    given.mkdir()
    (given / "grid.toml").write_text(f'facets = ["111"]\nstates = [[0, 0]]\nenergies = [0.5]\nmodels = ["{path}"]\n'
                                     "T = 300\ntrajectories = 2\nsnapshots = 2\nmax_time = 150.0\n")
    (given / "h2.xyz").write_bytes((inputs / "h2.xyz").read_bytes())
    replayed_run(inputs, path, given)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(COMMANDS[command](str(path), work, given)) == 2
    assert "--trust-model" in capsys.readouterr().err
    assert not marker.exists()
    assert list(work.iterdir()) == []


@pytest.mark.parametrize("entry", ["run", "run_curve", "run_curve committee", "replay"])
def test_every_api_entry_refuses_an_untrusted_pickle_and_creates_nothing(entry, malicious, inputs, tmp_path):
    from pyscatter.conditions import RunSpec, Termination
    from pyscatter.workflows.curve import run_curve
    from pyscatter.workflows.replay import replay
    from pyscatter.workflows.run import run

    path, marker = malicious
    out = tmp_path / "out"
    spec = RunSpec(surface="111", temperature=300.0, v=0, J=0, n_snapshots=2, model=str(path),
                   termination=Termination(max_time=50.0))
    emt = RunSpec(surface="111", temperature=300.0, v=0, J=0, n_snapshots=2, model="emt",
                  termination=Termination(max_time=50.0))
    calls = {
        "run": lambda: run(spec, [0.5], 2, out_dir=out),
        "run_curve": lambda: run_curve(spec, [0.5], 2, out=out),
        "run_curve committee": lambda: run_curve(emt, [0.5], 2, out=out, committee=[str(path), "emt"]),
        "replay": lambda: replay(replayed_run(inputs, path, tmp_path), 0),
    }
    with pytest.raises(ModelError, match="--trust-model"):
        calls[entry]()
    assert not marker.exists()
    assert not out.exists()


@pytest.mark.skipif(not MACE_FILE.is_file(), reason=f"needs {MACE_FILE}")
@pytest.mark.filterwarnings("ignore")
def test_a_trusted_pickled_mace_runs_in_worker_processes(inputs, tmp_path, capsys):
    """``pyscatter run --workers 2 --trust-model`` on the published (pickled) MACE: the workers load it again with
    the trust, and the run completes. (A random MACE has no bound H2 to quantise.) The EMT run's slab snapshots and
    20 fs runs keep it to free flight: 2-atom model calls. Without the flag the same command is refused."""
    from pyscatter.outcomes import Outcome
    from pyscatter.store import RunReader

    command = ["run", "--surface", "111", "--T", "300", "--v", "0", "--J", "0", "--snapshots", "2", "--max-time", "20",
               "--trajectories", "4", "--energy", "0.5", "--model", str(MACE_FILE), "--workers", "2",
               "--batch-size", "2", "--snapshots-from", str(inputs / "emt-run")]
    assert main([*command, "--out", str(tmp_path / "refused")]) == 2
    assert "--trust-model" in capsys.readouterr().err
    assert main([*command, "--out", str(tmp_path / "run"), "--trust-model"]) == 0
    with RunReader(tmp_path / "run") as store:
        assert store.provenance["model_reference"]["trust"] is True
        results = store.trajectories(store.condition_id(0.5))
    assert sorted(r.index for r in results) == [0, 1, 2, 3]
    assert all(r.outcome is not Outcome.FAILED for r in results)
