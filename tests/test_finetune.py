"""`pyscatter model finetune`: mace's trainer with frozen parameter groups (MACE-freeze).

A tiny random-weight foundation model is fine-tuned for 2 epochs on EMT-labelled H2/Cu(111)
configurations (eV, eV/Å). The frozen groups must come out bit-identical, the others changed,
and the written TorchScript model must load with ``load_model`` and give forces equal to minus
the finite-difference gradient of its energy. The freeze levels are checked against mace's own
freezing code for every K.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import fcc111
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from pyscatter.cli.main import main
from pyscatter.models import Frame, load_model

pytest.importorskip("mace")
pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),  # ase extxyz, mace notices
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # torch.jit in e3nn/mace
]

FREEZE = 2
FROZEN = ("node_embedding", "interactions")
TRAINED = ("products", "readouts")


def emt_labelled(n: int, seed: int) -> list[Atoms]:
    """``n`` rattled 2x2x2 Cu(111) slabs with H2 0.8-3 Å above, EMT energy and forces attached."""
    rng = np.random.default_rng(seed)
    configurations = []
    for k in range(n):
        atoms = fcc111("Cu", (2, 2, 2), a=3.6, vacuum=5.0)
        atoms.pbc = (True, True, False)
        centre = np.array([1.3, 0.8, atoms.positions[:, 2].max() + rng.uniform(0.8, 3.0)])
        half_bond = 0.5 * rng.uniform(0.7, 1.5) * np.array([1.0, 0.0, 0.0])
        atoms += Atoms("H2", positions=[centre - half_bond, centre + half_bond])
        atoms.rattle(0.05, seed=seed * 100 + k)
        atoms.calc = EMT()
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
        configurations.append(atoms)
    return configurations


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """(foundation parameters, fine-tuned TorchScript path) after one CLI fine-tuning run."""
    from pyscatter.models.mace import random_mace

    tmp = tmp_path_factory.mktemp("finetune")
    foundation = random_mace((1, 29), hidden_irreps="8x0e", max_ell=1, correlation=2, r_max=3.5, seed=1)
    torch.save(foundation, tmp / "foundation.model")
    write(tmp / "train.xyz", emt_labelled(10, seed=0), format="extxyz")
    write(tmp / "valid.xyz", emt_labelled(2, seed=1), format="extxyz")
    out = tmp / "finetuned.model"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")  # the trainer's process; shared 2-core CI machine
        code = main([
            "model", "finetune", "--foundation", str(tmp / "foundation.model"),
            "--train", str(tmp / "train.xyz"), "--valid", str(tmp / "valid.xyz"),
            "--freeze", str(FREEZE), "--epochs", "2", "--batch-size", "5", "--E0s", "average",
            "--dtype", "float64", "--out", str(out), "--trust-model",
        ])
    assert code == 0, (tmp / "finetuned.model.log").read_text()[-2000:]
    return dict(foundation.named_parameters()), out


def test_frozen_groups_bit_identical_and_others_changed(finetuned):
    before, out = finetuned
    after = dict(torch.jit.load(str(out)).named_parameters())
    changed_groups = set()
    for name, value in before.items():
        group = name.split(".")[0]
        same = torch.equal(value.detach().double(), after[name].detach())
        if group in FROZEN:
            assert same, f"frozen parameter {name} changed"
        elif not same:
            changed_groups.add(group)
    assert changed_groups == set(TRAINED)


def test_output_loads_and_forces_are_minus_energy_gradient(finetuned):
    _, out = finetuned
    model = load_model(str(out))
    assert model.dtype == torch.float64 and model.species == frozenset({1, 29}) and model.cutoff == 3.5
    atoms = emt_labelled(1, seed=2)[0]
    frame = Frame.from_atoms(atoms)
    x = torch.from_numpy(atoms.positions[None].copy())
    result = model(frame, x)
    assert torch.isfinite(result.energies).all() and result.forces.abs().max() > 0
    h = 1e-4  # Å
    for atom, axis in [(len(atoms) - 1, 2), (0, 0)]:
        plus, minus = x.clone(), x.clone()
        plus[0, atom, axis] += h
        minus[0, atom, axis] -= h
        gradient = (model(frame, plus, False).energies - model(frame, minus, False).energies) / (2 * h)
        assert abs(float(result.forces[0, atom, axis] + gradient[0])) < 1e-6


@pytest.mark.parametrize("freeze", [0, 1, 2, 3])
def test_freeze_levels_match_mace_freezing(freeze):
    """mace's own ``--freeze`` (as run_train applies it) fixes exactly the documented groups."""
    import argparse

    from mace.tools.scripts_utils import get_params_options

    from pyscatter.models.mace import random_mace
    from pyscatter.models.mace_finetune import MACE_FREEZE, frozen_prefixes

    model = random_mace((1, 29), hidden_irreps="4x0e", max_ell=1)
    for p in model.parameters():
        p.requires_grad_(True)
    args = argparse.Namespace(
        freeze=MACE_FREEZE[freeze], lr_params_factors="{}", lr=0.01, weight_decay=0.0, amsgrad=True, beta=0.9
    )
    get_params_options(args, model)
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    expected = {name for name, _ in model.named_parameters() if name.split(".")[0] in frozen_prefixes(freeze)}
    assert frozen == expected
    assert {name.split(".")[0] for name in frozen} == set(frozen_prefixes(freeze))
