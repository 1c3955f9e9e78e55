"""The seam's force-model wrapper: only moved structures are evaluated, with ASE's EMT as the reference."""

import numpy as np
import torch
from ase.build import add_adsorbate, fcc111, molecule
from ase.calculators.emt import EMT

from pyscatter.workflows.execution import SkipUnchanged
from pyscatter.models.base import Frame
from pyscatter.models.emt import EMTModel


class Counting:
    def __init__(self, model):
        self.model, self.evaluated = model, 0

    def __call__(self, frame, positions, compute_forces=True):
        self.evaluated += positions.shape[0]
        return self.model(frame, positions, compute_forces)


def _ase(atoms, positions):
    atoms = atoms.copy()
    atoms.positions = positions
    atoms.calc = EMT()
    return atoms.get_potential_energy(), atoms.get_forces()


def test_only_structures_that_moved_are_evaluated_and_results_match_ase():
    atoms = fcc111("Cu", (2, 2, 3), a=3.6, vacuum=8.0)
    add_adsorbate(atoms, molecule("H2"), 2.0, "ontop")
    rng = np.random.default_rng(1)
    batch = np.stack([atoms.positions + rng.normal(0, 0.05, atoms.positions.shape) for _ in range(4)])
    counting = Counting(EMTModel())
    model = SkipUnchanged(counting)
    frame = Frame.from_atoms(atoms)
    model(frame, torch.as_tensor(batch))
    moved = batch.copy()
    moved[[1, 3]] += rng.normal(0, 0.05, moved[[1, 3]].shape)
    out = model(frame, torch.as_tensor(moved))
    assert counting.evaluated == 4 + 2
    for b in range(4):
        energy, forces = _ase(atoms, moved[b])
        assert abs(float(out.energies[b]) - energy) < 1e-8
        np.testing.assert_allclose(out.forces[b].numpy(), forces, atol=1e-8)
    model(frame, torch.as_tensor(moved))
    assert counting.evaluated == 6  # nothing moved: nothing evaluated
