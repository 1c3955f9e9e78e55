"""`pyscatter model compile`, `pyscatter bench force-call` and their bad-input errors.

Compiled models are checked against mace's own MACECalculator on the source file (eV, eV/Å);
bad input must give a one-line ``pyscatter: error: ...`` and a non-zero exit status.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import fcc111
from ase.io import write

from pyscatter.cli.main import main
from pyscatter.models import Frame, load_model

pytest.importorskip("mace")
pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),  # mace notices
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # torch.jit in e3nn/mace
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]



@pytest.fixture(scope="module")
def tiny_mace(tmp_path_factory):
    """A whole-module random-weight H/Cu MACE file (float32, r_max 4 Å)."""
    from pyscatter.models.mace import random_mace

    path = tmp_path_factory.mktemp("models") / "tiny.model"
    torch.save(random_mace((1, 29), hidden_irreps="8x0e", max_ell=1, r_max=4.0), path)
    return path


def _fails(argv: list[str], capsys, match: str) -> None:
    """``pyscatter argv`` exits non-zero with one ``pyscatter: error:`` line containing ``match``."""
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse errors
        code = exit_.code
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.startswith("pyscatter: error:") and "\n" not in err, err
    assert match in err, err


def test_compile_equals_mace_calculator_in_float64(tiny_mace, tmp_path, capsys):
    from mace.calculators import MACECalculator

    out = tmp_path / "tiny_compiled.model"
    assert main(["model", "compile", str(tiny_mace), str(out), "--dtype", "float64", "--trust-model"]) == 0
    assert "float64" in capsys.readouterr().out
    assert isinstance(torch.jit.load(str(out)), torch.jit.ScriptModule)
    model = load_model(str(out))
    atoms = fcc111("Cu", (2, 2, 3), a=3.6, vacuum=5.0)
    top = atoms.positions[:, 2].max()
    atoms += Atoms("H2", positions=[[1.0, 1.0, top + 1.5], [1.8, 1.0, top + 1.5]])
    atoms.pbc = (True, True, False)
    atoms.rattle(0.05, seed=1)
    ours = model(Frame.from_atoms(atoms), torch.from_numpy(atoms.positions[None].copy()))
    atoms.calc = MACECalculator(model_paths=str(tiny_mace), device="cpu", default_dtype="float64")
    assert abs(float(ours.energies[0]) - atoms.get_potential_energy()) < 1e-7
    np.testing.assert_allclose(ours.forces[0].numpy(), atoms.get_forces(), rtol=0, atol=1e-7)


def test_compile_keeps_the_model_dtype_by_default(tiny_mace, tmp_path, capsys):
    out = tmp_path / "tiny_compiled.model"
    assert main(["model", "compile", str(tiny_mace), str(out), "--trust-model"]) == 0
    assert "TorchScript, float32, species H Cu, cutoff 4 Å" in capsys.readouterr().out


def test_bench_force_call_json(tiny_mace, capsys):
    argv = ["bench", "force-call", "--model", "emt", "--model", str(tiny_mace), "--batch-sizes", "1", "2", "--trust-model"]
    assert main([*argv, "--dtype", "float64", "--quick", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_atoms"] == 56 and result["threads"] == 1
    rows = {(r["model"], r["backend"]): r for r in result["rows"]}
    assert set(rows) == {
        ("emt", "pyscatter EMTModel"),
        ("tiny.model", "mace MACECalculator"),
        ("tiny.model", "pyscatter MACEModel"),
    }
    ours, reference = rows["tiny.model", "pyscatter MACEModel"], rows["tiny.model", "mace MACECalculator"]
    assert ours["reference_ms"] == reference["force_call_ms"] > 0
    assert ours["ratio_b1"] == pytest.approx(ours["force_call_ms"] / reference["force_call_ms"])
    assert all(ms > 0 for ms in ours["per_structure_ms"].values()) and set(ours["per_structure_ms"]) == {"1", "2"}
    assert ours["dtype"] == reference["dtype"] == "float64"
    assert rows["emt", "pyscatter EMTModel"]["reference_ms"] is None


def test_bench_force_call_against_a_teacher(tiny_mace, capsys):
    argv = ["bench", "force-call", "--model", "emt", "--teacher", str(tiny_mace), "--batch-sizes", "1", "2", "--quick", "--trust-model"]
    assert main([*argv, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [(r["model"], r["backend"]) for r in rows] == [("tiny.model", "teacher: pyscatter MACEModel"), ("tiny.model", "pyscatter EMTModel emt")]
    teacher, student = rows
    assert student["reference_ms"] == min(teacher["per_structure_ms"].values()) > 0
    assert set(student["per_structure_ms"]) == set(teacher["per_structure_ms"]) == {"1", "2"}
    assert main(argv) == 0
    assert "cheaper per structure than the teacher" in capsys.readouterr().out


# ---- bad input -------------------------------------------------------------------------------


def test_compile_missing_file(tmp_path, capsys):
    argv = ["model", "compile", str(tmp_path / "absent.model"), str(tmp_path / "out.model")]
    _fails(argv, capsys, "no MACE model file")


def test_compile_truncated_file(tiny_mace, tmp_path, capsys):
    truncated = tmp_path / "truncated.model"
    truncated.write_bytes(tiny_mace.read_bytes()[: tiny_mace.stat().st_size // 2])
    _fails(["model", "compile", str(truncated), str(tmp_path / "out.model")], capsys, "truncated")


def test_compile_non_mace_files(tmp_path, capsys):
    text = tmp_path / "notes.model"
    text.write_text("not a model\n")
    _fails(["model", "compile", str(text), str(tmp_path / "out.model")], capsys, "not a torch model file")
    weights = tmp_path / "dict.model"
    torch.save({"weights": torch.zeros(3)}, weights)
    _fails(["model", "compile", str(weights), str(tmp_path / "out.model")], capsys, "not a MACE model")


def test_compile_torchscript_input(tiny_mace, tmp_path, capsys):
    compiled = tmp_path / "compiled.model"
    assert main(["model", "compile", str(tiny_mace), str(compiled), "--trust-model"]) == 0
    capsys.readouterr()
    _fails(["model", "compile", str(compiled), str(tmp_path / "again.model")], capsys, "already TorchScript")


def test_unsupported_dtype(tiny_mace, tmp_path, capsys):
    _fails(["model", "compile", str(tiny_mace), str(tmp_path / "out.model"), "--dtype", "float16", "--trust-model"], capsys, "float16")
    _fails(["bench", "force-call", "--model", str(tiny_mace), "--dtype", "bfloat16"], capsys, "bfloat16")


def test_finetune_bad_inputs(tiny_mace, tmp_path, capsys):
    data = tmp_path / "data.xyz"
    data.write_text("")
    common = ["--train", str(data), "--out", str(tmp_path / "out.model"), "--trust-model"]
    _fails(["model", "finetune", "--foundation", str(tmp_path / "absent.model"), "--freeze", "1", *common],
           capsys, "no MACE model file")
    _fails(["model", "finetune", "--foundation", str(tiny_mace), "--freeze", "4", *common], capsys, "--freeze")
    _fails(["model", "finetune", "--foundation", str(tiny_mace), "--freeze", "1", "--train",
            str(tmp_path / "absent.xyz"), "--out", str(tmp_path / "out.model"), "--trust-model"], capsys, "no training data file")
    _fails(["model", "finetune", "--foundation", str(tiny_mace), "--freeze", "1", *common], capsys, "cannot read")
    unlabelled = tmp_path / "unlabelled.xyz"
    write(unlabelled, [fcc111("Cu", (2, 2, 2), a=3.6, vacuum=5.0)], format="extxyz")
    _fails(["model", "finetune", "--foundation", str(tiny_mace), "--freeze", "1", "--train", str(unlabelled),
            "--out", str(tmp_path / "out.model"), "--trust-model"], capsys, "lacks energy 'energy' or forces 'forces'")
    compiled = tmp_path / "compiled.model"
    assert main(["model", "compile", str(tiny_mace), str(compiled), "--trust-model"]) == 0
    capsys.readouterr()
    _fails(["model", "finetune", "--foundation", str(compiled), "--freeze", "1", *common], capsys, "TorchScript")


def test_bench_bad_models(tmp_path, capsys):
    from pyscatter.models.mace import random_mace

    _fails(["bench", "force-call", "--model", str(tmp_path / "absent.model")], capsys, "not found")
    h_o = tmp_path / "h_o.model"
    torch.save(random_mace((1, 8), hidden_irreps="4x0e", max_ell=1), h_o)
    _fails(["bench", "force-call", "--model", str(h_o), "--no-reference", "--trust-model"], capsys, "no parameters for Cu")
