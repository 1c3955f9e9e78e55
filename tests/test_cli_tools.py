"""`pyscatter model eval` against ASE's EMT, and `pyscatter ebk` output."""

import json

import numpy as np
import pytest
from ase.build import fcc111, molecule
from ase.calculators.emt import EMT
from ase.io import read, write

from pyscatter.cli.main import main


def test_model_eval_matches_ase_emt(tmp_path):
    structures = []
    for shift in (0.0, 0.4, 1.5):
        slab = fcc111("Cu", (3, 3, 4), vacuum=8.0, a=3.6)
        slab.pbc = (True, True, False)
        h2 = molecule("H2")
        h2.positions += slab.positions[-1] + [0.3, 0.2, 1.2 + shift]
        atoms = slab + h2
        atoms.rattle(0.03, seed=int(shift * 10))
        atoms.info.clear()
        structures.append(atoms)
    write(tmp_path / "in.xyz", structures)
    assert main(["model", "eval", "--model", "emt", "--input", str(tmp_path / "in.xyz"),
                 "--output", str(tmp_path / "out.xyz")]) == 0
    for ours, ref in zip(read(tmp_path / "out.xyz", index=":"), read(tmp_path / "in.xyz", index=":")):
        ref.calc = EMT()
        assert abs(ours.get_potential_energy() - ref.get_potential_energy()) < 1e-8
        np.testing.assert_allclose(ours.get_forces(), ref.get_forces(), atol=1e-6)


def test_ebk_json(capsys):
    assert main(["ebk", "--molecule", "D2", "--v", "1", "--J", "2", "--json"]) == 0
    level = json.loads(capsys.readouterr().out)
    assert level["molecule"] == "D2" and (level["v"], level["J"]) == (1, 2)
    assert level["r_inner_A"] < level["r_outer_A"]
    assert level["energy_eV"] > 0 and level["period_fs"] > 0


def test_ebk_of_the_readme_state_on_the_default_model_recomputed():
    """`pyscatter ebk --molecule H2 --v 1 --J 1` (default model h2cu-ace) against an EBK calculation done
    here on the model's own energies: the turning points lie on one energy of U(r) = V(r) + J(J+1)ħ²/(2μr²),
    the action between them is 2πħ(v + ½), the period is d(action)/dE, and the level is H2's: 0.80 eV
    above the minimum (spectroscopic: ZPE 0.270 + fundamental 0.516 + J=1 0.015 eV), 8.4 fs."""
    import io
    from contextlib import redirect_stdout

    import torch
    from ase import units
    from ase.data import atomic_masses

    from pyscatter.models import load_model
    from pyscatter.models.base import Frame

    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["ebk", "--molecule", "H2", "--v", "1", "--J", "1", "--json"]) == 0
    level = json.loads(out.getvalue())

    model = load_model("h2cu-ace")
    frame = Frame(np.array([1, 1]), np.eye(3) * 30.0, (False, False, False))

    def V(r):
        x = np.zeros((len(r), 2, 3))
        x[:, 1, 2] = r
        return model(frame, torch.as_tensor(x), compute_forces=False).energies.numpy()

    hbar = units._hbar / units._e * units.s  # eV x ASE time
    mu = atomic_masses[1] / 2
    J, v = 1, 1
    U = lambda r: V(r) + J * (J + 1) * hbar**2 / (2 * mu * r**2)
    grid = np.linspace(0.4, 3.0, 26001)
    minimum = V(grid).min()
    r_in, r_out = level["r_inner_A"], level["r_outer_A"]
    e_in, e_out = U(np.array([r_in, r_out]))
    assert e_in == pytest.approx(e_out, abs=1e-4)
    assert level["energy_eV"] == pytest.approx(e_in - minimum, abs=1e-3)

    def action(energy):
        r = np.linspace(r_in - 0.02, r_out + 0.05, 40001)
        p = np.sqrt(np.clip(2 * mu * (energy - U(r)), 0.0, None))
        return 2 * np.trapezoid(p, r)

    assert action(e_in) == pytest.approx(2 * np.pi * hbar * (v + 0.5), rel=2e-3)
    period_fs = (action(e_in + 1e-3) - action(e_in - 1e-3)) / 2e-3 / units.fs
    assert level["period_fs"] == pytest.approx(period_fs, rel=0.01)
    assert level["energy_eV"] == pytest.approx(0.801, abs=0.03)
    assert 8.0 < level["period_fs"] < 8.8
