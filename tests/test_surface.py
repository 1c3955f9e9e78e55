"""Slab geometry against the authors' reference slabs; lattice constants; thermal expansion."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.eos import EquationOfState

from pyscatter.initial.surface import (
    FACETS,
    build_slab,
    cu_expansion_coefficient,
    lattice_constant,
    lattice_constant_0K,
    layer_index,
    thermal_expansion_factor,
)
from pyscatter.models.emt import EMTModel

AUTHORS_A = 3.6528


def emt_model():
    """pyscatter's batched EMT (exact against ASE's, tests/test_emt.py): the model the code paths under test use."""
    return EMTModel()


@pytest.mark.parametrize("surface", FACETS)
def test_slab_matches_authors(surface, shared_structure):
    """Same cell, atoms per layer, fixed atoms; layer heights of the ideal slab vs the relaxed reference.

    Measured layer heights, relaxed reference minus ideal (Å, bottom to top layer):
    111: 0, 0, -0.011, -0.013, -0.022, -0.019;  100: 0, 0, 0, 0.003, 0, -0.024;
    110: 0, 0, 0.003, -0.020, 0.042, -0.081;  211 (18 planes): 0 ... -0.039, 0.032, -0.043, -0.146.
    The outermost layer of the open facets relaxes inwards (110: 0.08 Å, 211 step row: 0.15 Å).
    """
    ref = shared_structure(f"cu{surface}_0K.in")
    slab = build_slab(surface, AUTHORS_A)
    atoms = slab.atoms

    assert len(atoms) == len(ref) == 54
    np.testing.assert_allclose(atoms.cell.array, ref.cell.array, atol=1e-3)
    assert tuple(atoms.pbc) == (True, True, False)
    assert slab.fixed.sum() == len(ref.constraints[0].index) == 18
    np.testing.assert_array_equal(atoms.constraints[0].index, np.flatnonzero(slab.fixed))

    layers = layer_index(atoms.positions[:, 2])
    counts = np.bincount(layers)
    z_ref = np.sort(ref.positions[:, 2])
    groups = np.split(z_ref, np.cumsum(counts)[:-1])
    assert np.array_equal([len(g) for g in groups], counts)
    assert np.array_equal(np.bincount(layer_index(z_ref, gap=0.25)), counts)
    ideal = np.array([atoms.positions[layers == i, 2].mean() for i in range(len(counts))])
    relaxed = np.array([g.mean() for g in groups])
    shift = relaxed - ideal
    print(f"Cu({surface}) relaxed minus ideal layer heights / Å:", np.round(shift, 3))

    n_fixed_layers = len(np.unique(layers[slab.fixed]))
    np.testing.assert_allclose(shift[:n_fixed_layers], 0.0, atol=1e-3)
    np.testing.assert_allclose(shift[:-1], 0.0, atol=0.05)
    assert -0.15 < shift[-1] <= 0.0
    assert np.allclose(atoms.positions[slab.top_layer, 2], ideal[-1])


def test_top_layer_and_fixed_atoms():
    for surface in FACETS:
        slab = build_slab(surface, AUTHORS_A)
        z = slab.atoms.positions[:, 2]
        assert len(slab.top_layer) == (3 if surface == "211" else 9)
        assert slab.top_layer_height == pytest.approx(z.max())
        assert z[slab.fixed].max() < z[~slab.fixed].min()
        assert z.min() == 0.0
        assert slab.atoms.cell[2, 2] - z.max() >= 7.0 + 15.0
        assert set(slab.atoms.numbers) == {29}


def test_unknown_facet():
    with pytest.raises(ValueError, match="111, 100, 110, 211"):
        build_slab("311", AUTHORS_A)


def test_emt_lattice_constant_matches_equation_of_state_fit():
    a0 = lattice_constant_0K(emt_model())
    volumes, energies = [], []
    for a in np.linspace(a0 - 0.04, a0 + 0.04, 9):
        cell = bulk("Cu", "fcc", a=a, cubic=True)
        cell.calc = EMT()
        volumes.append(cell.get_volume())
        energies.append(cell.get_potential_energy())
    v0, _, _ = EquationOfState(volumes, energies).fit()
    assert a0 == pytest.approx(v0 ** (1 / 3), abs=1e-4)
    assert a0 == pytest.approx(3.5898, abs=1e-3)


def test_thermal_expansion_of_copper():
    # dL/L relative to room temperature (%), NIST SRM 736: -0.325 at 0 K, +0.946 at 800 K.
    room = thermal_expansion_factor(293.15)
    assert 100 * (1 / room - 1) == pytest.approx(-0.325, abs=0.002)
    assert 100 * (thermal_expansion_factor(800) / room - 1) == pytest.approx(0.946, abs=0.002)
    assert cu_expansion_coefficient(293.15) == pytest.approx(16.6e-6, rel=0.01)
    # a(293 K)/a(0) applied to experiment's a(0) reproduces Cu's room-temperature 3.6149 Å.
    assert 3.6032 * room == pytest.approx(3.6149, abs=5e-4)
    factors = [thermal_expansion_factor(t) for t in (10, 100, 300, 600, 925, 1300)]
    assert np.all(np.diff(factors) > 0)
    for bad in (0.0, -5.0, 1400.0):
        with pytest.raises(ValueError):
            thermal_expansion_factor(bad)


def test_lattice_constant_at_temperature():
    model = emt_model()
    assert lattice_constant(model, 925.0) == pytest.approx(
        lattice_constant_0K(model) * thermal_expansion_factor(925.0), rel=1e-12
    )
