"""Every product branch of the compiled ACE kernel against ace-jax's own ``ACECalculator``.

The kernel (:mod:`pyscatter.models.ace_kernel`) evaluates correlation orders 1-4 in separate
branches; here each is compared with ace-jax on H/Cu bases of correlation order 2, 3 and 4 and on
the shipped default model itself (order 3, degree 12), over Cu slabs with H2 and with H atoms
1.0-1.5 Å from a Cu atom (the repulsive wall a trajectory reaches). Energies in eV, forces in eV/Å,
agreement to 1e-8.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from ase.build import add_adsorbate, fcc111

pytest.importorskip("ace_jax")

from conftest import ace_jax_reference
from pyscatter.models import SHIPPED, load_model
from pyscatter.models.ace import load_ace
from pyscatter.models.base import Frame

TOLERANCE = 1e-8
RELATIVE = 1e-9  # forces: the kernel's tabulated radials agree to ~1e-9 relative (the shipped model has 20 eV/Å at its walls)
R0 = np.array([[0.74, 1.67], [1.67, 2.6]])  # ace-jax's length scale per species pair (H, Cu), Å


def random_linear_ace(path, order: int, degree: int, seed: int) -> str:
    """A linear H/Cu ACE potential of correlation ``order`` and total ``degree`` with random coefficients
    (ace-jax basis, written as ace-jax writes fitted models)."""
    from ace_jax.basis.export import save_npz
    from ace_jax.basis.model import build_model
    from ace_jax.eval import load
    from ace_jax.fit.inducing import GPConfig
    from ace_jax.fit.pipeline.export import linear_arrays_from_mean

    basis = build_model([1, 29], order, degree, rcut=4.5, r0=R0)
    buffer = io.BytesIO()
    save_npz(buffer, basis)
    buffer.seek(0)
    _, meta, arrays = load(buffer)
    cfg = GPConfig(r0=1.0, rcut=4.5, n_B=meta["n_B"], n_pair=meta["n_pair"], NZ=2, C=1)
    coefficients = np.random.default_rng(seed).normal(0.0, 0.05, cfg.len_basis)
    np.savez(path, **linear_arrays_from_mean(arrays, np.array([-1.1, -3.7]), cfg, coefficients))
    return str(path)


def structures(n: int, seed: int) -> tuple[Frame, np.ndarray]:
    """A 2x2x3 Cu(111) slab (periodic in x, y) with two H atoms: n configurations (n, 14, 3), Å.

    The first H is 1.0 to 1.5 Å (evenly spaced over the n) from the top-layer Cu atom it sits on, the second 0.6-1.6 Å from the
    first (H2 from compressed to nearly dissociated), every Cu rattled by 0.05 Å.
    """
    rng = np.random.default_rng(seed)
    atoms = fcc111("Cu", (2, 2, 3), a=3.6, vacuum=6.0)
    add_adsorbate(atoms, "H", 1.2, "ontop")
    add_adsorbate(atoms, "H", 1.9, "ontop")
    atoms.pbc = (True, True, False)
    frame = Frame.from_atoms(atoms)
    top = np.flatnonzero(atoms.numbers == 29)[-1]  # the ontop site's Cu (the last, top-layer atom)
    x = np.repeat(atoms.positions[None], n, axis=0)
    x[:, :-2] += rng.normal(0.0, 0.05, (n, len(atoms) - 2, 3))
    for k, h_cu in enumerate(np.linspace(1.0, 1.5, n)):
        direction = rng.normal(size=3) * [0.3, 0.3, 0.0] + [0.0, 0.0, 1.0]
        x[k, -2] = x[k, top] + h_cu * direction / np.linalg.norm(direction)
        bond = rng.normal(size=3)
        x[k, -1] = x[k, -2] + rng.uniform(0.6, 1.6) * bond / np.linalg.norm(bond)
        if x[k, -1, 2] < x[k, -2, 2]:  # keep the second H above the first, away from the Cu below
            x[k, -1, 2] = 2 * x[k, -2, 2] - x[k, -1, 2]
    return frame, x


def shortest_h_cu(frame: Frame, positions: np.ndarray) -> np.ndarray:
    """Shortest H–Cu distance (minimum image) per configuration, Å."""
    from ase.geometry import get_distances

    h, cu = frame.numbers == 1, frame.numbers == 29
    return np.array([get_distances(x[h], x[cu], cell=frame.cell, pbc=frame.pbc)[1].min() for x in positions])


def assert_agrees(path: str, frame: Frame, positions: np.ndarray) -> None:
    energies, forces = ace_jax_reference(path, frame, positions)
    out = load_ace(path)(frame, torch.as_tensor(positions))
    np.testing.assert_allclose(out.energies.numpy(), energies, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(out.forces.numpy(), forces, rtol=RELATIVE, atol=TOLERANCE)
    # the comparison has something to compare: large forces on the H atoms at the repulsive wall
    assert np.abs(forces[:, -2:]).max() > 1.0


@pytest.mark.parametrize("order, degree", [(2, 8), (3, 8), (4, 6)])
def test_kernel_equals_ace_jax_at_each_correlation_order(order, degree, tmp_path):
    path = random_linear_ace(tmp_path / f"order{order}.npz", order, degree, seed=order)
    tables = load_ace(path).tables
    # the basis reaches the branch under test, on both species
    assert set(np.unique(tables.orders)) == set(range(1, order + 1))
    for z in range(2):
        assert np.any(tables.readout[tables.orders == order, z] != 0.0)
    frame, x = structures(4, seed=10 + order)
    h_cu = shortest_h_cu(frame, x)
    assert h_cu.min() < 1.05 and h_cu.max() <= 1.5 + 1e-9
    assert_agrees(path, frame, x)


def test_shipped_default_model_equals_ace_jax():
    """The file behind ``--model h2cu-ace`` (order 3, degree 12, cutoff 5 Å), evaluated by the kernel through
    load_model, against ace-jax on the same file: the slab + H2 structures above and the README's
    H2 over the 6-layer Cu(111) slab at 2.5 Å."""
    from pyscatter.initial.surface import build_slab

    path = str(SHIPPED["h2cu-ace"])
    model = load_model("h2cu-ace")
    assert set(np.unique(model.tables.orders)) == {1, 2, 3}
    frame, x = structures(3, seed=7)
    energies, forces = ace_jax_reference(path, frame, x)
    out = model(frame, torch.as_tensor(x))
    np.testing.assert_allclose(out.energies.numpy(), energies, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(out.forces.numpy(), forces, rtol=RELATIVE, atol=TOLERANCE)
    assert np.abs(forces[:, -2:]).max() > 1.0

    slab = build_slab("111", 3.63)
    top = slab.atoms.positions[slab.top_layer, 2].mean()
    numbers = np.concatenate([slab.atoms.numbers, [1, 1]])
    big = Frame(numbers, slab.atoms.cell.array, (True, True, False))
    rng = np.random.default_rng(3)
    centre = np.array([2.1, 1.3, top + 2.5])
    y = np.stack([np.vstack([slab.atoms.positions + rng.normal(0, 0.05, slab.atoms.positions.shape),
                             centre - [0.37 + 0.1 * k, 0, 0], centre + [0.37 + 0.1 * k, 0, 0]]) for k in range(2)])
    energies, forces = ace_jax_reference(path, big, y)
    out = model(big, torch.as_tensor(y))
    np.testing.assert_allclose(out.energies.numpy(), energies, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(out.forces.numpy(), forces, rtol=RELATIVE, atol=TOLERANCE)
