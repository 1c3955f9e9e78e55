"""One bad structure in a batch (non-finite positions, two atoms at one place) gives NaN for it alone.

The other structures must equal independent references: ASE's EMT, or a freshly loaded model
evaluating them without the bad one. Units: Å, eV, eV/Å.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import add_adsorbate, fcc111
from ase.calculators.emt import EMT

from pyscatter.models import load_model
from pyscatter.models.base import ASECalculatorModel, Frame
from pyscatter.models.emt import EMTModel

MACE_FILE = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "h2cu_mace_stark2023.model"


def batch_with_bad_members() -> tuple[Frame, np.ndarray, list[int]]:
    """Five Cu(111)+H2 structures (Å): 1 has a NaN, 2 an infinite coordinate, 3 its two H atoms at one place."""
    atoms = fcc111("Cu", (2, 2, 3), a=3.6, vacuum=7.0)
    add_adsorbate(atoms, "H", 1.5, "fcc")
    add_adsorbate(atoms, "H", 1.5, "hcp")
    frame = Frame(atoms.numbers, atoms.cell.array, (True, True, False))
    x = atoms.positions + np.random.default_rng(0).normal(0.0, 0.05, (5, len(atoms), 3))
    x[1, 3, 0] = np.nan
    x[2, -1, 2] = np.inf
    x[3, -1] = x[3, -2]
    return frame, x, [1, 2, 3]


def check(model, reference) -> None:
    """NaN energies and forces for the bad members; the good ones equal ``reference(frame, x_good)``, with
    forces and without, also on the call after the bad ones are healed."""
    frame, x, bad = batch_with_bad_members()
    good = [b for b in range(len(x)) if b not in bad]
    energies, forces = reference(frame, x[good])
    for compute_forces in (True, False):
        out = model(frame, torch.from_numpy(x), compute_forces=compute_forces)
        assert torch.isnan(out.energies[bad]).all()
        np.testing.assert_allclose(out.energies[good].numpy(), energies, rtol=0, atol=1e-8)
        if compute_forces:
            assert torch.isnan(out.forces[bad]).all()
            np.testing.assert_allclose(out.forces[good].numpy(), forces, rtol=0, atol=1e-6)
    healed = x.copy()
    healed[bad] = x[good[0]]
    out = model(frame, torch.from_numpy(healed))
    assert torch.isfinite(out.energies).all() and torch.isfinite(out.forces).all()


def ase_emt(frame: Frame, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ASE's own EMT, one structure at a time: energies (B,) eV, forces (B, N, 3) eV/Å."""
    out = ASECalculatorModel(EMT(), frozenset({1, 29}), 6.0)(frame, torch.from_numpy(positions))
    return out.energies.numpy(), out.forces.numpy()


def fresh_model_reference(load):
    def reference(frame: Frame, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = load()(frame, torch.from_numpy(x))
        return out.energies.numpy(), out.forces.numpy()

    return reference


def test_emt():
    check(EMTModel(), ase_emt)


def test_linear_ace_kernel():
    pytest.importorskip("ace_jax")
    check(load_model("h2cu-ace"), fresh_model_reference(lambda: load_model("h2cu-ace")))


def test_ml_pace(model_file, tmp_path):
    """The .yace path, on the small basis of ``model_file`` (the shipped model's export takes a minute)."""
    pytest.importorskip("ace_jax")
    from ace_jax.eval import load
    from ace_jax.eval.pace_io import write_yace

    full, _, _ = load(model_file, fold=False)
    write_yace(full, tmp_path / "h2cu.yace")
    model = load_model(str(tmp_path / "h2cu.yace"))
    assert type(model).__name__ == "PACEModel"
    check(model, fresh_model_reference(lambda: load_model(str(tmp_path / "h2cu.yace"))))


@pytest.mark.skipif(not MACE_FILE.is_file(), reason=f"needs {MACE_FILE}")
@pytest.mark.filterwarnings("ignore")
def test_mace():
    load = lambda: load_model(str(MACE_FILE), dtype="float64", trust=True)  # noqa: E731
    check(load(), fresh_model_reference(load))
