"""EMTModel against ASE's own EMT on every metal of ASE's EMT table, H2 above each facet: energies and forces to
1e-10 eV and eV/Å; and each metal's 0 K lattice constant against an equation-of-state fit of ASE's EMT."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.data import atomic_numbers, reference_states
from ase.eos import EquationOfState

from pyscatter.conditions import FACETS
from pyscatter.initial.surface import build_slab, lattice_constant_0K
from pyscatter.models.base import Frame
from pyscatter.models.emt import EMTModel

EMT_METALS = ("Al", "Ni", "Cu", "Pd", "Ag", "Pt", "Au")
"""The fcc metals of ASE's EMT parameter table."""
TOLERANCE = 1e-10


@pytest.fixture(scope="module")
def model():
    return EMTModel()


def h2_on_slab(metal: str, facet: str, seed: int) -> tuple[Frame, np.ndarray]:
    """Rattled metal(facet) slabs at ASE's reference lattice constant with H2 far above, near, stretched across
    and dissociated over the surface, one batch (Å)."""
    rng = np.random.default_rng(seed)
    slab = build_slab(facet, reference_states[atomic_numbers[metal]]["a"], metal)
    top = slab.atoms.positions[slab.top_layer].mean(0)
    frame = Frame(np.r_[slab.atoms.numbers, 1, 1], slab.atoms.cell.array, (True, True, False))
    positions = []
    for height, bond in ((7.0, 0.74), (1.5, 0.8), (1.1, 1.6), (0.9, 3.0)):
        metal_atoms = slab.atoms.positions + 0.08 * rng.standard_normal(slab.atoms.positions.shape)
        hydrogen = top + [0.3, 0.2, height] + np.outer([-0.5, 0.5], [bond, 0.1, 0.0])
        positions.append(np.r_[metal_atoms, hydrogen])
    return frame, np.array(positions)


@pytest.mark.parametrize("facet", FACETS)
@pytest.mark.parametrize("metal", EMT_METALS)
def test_energies_and_forces_equal_ase_emt(model, metal, facet):
    frame, positions = h2_on_slab(metal, facet, seed=EMT_METALS.index(metal) * 10 + FACETS.index(facet))
    out = model(frame, torch.from_numpy(positions))
    for b, p in enumerate(positions):
        atoms = frame.atoms(p)
        atoms.calc = EMT()
        assert out.energies[b].item() == pytest.approx(atoms.get_potential_energy(), rel=0, abs=TOLERANCE)
        np.testing.assert_allclose(out.forces[b].numpy(), atoms.get_forces(), rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("metal", EMT_METALS)
def test_lattice_constant_is_the_minimum_of_ase_emt(model, metal):
    a0 = lattice_constant_0K(model, metal)
    volumes, energies = [], []
    for a in np.linspace(a0 - 0.03, a0 + 0.03, 7):
        cell = bulk(metal, "fcc", a=a, cubic=True)
        cell.calc = EMT()
        volumes.append(cell.get_volume())
        energies.append(cell.get_potential_energy())
    v0, _, _ = EquationOfState(volumes, energies).fit()
    assert a0 == pytest.approx(v0 ** (1 / 3), abs=1e-4)
