"""A :class:`~pyscatter.models.base.ForceModel` as an ASE calculator, for ASE's optimisers and NEB."""

from __future__ import annotations

import torch
from ase.calculators.calculator import Calculator, all_changes

from pyscatter.models.base import ForceModel, Frame


class ForceModelCalculator(Calculator):
    """A :class:`ForceModel` as an ASE calculator (one structure per call; energy eV, forces eV/Å)."""

    implemented_properties = ("energy", "free_energy", "forces")

    def __init__(self, model: ForceModel):
        super().__init__()
        self.model = model

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        positions = torch.as_tensor(self.atoms.positions[None], dtype=torch.float64)
        out = self.model(Frame.from_atoms(self.atoms), positions)
        energy = float(out.energies[0])
        self.results = {"energy": energy, "free_energy": energy, "forces": out.forces[0].numpy().copy()}
