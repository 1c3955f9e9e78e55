"""ACE force model against ace-jax's own ASE calculator (analytic radials, float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import add_adsorbate, fcc111

pytest.importorskip("ace_jax")

from conftest import TEACHER, ace_jax_reference, needs_teacher
from pyscatter.models import load_model
from pyscatter.models.ace import load_ace
from pyscatter.models.base import Frame, ModelError, check_species, file_sha256


def slab_with_h2(rng: np.random.Generator, n: int) -> tuple[Frame, np.ndarray]:
    """A 2x2x3 Cu(111) slab with an H2 above it: frame and n randomly displaced copies (Å)."""
    atoms = fcc111("Cu", (2, 2, 3), a=3.6, vacuum=6.0)
    add_adsorbate(atoms, "H", 1.2, "fcc")
    add_adsorbate(atoms, "H", 1.4, "hcp")
    atoms.pbc = (True, True, False)
    return Frame.from_atoms(atoms), atoms.positions + rng.normal(0.0, 0.1, (n, len(atoms), 3))


def test_agrees_with_ace_jax_calculator(model_file):
    frame, x = slab_with_h2(np.random.default_rng(0), 5)
    energies, forces = ace_jax_reference(model_file, frame, x)
    out = load_ace(model_file)(frame, torch.as_tensor(x))
    assert out.energies.dtype == torch.float64 and out.forces.shape == x.shape
    np.testing.assert_allclose(out.energies.numpy(), energies, rtol=0, atol=1e-8)
    np.testing.assert_allclose(out.forces.numpy(), forces, rtol=0, atol=1e-8)
    assert np.abs(forces).max() > 0.1  # the check has something to check


def test_forces_are_the_energy_gradient_also_below_the_radial_tables(model_file):
    """Isolated H2 from 0.1 Å (linear continuation below the tables' 0.2 Å) to 1.5 Å: F = -dE/dr by central differences."""
    model = load_ace(model_file)
    frame = Frame(np.array([1, 1]), np.eye(3) * 20.0, (False, False, False))
    lengths = np.array([0.1, 0.15, 0.199, 0.21, 0.5, 0.74, 1.5])
    step = 1e-6

    def at(r):
        x = np.zeros((len(r), 2, 3))
        x[:, 1, 2] = r
        return model(frame, torch.as_tensor(x))

    slope = (at(lengths + step).energies - at(lengths - step).energies).numpy() / (2 * step)
    forces = at(lengths).forces.numpy()
    np.testing.assert_allclose(forces[:, 1, 2], -slope, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(forces[:, 0], -forces[:, 1], rtol=0, atol=1e-12)


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


def test_ml_pace_export_agrees_with_the_kernel(model_file, tmp_path):
    """ace-jax's exact ML-PACE (.yace) export of the same potential, evaluated by ace-jax's own PACE code
    (the .yace path of load_model), against the compiled kernel on the .npz."""
    from ace_jax.eval import load
    from ace_jax.eval.pace_io import write_yace

    full, _, _ = load(model_file, fold=False)
    write_yace(full, tmp_path / "h2cu.yace")
    frame, x = slab_with_h2(np.random.default_rng(5), 2)
    pace = load_model(str(tmp_path / "h2cu.yace"))
    assert type(pace).__name__ == "PACEModel"
    kernel, other = load_model(model_file)(frame, torch.as_tensor(x)), pace(frame, torch.as_tensor(x))
    np.testing.assert_allclose(other.energies.numpy(), kernel.energies.numpy(), rtol=0, atol=1e-8)
    np.testing.assert_allclose(other.forces.numpy(), kernel.forces.numpy(), rtol=0, atol=1e-8)


def test_load_model_dispatch_and_attributes(model_file):
    model = load_model(model_file)
    assert model.species == frozenset({1, 29}) and model.cutoff == pytest.approx(4.5)
    assert model.dtype == torch.float64 and model.identity.startswith("ace:")


def test_bad_input_is_a_one_line_model_error(model_file, tmp_path):
    garbage = tmp_path / "broken.npz"
    garbage.write_bytes(b"not a zip file")
    for path in (garbage, tmp_path / "missing.yace"):
        with pytest.raises(ModelError) as err:
            load_model(str(path))
        assert "\n" not in str(err.value)
    with pytest.raises(ModelError, match="float64"):
        load_model(model_file, dtype="float32")
    model = load_ace(model_file)
    with pytest.raises(ModelError, match="no parameters for O"):
        check_species(model, np.array([8, 29]))
    water = Frame(np.array([8, 1, 1]), np.eye(3) * 10.0, (False, False, False))
    with pytest.raises(ModelError, match="atomic numbers \\[8\\]"):
        model(water, torch.zeros((1, 3, 3)))


@needs_teacher
@pytest.mark.parametrize("surface", ["111", "211"])
def test_default_model_follows_its_teacher_on_the_authors_thermal_slabs(surface, shared_structure):
    """The shipped surrogate (the default model) against the published MACE model it was fitted to, on the
    authors' 925 K Cu(111)/Cu(211) slabs with H2 brought from 7 Å to 2 Å above the top layer (the (211)
    step edge): forces within the issue's bar (RMSE <= 30 meV/Å, H atoms <= 60 meV/Å) and the H2-surface
    energy profile E(h) - E(7 Å) within 50 meV. (At 1.5 Å above the step edge the surrogate is 61 meV
    too repulsive: 0.303 against 0.242 eV.)"""
    from pyscatter.models import DEFAULT_MODEL
    from pyscatter.models.mace import load_mace

    atoms = shared_structure(f"cu{surface}_h7.0_full_925K.in")
    frame = Frame(atoms.numbers, atoms.cell.array, (True, True, False))
    hydrogen = np.flatnonzero(atoms.numbers == 1)
    top = atoms.positions[atoms.numbers == 29, 2].max()
    x = np.repeat(atoms.positions[None], 3, axis=0)
    for k, height in enumerate([7.0, 3.0, 2.0]):
        x[k, hydrogen, 2] += height - (atoms.positions[hydrogen, 2].mean() - top)
    surrogate = load_model(DEFAULT_MODEL)(frame, torch.as_tensor(x))
    teacher = load_mace(TEACHER, dtype=torch.float64, trust=True)(frame, torch.as_tensor(x))
    error = (surrogate.forces - teacher.forces).numpy()
    assert np.sqrt(np.mean(error**2)) <= 0.030
    assert np.sqrt(np.mean(error[:, hydrogen] ** 2)) <= 0.060
    profile = lambda e: (e - e[0]).numpy()
    np.testing.assert_allclose(profile(surrogate.energies), profile(teacher.energies), rtol=0, atol=0.050)


def test_shipped_model_is_the_file_its_provenance_describes(tmp_path, monkeypatch):
    """The provenance record belongs to the shipped file, and the notes a run prints follow it. (Its
    numbers are recomputed elsewhere: the model against ace-jax in test_ace_branches.py, its
    barriers against the teacher's in test_default_model.py, its forces against the teacher above.)"""
    import json

    import pyscatter.models
    from pyscatter.models import BARRIER_TOLERANCE, SHIPPED, model_notes

    path = SHIPPED["h2cu-ace"]
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["sha256"] == file_sha256(str(path))
    assert "demonstration" in model_notes("emt", "111")[0]
    for facet, barrier in record["evaluation"]["barriers"].items():  # the model, its committee and a member alike
        expected = int(abs(barrier["difference_meV"]) > 1e3 * BARRIER_TOLERANCE) + int(facet in record["observable_validation"])
        for name in ("h2cu-ace", "h2cu-ace-committee", "h2cu-ace-committee#3"):
            assert len(model_notes(name, facet)) == expected, (name, facet)
    # a record with a missed barrier and a departure on the observable: runs there say both, through the committee too
    record["evaluation"]["barriers"]["211"].update(difference_meV=37.0, surrogate_eV=0.539, teacher_eV=0.502)
    record["observable_validation"] = {"211": "tends to be less reactive than its MACE teacher on Cu(211)"}
    (tmp_path / "model.json").write_text(json.dumps(record))
    (tmp_path / "committee.json").write_text(SHIPPED["h2cu-ace-committee"].with_suffix(".json").read_text())
    monkeypatch.setattr(pyscatter.models, "SHIPPED", {"h2cu-ace": tmp_path / "model.npz", "h2cu-ace-committee": tmp_path / "committee.npz"})
    for name in ("h2cu-ace", "h2cu-ace-committee", "h2cu-ace-committee#3"):
        notes = model_notes(name, "211")
        assert any("less reactive than its MACE teacher on Cu(211)" in note for note in notes)
        assert any("misses its teacher's Cu(211) dissociation barrier by +37 meV (0.539 against 0.502 eV)" in note for note in notes)
