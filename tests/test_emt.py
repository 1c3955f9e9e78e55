"""EMTModel against ASE's own EMT (the reference): energies to 1e-8 eV, forces to 1e-6 eV/Å."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, fcc100, fcc110, fcc111, fcc211
from ase.calculators.emt import EMT

from pyscatter.models.base import ForceModel, Frame
from pyscatter.models.emt import EMTModel

E_TOL, F_TOL = 1e-8, 1e-6
SLABS = {
    "111": lambda: fcc111("Cu", (3, 3, 6), a=3.6, vacuum=10.0),
    "111-narrow": lambda: fcc111("Cu", (2, 2, 6), a=3.6, vacuum=10.0),  # 5.1 Å cell: images beyond ±1
    "100": lambda: fcc100("Cu", (3, 3, 6), a=3.6, vacuum=10.0),
    "110": lambda: fcc110("Cu", (3, 2, 6), a=3.6, vacuum=10.0),
    "211": lambda: fcc211("Cu", (3, 3, 6), a=3.6, vacuum=10.0),
}


def ase_reference(frame: Frame, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Energies (B,) eV and forces (B, N, 3) eV/Å from ASE's EMT, one structure at a time."""
    energies, forces = [], []
    for p in positions:
        atoms = frame.atoms(p)
        atoms.calc = EMT()
        energies.append(atoms.get_potential_energy())
        forces.append(atoms.get_forces())
    return np.array(energies), np.array(forces)


def assert_matches_ase(model: EMTModel, frame: Frame, positions: np.ndarray) -> None:
    out = model(frame, torch.from_numpy(positions))
    assert out.energies.dtype == torch.float64 and out.forces.shape == positions.shape
    energies, forces = ase_reference(frame, positions)
    np.testing.assert_allclose(out.energies.numpy(), energies, rtol=0, atol=E_TOL)
    np.testing.assert_allclose(out.forces.numpy(), forces, rtol=0, atol=F_TOL)


def slab_batch(facet: str, seed: int = 0) -> tuple[Frame, np.ndarray]:
    """A rattled Cu slab with H2 in the configurations named in the brief, as one batch."""
    rng = np.random.default_rng(seed)
    slab = SLABS[facet]()
    slab.pbc = (True, True, False)
    top = slab.positions[:, 2].max()
    a, b = slab.cell[0], slab.cell[1]
    centre = 0.4 * a + 0.35 * b
    bond = np.array([1.0, 0.0, 0.0])
    molecules = [
        (centre, top + 7.0, 0.74),  # far above
        (centre, top + 1.4, 0.74),  # near the surface
        (centre, top + 1.2, 1.5),  # stretched
        (centre, top + 1.0, 3.0),  # dissociated
        (centre, top + 2.0, 0.4),  # compressed
        (0.02 * a + 0.5 * b, top + 1.1, 1.2),  # across the cell boundary
        (centre + a + b, top + 1.3, 0.9),  # outside the cell: unwrapped positions
    ]
    frame = Frame(np.concatenate([slab.numbers, [1, 1]]), slab.cell.array, (True, True, False))
    positions = []
    for xy, z, r in molecules:
        rattled = slab.positions + 0.1 * rng.standard_normal(slab.positions.shape)
        h2 = np.array([xy[0], xy[1], z]) + np.outer([-0.5, 0.5], r * bond)
        positions.append(np.concatenate([rattled, h2]))
    return frame, np.array(positions)


def bulk_batch(seed: int = 0) -> list[tuple[Frame, np.ndarray]]:
    """Fully periodic Cu: a rattled cubic 2x2x2 cell and the one-atom fcc cell (60° angles)."""
    rng = np.random.default_rng(seed)
    cubic = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    primitive = bulk("Cu", "fcc", a=3.6)
    batches = []
    for atoms in (cubic, primitive):
        frame = Frame.from_atoms(atoms)
        positions = np.array([atoms.positions + 0.08 * rng.standard_normal(atoms.positions.shape) for _ in range(3)])
        batches.append((frame, positions))
    return batches


def h2_in_box() -> tuple[Frame, np.ndarray]:
    """Isolated H2 (bonded, compressed, and beyond the cutoff: no neighbours) without pbc."""
    frame = Frame(np.array([1, 1]), np.eye(3) * 20.0, (False, False, False))
    positions = np.array([[[10.0, 10.0, 10.0], [10.0 + r, 10.2, 10.1]] for r in (0.74, 0.4, 2.5, 7.0)])
    return frame, positions


ALL_BATCHES = [slab_batch(f) for f in SLABS] + bulk_batch() + [h2_in_box()]
IDS = [f"slab{f}" for f in SLABS] + ["bulk-cubic", "bulk-primitive", "h2-box"]


def test_protocol_attributes():
    model = EMTModel()
    assert isinstance(model, ForceModel)
    assert model.name == "emt" and model.dtype == torch.float64
    assert {1, 29} <= model.species
    assert "emt" in model.identity
    atoms = Atoms("Cu", cell=np.eye(3) * 10)
    calc = EMT()
    calc.initialize(atoms)
    assert model.cutoff == pytest.approx(calc.rc_list, abs=1e-12)


@pytest.mark.parametrize("batch", ALL_BATCHES, ids=IDS)
def test_matches_ase_and_batch_is_bitwise_one_at_a_time(batch):
    frame, positions = batch
    model = EMTModel()
    assert_matches_ase(model, frame, positions)
    together = model(frame, torch.from_numpy(positions))
    for b, p in enumerate(positions):
        alone = EMTModel()(frame, torch.from_numpy(p[None]))
        assert torch.equal(alone.energies[0], together.energies[b])
        assert torch.equal(alone.forces[0], together.forces[b])
    energy_only = model(frame, torch.from_numpy(positions), compute_forces=False)
    assert energy_only.forces is None and torch.equal(energy_only.energies, together.energies)


def test_skin_list_follows_slow_motion():
    """Small steps reuse the lists, larger ones rebuild some; every call agrees with ASE."""
    frame, positions = slab_batch("111", seed=1)
    positions = positions[[1, 2, 3, 5]]
    model = EMTModel(skin=1.0)
    rng = np.random.default_rng(2)
    velocity = np.zeros_like(positions)
    velocity[:, -2:] = rng.normal(0.0, 0.12, (len(positions), 2, 3))  # H: Å per call
    velocity[:, :-2] = rng.normal(0.0, 0.01, (len(positions), frame.n_atoms - 2, 3))
    start, searches = torch.from_numpy(positions), 0
    for _ in range(12):
        before = [g.reference.clone() for g in model._neighbours.groups] if model._neighbours else None
        assert_matches_ase(model, frame, positions)
        if before is not None:
            searches += sum(
                int((~(g.reference == r).all(-1).all(-1)).sum()) for g, r in zip(model._neighbours.groups, before)
            )
        positions = positions + velocity
    metal = model._neighbours.groups[-1]
    assert torch.equal(metal.reference, start), "Cu-Cu list reused"
    assert searches > 0, "H lists were searched again"


def test_replaced_slot_rebuilds_only_that_slot():
    frame, positions = slab_batch("100", seed=3)
    model = EMTModel()
    model(frame, torch.from_numpy(positions))
    references = [g.reference.clone() for g in model._neighbours.groups]
    _, fresh = slab_batch("100", seed=4)
    positions[2] = fresh[4] + np.array([1.2, 0.7, 0.3])  # a new trajectory: every atom elsewhere
    assert_matches_ase(model, frame, positions)
    for group, before in zip(model._neighbours.groups, references):
        changed = ~(group.reference == before).all(-1).all(-1)
        assert changed.nonzero().flatten().tolist() == [2]


def test_result_independent_of_batch_composition_and_list_history():
    """A structure gives the same bits alone, in other batches and after lists built elsewhere."""
    frame, positions = slab_batch("211", seed=5)
    target = torch.from_numpy(positions[3])
    alone = EMTModel()(frame, target[None])
    drifted = EMTModel()
    drifted(frame, torch.from_numpy(positions[[0, 3, 6]]) + 0.3)  # list built 0.52 Å away
    for model, batch, slot in [
        (EMTModel(), positions[[0, 3, 6]], 1),
        (EMTModel(), positions[[3, 1]], 0),
        (EMTModel(), positions[[5, 2, 4, 1, 3]], 4),
        (drifted, positions[[0, 3, 6]], 1),
    ]:
        out = model(frame, torch.from_numpy(batch))
        assert torch.equal(out.energies[slot], alone.energies[0])
        assert torch.equal(out.forces[slot], alone.forces[0])


def test_changed_parameters_match_ase_with_the_same_table(monkeypatch):
    """EMTModel(parameters=...) with H's kappa doubled (the validation tests' model with a barrier) is ASE's EMT with
    that row in its table; the unchanged model differs from it and keeps its identity."""
    import ase.calculators.emt as ase_emt

    row = list(ase_emt.parameters["H"])
    row[4] *= 2.0
    changed = EMTModel(parameters={"H": tuple(row)})
    frame, positions = slab_batch("111", seed=2)
    plain = EMTModel()(frame, torch.from_numpy(positions))
    assert changed.identity != EMTModel().identity and changed.parameters == {"H": tuple(row)}
    monkeypatch.setitem(ase_emt.parameters, "H", tuple(row))
    assert_matches_ase(changed, frame, positions)
    assert not np.allclose(plain.energies.numpy(), changed(frame, torch.from_numpy(positions)).energies.numpy(),
                           atol=1e-3)
