"""ACE force model against ace-jax's own ASE calculator (analytic radials, float64)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from ase.build import add_adsorbate, fcc111

pytest.importorskip("ace_jax")

from pyscatter.models import load_model
from pyscatter.models.ace import load_ace
from pyscatter.models.base import Frame, ModelError, check_species


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> str:
    """A small H/Cu linear ACE basis (ace-jax) with a random readout and E0, as ace-jax writes fitted models."""
    from ace_jax.basis.export import save_npz
    from ace_jax.basis.model import build_model
    from ace_jax.eval import load
    from ace_jax.fit.inducing import GPConfig
    from ace_jax.fit.pipeline.export import linear_arrays_from_mean

    basis = build_model([1, 29], 2, 6, rcut=4.5, r0=np.array([[0.74, 1.67], [1.67, 2.6]]))
    buffer = io.BytesIO()
    save_npz(buffer, basis)
    buffer.seek(0)
    _, meta, arrays = load(buffer)
    cfg = GPConfig(r0=1.0, rcut=4.5, n_B=meta["n_B"], n_pair=meta["n_pair"], NZ=2, C=1)
    coefficients = np.random.default_rng(1).normal(0.0, 0.05, cfg.len_basis)
    path = tmp_path_factory.mktemp("ace") / "h2cu.npz"
    np.savez(path, **linear_arrays_from_mean(arrays, np.array([-1.1, -3.7]), cfg, coefficients))
    return str(path)


def slab_with_h2(rng: np.random.Generator, n: int) -> tuple[Frame, np.ndarray]:
    """A 2x2x3 Cu(111) slab with an H2 above it: frame and n randomly displaced copies (Å)."""
    atoms = fcc111("Cu", (2, 2, 3), a=3.6, vacuum=6.0)
    add_adsorbate(atoms, "H", 1.2, "fcc")
    add_adsorbate(atoms, "H", 1.4, "hcp")
    atoms.pbc = (True, True, False)
    return Frame.from_atoms(atoms), atoms.positions + rng.normal(0.0, 0.1, (n, len(atoms), 3))


def reference(path: str, frame: Frame, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from ace_jax import ACECalculator

    calculator = ACECalculator(path, spline_tol=None)
    energies, forces = [], []
    for x in positions:
        atoms = frame.atoms(x)
        atoms.calc = calculator
        energies.append(atoms.get_potential_energy())
        forces.append(atoms.get_forces())
    return np.array(energies), np.array(forces)


@pytest.mark.parametrize("spline_tol", [None, 1e-12])
def test_agrees_with_ace_jax_calculator(model_file, spline_tol):
    frame, x = slab_with_h2(np.random.default_rng(0), 5)
    energies, forces = reference(model_file, frame, x)
    model = load_ace(model_file, spline_tol=spline_tol)
    out = model(frame, torch.as_tensor(x))
    assert out.energies.dtype == torch.float64 and out.forces.shape == x.shape
    np.testing.assert_allclose(out.energies.numpy(), energies, rtol=0, atol=1e-8)
    np.testing.assert_allclose(out.forces.numpy(), forces, rtol=0, atol=1e-8)
    assert np.abs(forces).max() > 0.1  # the check has something to check


def test_batch_members_and_moved_atoms_match_single_calls(model_file):
    frame, x = slab_with_h2(np.random.default_rng(2), 4)
    model = load_ace(model_file)
    batch = model(frame, torch.as_tensor(x))
    moved = x.copy()
    moved[1, -1] += [0.0, 0.0, 0.8]  # beyond skin/2: this structure's list is rebuilt
    after = model(frame, torch.as_tensor(moved))
    for b in range(len(x)):
        alone = load_ace(model_file)(frame, torch.as_tensor(moved[b : b + 1]))
        np.testing.assert_allclose(after.forces[b].numpy(), alone.forces[0].numpy(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(float(after.energies[b]), float(alone.energies[0]), rtol=0, atol=1e-10)
    assert float(batch.energies[1]) != float(after.energies[1])
    energy_only = model(frame, torch.as_tensor(moved), compute_forces=False)
    assert energy_only.forces is None
    np.testing.assert_allclose(energy_only.energies.numpy(), after.energies.numpy(), rtol=0, atol=1e-10)


def test_float32_close_to_float64(model_file):
    frame, x = slab_with_h2(np.random.default_rng(3), 2)
    energies, forces = reference(model_file, frame, x)
    out = load_model(model_file, dtype="float32")(frame, torch.as_tensor(x))
    np.testing.assert_allclose(out.forces.numpy(), forces, rtol=0, atol=1e-4 * np.abs(forces).max())
    np.testing.assert_allclose(out.energies.numpy(), energies, rtol=0, atol=1e-5 * len(frame.numbers))


def test_load_model_dispatch_and_attributes(model_file):
    model = load_model(model_file)
    assert model.species == frozenset({1, 29}) and model.cutoff == pytest.approx(4.5)
    assert model.dtype == torch.float64 and model.identity.startswith("ace:")
    assert model.identity != load_ace(model_file, spline_tol=None).identity


def test_bad_input_is_a_one_line_model_error(model_file, tmp_path):
    garbage = tmp_path / "broken.npz"
    garbage.write_bytes(b"not a zip file")
    for path in (garbage, tmp_path / "missing.yace"):
        with pytest.raises(ModelError) as err:
            load_model(str(path))
        assert "\n" not in str(err.value)
    model = load_ace(model_file)
    with pytest.raises(ModelError, match="no parameters for O"):
        check_species(model, np.array([8, 29]))
    water = Frame(np.array([8, 1, 1]), np.eye(3) * 10.0, (False, False, False))
    with pytest.raises(ModelError, match="atomic numbers \\[8\\]"):
        model(water, torch.zeros((1, 3, 3)))
