"""The surrogate workflow, scaled down, with EMT as the teacher."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT

pytest.importorskip("ace_jax")

from pyscatter import cli
from pyscatter.initial.surface import build_slab
from pyscatter.models.base import ASECalculatorModel, ModelError
from pyscatter.models.emt import EMTModel
from pyscatter.surrogate.evaluate import error_table
from pyscatter.surrogate.frames import load_frames, load_mep_samples, load_neb
from pyscatter.initial.dissociation import SUNK, dissociation_endpoints
from pyscatter.surrogate.pipeline import build
from pyscatter.surrogate.sample import RecordingModel
from pyscatter.surrogate.select import descriptor
from pyscatter.surrogate.settings import SurrogateError, SurrogateSettings

SMALL = SurrogateSettings(
    facets=("111",), temperatures=(300.0,), states=((0, 0),), collision_energies=(0.3,), trajectories=2,
    dt=0.5, max_time=40.0, initial_height=2.5, n_snapshots=2, equilibration_fs=10.0, n_train=30, n_test=12,
    neb_images=3, neb_steps=15, mep_samples=8, cutoff=4.5, order=2, max_degree=6, batch_size=2, approach_frames=8,
    atom_frames=8, atom_depth=3.0,
)


class CountingEMT(EMTModel):
    calls = 0

    def __call__(self, frame, positions, compute_forces=True):
        CountingEMT.calls += 1
        return super().__call__(frame, positions, compute_forces)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    directory = tmp_path_factory.mktemp("surrogate")
    messages = []
    result = build(directory, EMTModel(), SMALL, progress=messages.append)
    return directory, result, messages


def test_build_writes_every_stage_and_a_usable_surrogate(built):
    directory, result, messages = built
    for name in ("settings.json", "selection.npz", "approach/Cu111_300K.npz", "atoms/Cu111_300K.npz", "neb_Cu111.npz", "mep_samples_Cu111.npz", "gas_phase_h2.npz", "model.npz", "fit.json",
                 "errors.json", "report.md"):
        assert (directory / name).is_file(), name
    assert any(m.startswith("sample 1/1") for m in messages) and any(m.startswith("fit:") for m in messages)
    with np.load(directory / "selection.npz") as z:
        assert len(np.intersect1d(z["train"], z["test"])) == 0 and len(z["test"]) == 12
    held_out = result["errors"]["held_out"]
    assert held_out["n_structures"] == 12
    # the fit learned the teacher: far below the force scale of the held-out frames (EMT, ~1 eV/Å)
    frames = load_frames(directory)
    scale = 1e3 * np.sqrt(np.mean(np.concatenate([f.forces.ravel() for f in frames]) ** 2))
    assert held_out["force_meV_per_A"]["rmse"] < 0.3 * scale
    timing = result["timing"]
    assert timing["teacher_ms"] > 0 and timing["surrogate_ms"] > 0
    assert timing["ratio"] == pytest.approx(timing["teacher_ms"] / timing["surrogate_ms"], rel=1e-12)
    assert result["errors"]["held_out_mep"]["n_structures"] == 5 * 2  # 5 images x 8 copies, every 4th held out
    # the teacher's barrier and band residual are those of the stored teacher band, recomputed here
    barrier = result["barriers"]["111"]
    assert set(result["barriers"]) == {"111"}
    band = load_neb(directory, "111")
    assert barrier["teacher_eV"] == pytest.approx(band.energies.max() - band.energies[0], abs=1e-12)
    assert barrier["difference_meV"] == pytest.approx(1e3 * (barrier["surrogate_eV"] - barrier["teacher_eV"]), abs=1e-9)
    from ase.constraints import FixAtoms

    from pyscatter.models.calculator import ForceModelCalculator
    from pyscatter.surrogate.paths import band_residual

    images = [Atoms(numbers=band.numbers, positions=x, cell=band.cell, pbc=(True, True, False)) for x in band.positions]
    for image in images:
        image.set_constraint(FixAtoms(indices=np.flatnonzero(band.numbers != 1)))
        image.calc = ForceModelCalculator(EMTModel())
    assert barrier["teacher_residual_eV_per_A"] == pytest.approx(band_residual(images), abs=1e-6)
    assert barrier["teacher_residual_eV_per_A"] > SMALL.neb_fmax  # 15 NEB steps: not converged, and it says so
    assert barrier["surrogate_residual_eV_per_A"] > 0
    assert "| held_out |" in (directory / "report.md").read_text()
    assert result["interaction"]["Cu111_300K"]["pairs"] == 2  # 8 pairs, every 4th held out
    assert "| Cu111_300K | 2 |" in (directory / "report.md").read_text()



def test_surrogate_quantises_h2_on_the_teachers_gas_phase_curve(built):
    from pyscatter.initial.molecule import diatomic_potential
    from pyscatter.models.ace import load_ace

    directory, _, _ = built
    teacher = diatomic_potential(EMTModel(), (1, 1))
    surrogate = diatomic_potential(load_ace(directory / "model.npz"), (1, 1))
    assert surrogate.r_e == pytest.approx(teacher.r_e, abs=0.02)


def test_rerun_resumes_without_teacher_calls_and_refuses_other_settings(built):
    directory, result, _ = built
    CountingEMT.calls = 0
    assert build(directory, CountingEMT(), SMALL, progress=lambda m: None) == result
    assert CountingEMT.calls == 0
    other = SurrogateSettings(**{**SMALL.__dict__, "order": 3})
    with pytest.raises(SurrogateError, match="other settings"):
        build(directory, EMTModel(), other)


def test_recorded_frames_are_every_fs_with_the_teachers_labels(built):
    directory, _, _ = built
    (frames,) = load_frames(directory)
    # dt 0.5 fs, record every 1 fs: two slots, <= 41 recorded calls each (40 fs + the first call)
    assert 10 < len(frames.energies) <= 2 * (SMALL.max_time + 1)
    for k in (0, len(frames.energies) - 1):
        atoms = Atoms(numbers=frames.numbers, positions=frames.positions[k], cell=frames.cell, pbc=(True, True, False))
        atoms.calc = EMT()
        assert frames.energies[k] == pytest.approx(atoms.get_potential_energy(), abs=1e-8)
        np.testing.assert_allclose(frames.forces[k], atoms.get_forces(), atol=1e-8)


def test_mep_samples_lie_along_the_teachers_path_with_its_labels(built):
    directory, _, _ = built
    samples, held_out = load_mep_samples(directory, "111")
    path = load_neb(directory, "111").positions  # (5, N, 3)
    assert len(samples.energies) == 5 * SMALL.mep_samples and held_out.sum() == 5 * SMALL.mep_samples // 4
    # every copy of image i is near the segment from image i to i + 1: within 5 sigma of it per H coordinate
    h = samples.numbers == 1
    for k, positions in enumerate(samples.positions):
        i = k // SMALL.mep_samples
        a, b = path[i][h], path[min(i + 1, 4)][h]
        low, high = np.minimum(a, b) - 5 * SMALL.mep_rattle, np.maximum(a, b) + 5 * SMALL.mep_rattle
        assert np.all((positions[h] >= low) & (positions[h] <= high))
    for k in (0, len(samples.energies) - 1):
        atoms = Atoms(numbers=samples.numbers, positions=samples.positions[k], cell=samples.cell, pbc=(True, True, False))
        atoms.calc = EMT()
        assert samples.energies[k] == pytest.approx(atoms.get_potential_energy(), abs=1e-8)
        np.testing.assert_allclose(samples.forces[k], atoms.get_forces(), atol=1e-8)


def _emt_energy(numbers, positions, cell) -> float:
    atoms = Atoms(numbers=numbers, positions=positions, cell=cell, pbc=(True, True, False))
    atoms.calc = EMT()
    return atoms.get_potential_energy()


def _check_pairs(pairs, rows) -> None:
    """Rows 2k, 2k + 1 of ``pairs``: a structure and the same with H2 rigidly lifted to (at least) the larger cutoff + 1 Å
    above the highest Cu atom; ASE's EMT labels, and the lifted copy's energy is the bare slab's plus the free molecule's (out of range)."""
    h = pairs.numbers == 1
    for k in range(len(pairs.energies) // 2):
        near, far = pairs.positions[2 * k], pairs.positions[2 * k + 1]
        np.testing.assert_array_equal(far[~h], near[~h])
        np.testing.assert_allclose(far[h] - far[h][0], near[h] - near[h][0], atol=1e-12)
        clearance = max(SMALL.cutoff, EMTModel().cutoff) + 1.0  # out of range of the teacher and of the fit
        lowest = max(near[h][:, 2].min(), far[~h][:, 2].max() + clearance)  # already out of range: left where it is
        assert far[h][:, 2].min() == pytest.approx(lowest, abs=1e-9)
    for k in rows:
        assert pairs.energies[k] == pytest.approx(_emt_energy(pairs.numbers, pairs.positions[k], pairs.cell), abs=1e-8)
        if k % 2:
            parts = [_emt_energy(pairs.numbers[keep], pairs.positions[k][keep], pairs.cell) for keep in (~h, h)]
            assert pairs.energies[k] == pytest.approx(sum(parts), abs=1e-8)


def test_approach_pairs_place_h2_on_its_way_in_over_the_thermal_slabs(built):
    from pyscatter.initial.thermal import ThermalSnapshots
    from pyscatter.surrogate.placed import APPROACH_BONDS

    directory, _, _ = built
    (pairs,) = load_frames(directory, "approach")
    snapshots = ThermalSnapshots.load(directory / "thermal" / "Cu111_300K.npz").positions
    assert len(pairs.energies) == 2 * SMALL.approach_frames
    np.testing.assert_array_equal(pairs.held_out, np.repeat(np.arange(SMALL.approach_frames) % 4 == 3, 2))
    h = pairs.numbers == 1
    for k in range(SMALL.approach_frames):
        near = pairs.positions[2 * k]
        np.testing.assert_array_equal(near[~h], snapshots[k % len(snapshots)])
        assert APPROACH_BONDS[0] <= np.linalg.norm(near[h][1] - near[h][0]) <= APPROACH_BONDS[1]
        height = near[h][:, 2].mean() - near[~h][-9:, 2].mean()  # the top layer: the last 9 Cu atoms (ordered by height)
        assert SMALL.approach_heights[0] <= height <= SMALL.approach_heights[1]
    _check_pairs(pairs, (0, 1, 2 * SMALL.approach_frames - 1))


def test_separate_h_atoms_lie_in_and_on_the_thermal_slabs_apart_and_clear_of_every_cu_atom(built):
    from pyscatter.initial.thermal import ThermalSnapshots
    from pyscatter.surrogate.placed import ATOM_CLEARANCE, ATOM_HEIGHT, ATOM_SEPARATION

    directory, result, _ = built
    (placed,) = load_frames(directory, "atoms")
    snapshots = ThermalSnapshots.load(directory / "thermal" / "Cu111_300K.npz").positions
    assert len(placed.energies) == SMALL.atom_frames
    np.testing.assert_array_equal(placed.held_out, np.arange(SMALL.atom_frames) % 4 == 3)
    h = placed.numbers == 1
    depths = []
    for k, positions in enumerate(placed.positions):
        np.testing.assert_array_equal(positions[~h], snapshots[k % len(snapshots)])
        atoms = Atoms(numbers=placed.numbers, positions=positions, cell=placed.cell, pbc=(True, True, False))
        a, b = np.flatnonzero(h)
        assert atoms.get_distance(a, b, mic=True) >= ATOM_SEPARATION
        for i in (a, b):
            assert atoms.get_distances(i, np.flatnonzero(~h), mic=True).min() >= ATOM_CLEARANCE
        depths += list(positions[h, 2] - positions[~h][-9:, 2].mean())  # the top layer: the last 9 Cu atoms
        assert placed.energies[k] == pytest.approx(_emt_energy(placed.numbers, positions, placed.cell), abs=1e-8)
    assert -SMALL.atom_depth <= min(depths) < 0.0 < max(depths) <= ATOM_HEIGHT  # under the top layer, and over it
    assert result["errors"]["held_out_atoms"]["n_structures"] == SMALL.atom_frames // 4


def test_frames_marked_not_to_validate_are_fitted_but_never_validated_on(built, tmp_path):
    """The prior strength is chosen on a random validation split; frames with info["validate"] = False (the separate
    H atoms) never enter it. With every frame so marked the split is empty: no validation error, the weakest prior."""
    from pyscatter.surrogate.fit import fit_ace
    from pyscatter.surrogate.frames import pick

    directory, _, _ = built
    frames = load_frames(directory)
    train = pick(frames, np.arange(40))
    assert json.loads((directory / "fit.json").read_text())["validation_rms_weighted"] > 0  # the build validated
    for structure in train:
        structure.info["validate"] = False
    info = fit_ace(train, SMALL, tmp_path / "model.npz", progress=lambda m: None)
    assert info["n_train_frames"] == 40 and (tmp_path / "model.npz").is_file()
    assert info["validation_rms_weighted"] == 0.0 and info["lambda_over_scale"] == pytest.approx(1e-14)


def test_approach_pairs_add_interaction_rows_that_fit_the_teachers_interaction_energy(built, tmp_path):
    """Each approach pair (H2 near the slab, and lifted out of range) also fits the difference of its two energies, the
    teacher's (EMT's) interaction energy. With energy rows weighted down so that forces dominate, the fit's interaction
    energies on those pairs come close to EMT's with the pair rows, and not without them (weight 0)."""
    import dataclasses

    from pyscatter.models.ace import load_ace
    from pyscatter.surrogate.evaluate import predict
    from pyscatter.surrogate.fit import fit_ace
    from pyscatter.surrogate.frames import pick

    directory, _, _ = built
    pairs = load_frames(directory, "approach")[0]
    train = pick([pairs], np.arange(len(pairs.energies)))
    for index, structure in enumerate(train):
        structure.info["pair"] = f"pair {index // 2}"
    teacher = pairs.energies[0::2] - pairs.energies[1::2]
    errors = {}
    for weight in (0.0, 1e4):
        settings = dataclasses.replace(SMALL, energy_weight=1e-3, interaction_weight=weight, validation_fraction=0.0)
        fit_ace(train, settings, tmp_path / f"model_{weight:g}.npz", progress=lambda m: None)
        energies, _ = predict(load_ace(tmp_path / f"model_{weight:g}.npz"), train)
        errors[weight] = np.sqrt(np.mean((energies[0::2] - energies[1::2] - teacher) ** 2))
    assert np.std(teacher) > 0.05  # EMT's interaction energies differ from pair to pair
    assert errors[1e4] < 0.2 * errors[0.0], errors


def test_a_structures_weight_multiplies_all_its_design_rows(built):
    """info["weight"] = 2 doubles a structure's energy and force rows and targets; the others are unchanged."""
    import io

    from ace_jax.basis.export import save_npz
    from ace_jax.basis.model import build_model
    from ace_jax.eval import load

    from pyscatter.surrogate.fit import default_r0, design_rows
    from pyscatter.surrogate.frames import pick

    directory, _, _ = built
    structures = pick(load_frames(directory), np.arange(3))
    buffer = io.BytesIO()
    save_npz(buffer, build_model([1, 29], 2, 6, rcut=4.5, r0=default_r0([1, 29])))
    buffer.seek(0)
    model, meta, _ = load(buffer)
    e0 = np.array([-3.0, -0.5])

    def rows():
        return [np.concatenate(part) for part in zip(*design_rows(model, meta, e0, structures, 100.0, 8))]

    plain = rows()
    structures[1].info["weight"] = 2.0
    weighted = rows()
    factor = np.where(plain[2] == 1, 2.0, 1.0)
    assert np.array_equal(plain[2], weighted[2]) and len(plain[2]) == 3 * (1 + 3 * len(structures[0]))
    np.testing.assert_allclose(weighted[0], plain[0] * factor[:, None], rtol=1e-12, atol=0)
    np.testing.assert_allclose(weighted[1], plain[1] * factor, rtol=1e-12, atol=0)


def test_recording_model_keeps_every_nth_call_and_drops_repeats():
    teacher = EMTModel()
    recorder = RecordingModel(teacher, every=2)
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 2.5]], cell=np.eye(3) * 10.0)
    from pyscatter.models.base import Frame

    frame = Frame.from_atoms(atoms)
    x = torch.as_tensor(atoms.positions[None].repeat(2, axis=0))
    for step in range(5):
        x = x.clone()
        x[0, 1, 2] += 0.01  # slot 1 stays put, as an idle slot does
        recorder(frame, x)
    positions, _, _ = recorder.frames()
    assert recorder.calls == 5 and len(positions) == 4  # calls 0, 2, 4 of slot 0, and slot 1 once
    assert sorted(np.round(positions[:, 1, 2] - 2.5, 6)) == [0.0, 0.01, 0.03, 0.05]


def test_descriptor_matches_ase_distances():
    atoms = Atoms("Cu3H2", positions=[[0, 0, 0], [2.5, 0, 0], [1.2, 2.2, 0], [0.2, 0.1, 1.5], [4.6, 0.3, 2.0]],
                  cell=[[5.0, 0, 0], [0, 4.4, 0], [0, 0, 20.0]], pbc=(True, True, False))
    d = descriptor(atoms.numbers, atoms.cell.array, atoms.positions[None], np.array([0.0]))[0]
    assert d[0] == pytest.approx(atoms.get_distance(3, 4, mic=True))
    assert d[1:3] == pytest.approx([1.5, 2.0])
    low = sorted(atoms.get_distances(3, [0, 1, 2], mic=True))
    high = sorted(atoms.get_distances(4, [0, 1, 2], mic=True))
    assert d[3:] == pytest.approx(low + high)


def test_error_table_by_hand():
    atoms = [Atoms("H2", positions=[[0, 0, 0], [0, 0, 1.0]]) for _ in range(2)]
    for a, e in zip(atoms, (1.0, 2.0)):
        a.info["energy"] = e
        a.arrays["forces"] = np.zeros((2, 3))
    forces = [np.zeros((2, 3)), np.zeros((2, 3))]
    forces[1][0, 0] = 0.012
    table = error_table(atoms, np.array([1.002, 1.996]), forces)
    assert table["energy_meV_per_atom"]["mae"] == pytest.approx(1.5)
    assert table["energy_meV_per_atom"]["rmse"] == pytest.approx(np.sqrt((1.0 + 4.0) / 2))
    assert table["force_meV_per_A"]["mae"] == pytest.approx(1.0)
    assert table["H_force_meV_per_A"]["rmse"] == pytest.approx(np.sqrt(144 / 12))


def test_cli_bad_teacher_and_settings_are_one_line_errors(tmp_path, monkeypatch, capsys):
    code = cli.main(["surrogate", "build", "--teacher", str(tmp_path / "no.model"), "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "not found" in err
    code = cli.main(["surrogate", "build", "--teacher", "emt", "--out", str(tmp_path / "b"), "--facets", "311"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "facets" in err
    assert json.loads(json.dumps(SMALL.as_dict()))["facets"] == ["111"]


def test_build_keeps_the_posterior_of_its_fit(built):
    """model.posterior.npz: the normal equations of the fit (their ridge solution is the model's readout) and a row sample."""
    from pyscatter.surrogate.committee import load_posterior, readout_vector

    directory, _, _ = built
    post = load_posterior(directory / "model.posterior.npz")
    with np.load(directory / "model.npz") as z:
        readout = readout_vector(z)
    np.testing.assert_allclose(post.coefficients, readout, rtol=0, atol=1e-12)
    # the readout solves the ridge normal equations to working precision (a backward-stable solve's residual is
    # ~eps |H| |c|; with the smallest prior strength of the grid H is too ill-conditioned to compare solutions)
    hessian = post.hessian()
    residual = np.linalg.norm(hessian @ readout - post.rhs)
    assert residual <= 1e-10 * np.linalg.norm(hessian, 2) * np.linalg.norm(readout)
    assert residual <= 1e-6 * np.linalg.norm(post.rhs)
    assert np.isfinite(post.errors).all()
    assert post.residual > 0 and post.lam > 0 and len(post.rows) == min(post.n_rows, 4096)
    assert np.mean(post.errors**2) == pytest.approx(post.residual, rel=0.5)  # the sample's errors are the rows' errors


def test_extra_frames_join_the_training_set_and_are_part_of_the_builds_identity(built, tmp_path):
    """Frames placed in extra/ are all fitted (on top of the k-means selection); adding them to a finished build is refused."""
    import shutil

    directory, _, _ = built
    base = json.loads((directory / "fit.json").read_text())["n_train_frames"]
    extended = tmp_path / "extended"
    shutil.copytree(directory, extended, ignore=shutil.ignore_patterns("settings.json", "model*.npz", "fit.json", "errors.json", "report.md"))
    source = sorted((directory / "frames").glob("*.npz"))[0]
    with np.load(source) as z:
        (extended / "extra").mkdir()
        np.savez(extended / "extra" / "more.npz", **{k: z[k][:3] if k in ("positions", "energies", "forces") else z[k]
                                                     for k in z.files})
    build(extended, EMTModel(), SMALL, progress=lambda m: None)
    assert json.loads((extended / "fit.json").read_text())["n_train_frames"] == base + 3
    with np.load(directory / "selection.npz") as z:
        selected = len(z["train"])
    # selected frames, NEB images, MEP samples, approach pairs, separate H atoms, gas-phase H2
    fitted = selected + 5 + 5 * SMALL.mep_samples * 3 // 4 + SMALL.approach_frames * 2 * 3 // 4 + SMALL.atom_frames * 3 // 4 + 80
    assert base == fitted
    assert "more.npz" in json.loads((extended / "settings.json").read_text())["extra"]

    (tmp_path / "other").mkdir()
    shutil.copytree(directory, tmp_path / "other" / "build")
    shutil.copytree(extended / "extra", tmp_path / "other" / "build" / "extra")
    with pytest.raises(SurrogateError, match="extra frames"):
        build(tmp_path / "other" / "build", EMTModel(), SMALL)


@pytest.mark.parametrize("change, message", [
    ({"facets": ("112",)}, "facets"), ({"order": 0}, "order"), ({"approach_frames": -1}, "approach_frames"),
    ({"approach_heights": (7.5, 2.5)}, "approach_heights"), ({"approach_heights": (2.5,)}, "approach_heights"),
    ({"atom_frames": -1}, "atom_frames"), ({"atom_depth": -1.0}, "atom_depth"), ({"atom_weight": -0.5}, "atom_weight"),
    ({"interaction_weight": -1.0}, "interaction_weight"), ({"record_every_fs": 0.1, "dt": 0.5}, "record_every_fs"),
    ({"prior_strength": 0.0}, "prior_strength"), ({"prior_strength": -1e-11}, "prior_strength"),
])
def test_unusable_settings_are_refused_with_a_one_line_reason(change, message):
    with pytest.raises(SurrogateError, match=message):
        SurrogateSettings(**{**SMALL.__dict__, **change})


class WellUnderTheSurface(Calculator):
    """H atoms in a harmonic well (5 eV/Å^2) at height ``well`` (Å), nothing else: a model whose relaxation sinks H."""

    implemented_properties = ("energy", "free_energy", "forces")

    def __init__(self, well: float):
        super().__init__()
        self.well = well

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        h = self.atoms.numbers == 1
        dz = self.atoms.positions[h, 2] - self.well
        forces = np.zeros((len(self.atoms), 3))
        forces[h, 2] = -5.0 * dz
        energy = float(2.5 * (dz**2).sum())
        self.results = {"energy": energy, "free_energy": energy, "forces": forces}


def test_dissociation_endpoints_refuse_a_relaxation_that_sinks_h_into_the_slab():
    top = build_slab("111", 3.6).top_layer_height

    def model(depth):
        return ASECalculatorModel(WellUnderTheSurface(top - depth), frozenset({1, 29}), cutoff=4.0, name="well")

    dissociation_endpoints("111", 3.6, model(SUNK - 0.5))  # shallower than SUNK: accepted
    with pytest.raises(ModelError, match="under the top layer") as err:
        dissociation_endpoints("111", 3.6, model(SUNK + 1.0))
    assert f"took an H atom {SUNK + 1.0:.1f} Å under" in str(err.value) and "\n" not in str(err.value)


def test_a_new_prior_strength_solves_a_finished_build_again_as_a_fresh_fit_would(built, tmp_path):
    """--prior-strength on a finished build solves its fit again from the posterior (no design rows, no teacher calls):
    the same readout, posterior residual and row errors as a build fitted from scratch at that strength; the fit
    is evaluated again. Going back to a prior chosen on the validation split needs the rows: refused."""
    import dataclasses
    import shutil

    from pyscatter.surrogate.committee import load_posterior

    directory, _, _ = built
    chosen = json.loads((directory / "fit.json").read_text())["lambda_over_scale"]
    strength = 1e-6 if chosen != 1e-6 else 1e-7
    fixed = dataclasses.replace(SMALL, prior_strength=strength)
    refitted, fresh = tmp_path / "refitted", tmp_path / "fresh"
    shutil.copytree(directory, refitted)
    shutil.copytree(directory, fresh, ignore=shutil.ignore_patterns("settings.json", "model*.npz", "fit.json", "errors.json", "report.md"))
    messages = []
    build(refitted, EMTModel(), fixed, progress=messages.append)
    assert any("solved again" in m for m in messages) and not any("design rows" in m for m in messages)
    build(fresh, EMTModel(), fixed, progress=lambda m: None)
    info = json.loads((refitted / "fit.json").read_text())
    assert info["prior"] == "fixed" and info["lambda_over_scale"] == strength and info["refitted_from_lambda_over_scale"] == chosen
    assert json.loads((fresh / "fit.json").read_text())["prior"] == "fixed"
    a, b = (load_posterior(d / "model.posterior.npz") for d in (refitted, fresh))
    assert np.abs(a.coefficients - load_posterior(directory / "model.posterior.npz").coefficients).max() > 1e-3 * np.abs(b.coefficients).max()
    np.testing.assert_allclose(a.coefficients, b.coefficients, rtol=0, atol=1e-7 * np.abs(b.coefficients).max())
    assert a.lam == pytest.approx(b.lam, rel=1e-10)
    assert a.residual == pytest.approx(b.residual, rel=1e-6)
    np.testing.assert_allclose(a.errors, b.errors, rtol=0, atol=1e-4 * np.abs(b.errors).max())
    errors = [json.loads((d / "errors.json").read_text())["errors"]["held_out"]["force_meV_per_A"]["rmse"] for d in (refitted, fresh)]
    assert errors[0] == pytest.approx(errors[1], rel=1e-6)  # evaluated again, not the chosen prior's numbers
    assert not (refitted / "model.partial.npz").exists() and not (refitted / "model.posterior.partial.npz").exists()
    with pytest.raises(SurrogateError, match="fixed prior strength"):
        build(refitted, EMTModel(), SMALL)
