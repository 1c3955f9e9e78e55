"""`pyscatter model eval` against ASE's EMT, and `pyscatter ebk` output."""

import json

import numpy as np
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
