"""The neighbour-list cache shared by the models: select, refilled slots, interleaved frames.

Searches are counted with ``model.neighbours.searches``; results are compared with ASE's EMT and
with freshly loaded models (which search every list anew). Units: Å, eV, eV/Å.
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


def slab_and_molecule(n: int, seed: int = 0) -> tuple[Frame, np.ndarray, Frame, np.ndarray]:
    """n rattled 3x3x3 Cu(111) slabs with H2 (29 atoms) and n free H2 in the same cell (positions Å)."""
    rng = np.random.default_rng(seed)
    atoms = fcc111("Cu", (3, 3, 3), a=3.6, vacuum=7.0)
    add_adsorbate(atoms, "H", 1.5, "fcc")
    add_adsorbate(atoms, "H", 1.5, "hcp")
    slab = Frame(atoms.numbers, atoms.cell.array, (True, True, False))
    x = atoms.positions + rng.normal(0.0, 0.05, (n, len(atoms), 3))
    molecule = Frame(np.array([1, 1]), atoms.cell.array, (True, True, False))
    h2 = np.array([[5.0, 5.0, 14.0], [5.0, 5.0, 14.74]]) + rng.normal(0.0, 0.05, (n, 2, 3))
    return slab, x, molecule, h2


def ase_emt(frame: Frame, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ASE's own EMT, one structure at a time: energies (B,) eV, forces (B, N, 3) eV/Å."""
    out = ASECalculatorModel(EMT(), frozenset({1, 29}), 6.0)(frame, torch.from_numpy(positions))
    return out.energies.numpy(), out.forces.numpy()


@pytest.fixture(scope="module", params=["emt", "ace", "mace"])
def model_kind(request):
    if request.param == "mace" and not MACE_FILE.is_file():
        pytest.skip(f"needs {MACE_FILE}")
    if request.param == "ace":
        pytest.importorskip("ace_jax")
    return request.param


def fresh(kind: str):
    """A newly loaded model of ``kind``, its caches empty."""
    if kind == "emt":
        return EMTModel()
    if kind == "ace":
        return load_model("h2cu-ace")
    return load_model(str(MACE_FILE), dtype="float64", trust=True)


def reference(kind: str, frame: Frame, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Independent results: ASE's EMT, or a freshly loaded model evaluating one structure at a time."""
    if kind == "emt":
        return ase_emt(frame, x)
    model = fresh(kind)
    outs = [model(frame, torch.from_numpy(x[b : b + 1].copy())) for b in range(len(x))]
    model.neighbours.clear()
    return np.array([float(o.energies[0]) for o in outs]), np.array([o.forces[0].numpy() for o in outs])


def assert_close(out, expected: tuple[np.ndarray, np.ndarray], kind: str) -> None:
    e_tol, f_tol = {"emt": (1e-8, 1e-6), "ace": (1e-9, 1e-9), "mace": (1e-7, 1e-7)}[kind]
    np.testing.assert_allclose(out.energies.numpy(), expected[0], rtol=0, atol=e_tol)
    np.testing.assert_allclose(out.forces.numpy(), expected[1], rtol=0, atol=f_tol)


def test_select_keeps_the_lists_of_the_kept_structures(model_kind):
    model = fresh(model_kind)
    slab, x, _, _ = slab_and_molecule(5)
    model(slab, torch.from_numpy(x))
    searches = model.neighbours.searches
    keep = np.array([4, 1, 2])
    model.select(slab, torch.as_tensor(keep))
    moved = x[keep] + 0.02  # within the skin
    out = model(slab, torch.from_numpy(moved))
    assert model.neighbours.searches == searches, "select must not search again"
    assert_close(out, reference(model_kind, slab, moved), model_kind)


def test_a_refilled_slot_alone_is_searched_again(model_kind):
    model = fresh(model_kind)
    slab, x, _, _ = slab_and_molecule(4, seed=1)
    model(slab, torch.from_numpy(x))
    searches = model.neighbours.searches
    _, other, _, _ = slab_and_molecule(1, seed=2)
    x[2] = other[0] + np.array([1.3, 0.4, 0.0])  # a new trajectory in slot 2
    out = model(slab, torch.from_numpy(x))
    parts = 3 if model_kind == "emt" else 1  # EMT: one list per species pair (H-H, H-Cu, Cu-Cu)
    assert model.neighbours.searches - searches == parts
    assert_close(out, reference(model_kind, slab, x), model_kind)


def test_interleaved_frames_keep_their_lists(model_kind):
    model = fresh(model_kind)
    slab, x, molecule, h2 = slab_and_molecule(3, seed=3)
    model(slab, torch.from_numpy(x))
    model(molecule, torch.from_numpy(h2))
    searches = model.neighbours.searches
    for step in range(3):
        model(slab, torch.from_numpy(x + 0.01 * step))
        out = model(molecule, torch.from_numpy(h2 - 0.01 * step))
    assert model.neighbours.searches == searches
    assert_close(out, reference(model_kind, molecule, h2 - 0.02), model_kind)


def test_select_then_growth_without_select_searches_all():
    model = EMTModel()
    slab, x, _, _ = slab_and_molecule(3, seed=4)
    model(slab, torch.from_numpy(x))
    searches = model.neighbours.searches
    out = model(slab, torch.from_numpy(x[:2]))  # a smaller batch without select: searched afresh
    assert model.neighbours.searches - searches == 2 * 3
    assert_close(out, ase_emt(slab, x[:2]), "emt")


def test_least_recently_used_frames_are_dropped():
    model = EMTModel()
    _, _, molecule, h2 = slab_and_molecule(1)
    frames = [Frame(molecule.numbers, molecule.cell * (1.0 + 0.01 * k), molecule.pbc) for k in range(5)]
    for frame in frames:
        model(frame, torch.from_numpy(h2))
    searches = model.neighbours.searches
    model(frames[-1], torch.from_numpy(h2))
    assert model.neighbours.searches == searches
    model(frames[0], torch.from_numpy(h2))  # the fifth frame ago: dropped, searched again
    assert model.neighbours.searches == searches + 1


def distinct_structures() -> tuple[Frame, np.ndarray]:
    """Five Cu(111) 3x3x3 slabs with H2 over different sites at heights 0.9-9 Å above the top layer (rattled
    by 0.05 Å): the lowest and highest H2 lie farther apart than every model's cutoff, and each structure's
    H-Cu pairs are its own, so no structure's lists serve another's."""
    rng = np.random.default_rng(5)
    atoms = fcc111("Cu", (3, 3, 3), a=3.6, vacuum=12.0)
    top = atoms.positions[:, 2].max()
    cell = atoms.cell.array
    sites = [(0.0, 0.0, 0.9), (1 / 3, 1 / 3, 3.2), (2 / 3, 2 / 3, 9.0), (0.5, 0.0, 1.6), (1 / 6, 2 / 3, 6.0)]
    x = []
    for a, b, height in sites:
        centre = a * cell[0] + b * cell[1] + [0.0, 0.0, top + height]
        h2 = centre + np.array([[-0.37, 0.0, 0.0], [0.37, 0.0, 0.0]])
        x.append(np.r_[atoms.positions, h2] + rng.normal(0.0, 0.05, (len(atoms) + 2, 3)))
    frame = Frame(np.r_[atoms.numbers, 1, 1], cell, (True, True, False))
    return frame, np.array(x)


def test_select_of_a_permutation_keeps_each_structures_own_lists(model_kind):
    """select a permutation of structures whose lists differ, move every atom by 0.4 skin (within the skin /
    2 that needs no search) and compare with a fresh evaluation: a select that kept other structures' lists
    (e.g. the first len(keep)) would miss pairs or search again."""
    model = fresh(model_kind)
    frame, x = distinct_structures()
    heights = x[:, -2:, 2].mean(1)
    assert np.diff(np.sort(heights)).min() > 0.6 and np.ptp(heights) > model.cutoff
    model(frame, torch.from_numpy(x))
    searches = model.neighbours.searches
    keep = np.array([3, 0, 4, 2])
    model.select(frame, torch.as_tensor(keep))
    step = np.random.default_rng(6).normal(size=(len(keep), x.shape[1], 3))
    moved = x[keep] + 0.4 * model.skin * step / np.linalg.norm(step, axis=-1, keepdims=True)
    out = model(frame, torch.from_numpy(moved))
    assert model.neighbours.searches == searches, "select must keep each kept structure's lists"
    assert_close(out, reference(model_kind, frame, moved), model_kind)
