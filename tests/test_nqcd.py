"""The NQCDynamics.jl engine: the Python side of the bridge here, the Julia side where Julia exists.

Without Julia: unit conversions against CODATA (scipy) and published numbers, marshalling
layouts and round trips, the callback force model against ASE's EMT, result conversion, the
chunking driver, and a Julia-grammar parse of every ``.jl`` file in the repository.
With a ``julia`` executable and juliacall: outcome codes, then the same initial conditions
through the native engine and NQCDynamics (trajectory by trajectory, and as a batch).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.emt import EMT
from scipy import constants as sc

from julia_api import OURS, check_uses, fake_module, load_fixture, module_api
from pyscatter.conditions import Termination
from pyscatter.engine import nqcd
from pyscatter.initial.surface import build_slab
from pyscatter.models.base import Frame, ModelError
from pyscatter.models.emt import EMTModel
from pyscatter.outcomes import Outcome

REPO = Path(__file__).resolve().parents[1]
needs_julia = pytest.mark.skipif(
    shutil.which("julia") is None,
    reason="no `julia` executable on PATH: the NQCDynamics engine is verified only on machines with Julia",
)


def _codata(name: str) -> float:
    return sc.physical_constants[name][0]


# --- units ---------------------------------------------------------------------------------


def test_atomic_units_match_codata():
    # ASE's unit system is CODATA 2014, scipy's is newer: agreement to 1e-7 is what both allow
    assert nqcd.AU_LENGTH == pytest.approx(_codata("Bohr radius") * 1e10, rel=1e-7)
    assert nqcd.AU_ENERGY == pytest.approx(_codata("Hartree energy in eV"), rel=1e-7)
    assert nqcd.AU_MASS == pytest.approx(_codata("electron mass in u"), rel=1e-7)
    assert nqcd.AU_TIME_FS == pytest.approx(_codata("atomic unit of time") * 1e15, rel=1e-7)
    assert nqcd.AU_TIME_FS == pytest.approx(0.02418884326, rel=1e-8)  # published: 2.418884326e-17 s


def test_velocity_and_mass_conversions_keep_kinetic_energy():
    rng = np.random.default_rng(0)
    mass, velocity = 63.546, rng.normal(size=3) * 0.05  # amu, Å per ASE time unit
    kinetic_ev = 0.5 * mass * velocity @ velocity
    mass_au, velocity_au = mass / nqcd.AU_MASS, velocity / nqcd.AU_VELOCITY
    assert 0.5 * mass_au * velocity_au @ velocity_au * nqcd.AU_ENERGY == pytest.approx(kinetic_ev, rel=1e-12)
    # H (1.008 u) in electron masses, as NQCBase.jl documents Atoms(:H)
    assert 1.008 / nqcd.AU_MASS == pytest.approx(1837.4715941070515, rel=1e-7)


# --- marshalling ---------------------------------------------------------------------------


def test_julia_layout_is_column_major_atomic_and_round_trips():
    rng = np.random.default_rng(1)
    positions = rng.normal(size=(5, 7, 3))  # (T, N, 3) Å
    r = nqcd.to_julia_layout(positions, nqcd.AU_LENGTH)
    assert r.shape == (3, 7, 5) and r.flags.f_contiguous
    assert r[2, 4, 3] == pytest.approx(positions[3, 4, 2] / _codata("Bohr radius") / 1e10, rel=1e-7)
    # column-major (3, N) per trajectory is row-major (N, 3): the memory Julia sees
    np.testing.assert_array_equal(r[:, :, 0].ravel(order="F"), (positions[0] / nqcd.AU_LENGTH).ravel())
    np.testing.assert_allclose(nqcd.from_julia_layout(r, nqcd.AU_LENGTH), positions, rtol=1e-15)


def test_julia_starts_zero_the_fixed_atoms_velocities():
    rng = np.random.default_rng(2)
    positions, velocities = rng.normal(size=(2, 4, 3)), rng.normal(size=(2, 4, 3))
    mobile = np.array([False, True, False, True])
    r0, v0 = nqcd.julia_starts(positions, velocities, mobile)
    assert np.all(v0[:, ~mobile, :] == 0.0)
    np.testing.assert_allclose(nqcd.from_julia_layout(v0, nqcd.AU_VELOCITY)[:, mobile], velocities[:, mobile], rtol=1e-15)
    np.testing.assert_allclose(nqcd.from_julia_layout(r0, nqcd.AU_LENGTH), positions, rtol=1e-15)


def _fake_initial():
    """Slab (fixed bottom) + H2, with a final_state that records what it was given."""
    slab = build_slab("111", 3.6)
    numbers = np.r_[slab.atoms.numbers, 1, 1]
    masses = np.r_[slab.atoms.get_masses(), 1.008, 1.008]
    n = len(slab.atoms)
    seen = []
    return SimpleNamespace(
        frame=Frame(numbers, slab.atoms.cell.array, (True, True, False)),
        masses=masses,
        mobile=np.r_[~slab.fixed, True, True],
        molecule=(n, n + 1),
        top_layer=np.asarray(slab.top_layer),
        final_state=lambda p, v: seen.append((p, v)) or {"v_final": 0.25, "J_final": 3.0,
                                                           "translational_energy": 0.1, "internal_energy": 0.3},
        seen=seen,
    )


def test_julia_system_is_one_based_atomic_and_columns_are_cell_vectors():
    initial = _fake_initial()
    system = nqcd.julia_system(initial, dt=0.1, termination=Termination(max_time=150.0, dissociation_distance=2.25, scatter_height=7.1))
    crit = system.criteria
    n = len(initial.masses)
    assert list(crit["molecule"]) == [n - 1, n]
    np.testing.assert_array_equal(crit["top_layer"], initial.top_layer + 1)
    np.testing.assert_array_equal(system.fixed, np.flatnonzero(~initial.mobile) + 1)
    np.testing.assert_allclose(crit["cell"][:, 0] * nqcd.AU_LENGTH, initial.frame.cell[0], rtol=1e-14)
    assert list(crit["periodic"]) == [True, True, False]
    assert system.masses[-1] == pytest.approx(1837.4715941070515, rel=1e-7)
    np.testing.assert_array_equal(crit["molecule_masses"], system.masses[-2:])
    assert crit["dissociation_distance"] == pytest.approx(2.25 / 0.529177210903, rel=1e-7)
    assert crit["scatter_height"] == pytest.approx(7.1 / 0.529177210903, rel=1e-7)
    assert crit["dt"] == pytest.approx(0.1 / 0.02418884326585747, rel=1e-7)
    assert crit["max_steps"] == 1500


def test_julia_results_become_trajectory_results():
    initial = _fake_initial()
    rng = np.random.default_rng(3)
    n = len(initial.masses)
    positions, velocities = rng.normal(size=(3, n, 3)), rng.normal(size=(3, n, 3))
    raw = SimpleNamespace(
        outcome=np.array([1, 2, 3]), steps=np.array([120, 950, 1500]),
        positions=nqcd.to_julia_layout(positions, nqcd.AU_LENGTH),
        velocities=nqcd.to_julia_layout(velocities, nqcd.AU_VELOCITY),
        energy_drift=np.array([1e-4, -2e-4, 0.0]), max_energy_error=np.array([2e-4, 3e-4, 1e-5]),
        evaluations=np.array([121, 951, 1501]),
    )
    results, calls = nqcd.julia_results(raw, [7, 8, 9], initial, dt=0.1, termination=Termination())
    assert calls == 121 + 951 + 1501
    assert [r.index for r in results] == [7, 8, 9]
    assert [r.outcome for r in results] == [Outcome.DISSOCIATED, Outcome.SCATTERED, Outcome.TRAPPED]
    assert [r.end_time for r in results] == pytest.approx([12.0, 95.0, 150.0])
    assert results[0].energy_drift == pytest.approx(1e-4 * _codata("Hartree energy in eV"), rel=1e-7)
    assert results[1].max_energy_error == pytest.approx(3e-4 * _codata("Hartree energy in eV"), rel=1e-7)
    # only the scattered molecule is analysed, with its own atoms in Å and ASE velocity units
    (p, v), = initial.seen
    np.testing.assert_allclose(p, positions[1, -2:], rtol=1e-14)
    np.testing.assert_allclose(v, velocities[1, -2:], rtol=1e-14)
    assert results[1].v_final == 0.25 and np.isnan(results[0].v_final)


# --- the callback force model --------------------------------------------------------------


def test_atomic_units_model_equals_ase_emt_in_atomic_units():
    slab = build_slab("111", 3.6)
    atoms = slab.atoms.copy() + Atoms("H2", positions=[[1.0, 1.2, 12.0], [1.74, 1.2, 12.1]])
    atoms.set_constraint()  # raw forces on every atom, as the model returns them
    atoms.positions += np.random.default_rng(4).normal(0, 0.05, atoms.positions.shape)
    atoms.calc = EMT()
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    evaluate = nqcd.atomic_units_model(EMTModel(), Frame.from_atoms(atoms))
    bohr = _codata("Bohr radius") * 1e10
    hartree = _codata("Hartree energy in eV")
    v, dvdr = evaluate(np.asfortranarray(atoms.positions.T / bohr))  # what Julia hands over: (3, N) bohr
    assert v * hartree == pytest.approx(energy, abs=1e-6)
    assert dvdr.shape == forces.shape and dvdr.flags.c_contiguous
    np.testing.assert_allclose(-dvdr * hartree / bohr, forces, atol=1e-6)


def test_ace_model_reads_species_and_cutoff_and_refuses_other_json(tmp_path):
    good = tmp_path / "cu_h.json"
    good.write_text(json.dumps({"model_spec": {"model_name": "ACE1", "elements": ["Cu", "H"], "rcut": 5.5, "pair_rcut": 6.0},
                                "model_parameters": [0.0]}))
    model = nqcd.JuliaACEModel(good)
    assert model.species == frozenset({1, 29}) and model.cutoff == 6.0
    assert model.identity.startswith("acepotentials:") and model.dtype == torch.float64
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps({"weights": [1, 2]}))
    with pytest.raises(ModelError, match="ACEpotentials"):
        nqcd.JuliaACEModel(bad)


def test_driver_sends_chunks_and_reports_each(monkeypatch):
    """run_dynamics_nqcd against a stand-in Julia module: chunking, arguments, result hand-off."""
    initial = _fake_initial()
    n = len(initial.masses)
    initial.sample = lambda i: (np.full((n, 3), float(i)), np.ones((n, 3)))
    calls = []

    def run_ensemble(evaluator, numbers, masses, fixed, criteria, r0, v0):
        calls.append((evaluator, r0))
        t = r0.shape[2]
        return SimpleNamespace(outcome=np.full(t, 3), steps=np.full(t, criteria["max_steps"]), positions=r0, velocities=v0,
                               energy_drift=np.zeros(t), max_energy_error=np.zeros(t), evaluations=np.full(t, 10))

    # PyScatterNQCD as recorded from its source in tests/data/julia_api.json: wrong arguments raise
    fake = fake_module(Criteria=lambda **kw: kw, PythonEvaluator=lambda f: f, run_ensemble=run_ensemble)
    monkeypatch.setattr(nqcd, "julia", lambda: fake)
    finished = []
    nqcd.run_dynamics_nqcd(EMTModel(), initial, range(5), lambda r, c: finished.append(([x.index for x in r], c)),
                           batch_size=2, dt=0.5, termination=Termination(max_time=10.0))
    assert finished == [([0, 1], 20), ([2, 3], 20), ([4], 10)]
    assert callable(calls[0][0])
    assert calls[1][1][0, 0, 1] == pytest.approx(3.0 / nqcd.AU_LENGTH)  # trajectory 3's start, in bohr


# --- Julia sources -------------------------------------------------------------------------


def _julia_files() -> list[Path]:
    return sorted(p for p in REPO.rglob("*.jl") if not any(part.startswith(".") for part in p.relative_to(REPO).parts))


def test_every_julia_file_parses():
    tree_sitter = pytest.importorskip("tree_sitter")
    grammar = pytest.importorskip("tree_sitter_julia")
    parser = tree_sitter.Parser(tree_sitter.Language(grammar.language()))
    files = _julia_files()
    assert REPO / "julia/PyScatterNQCD/src/PyScatterNQCD.jl" in files
    for path in files:
        tree = parser.parse(path.read_bytes())
        bad, stack = [], [tree.root_node]
        while stack:
            node = stack.pop()
            if node.is_error or node.is_missing:
                bad.append(f"line {node.start_point[0] + 1}: {'missing ' + node.type if node.is_missing else 'syntax error'}")
            stack.extend(node.children)
        assert not bad and not tree.root_node.has_error, f"{path.relative_to(REPO)}: {bad}"


def test_the_grammar_check_catches_a_syntax_error():
    tree_sitter = pytest.importorskip("tree_sitter")
    grammar = pytest.importorskip("tree_sitter_julia")
    parser = tree_sitter.Parser(tree_sitter.Language(grammar.language()))
    assert parser.parse(b"function f(x)\n    x +\nend\n").root_node.has_error
    assert parser.parse(b"f(x) = (x, [1 2; 3 4]\n").root_node.has_error


# --- the Julia API, from the packages' own sources ------------------------------------------


def test_julia_api_fixture_records_our_module_as_it_is():
    """tests/data/julia_api.json's record of PyScatterNQCD (what the fake module of the bridge tests is made
    from) is the module's source as it is now; regenerate with `python tests/julia_api.py derive ...`."""
    pytest.importorskip("tree_sitter_julia")
    assert load_fixture()["pyscatter_nqcd"] == module_api(OURS.read_bytes())


def test_every_package_call_in_our_julia_resolves_with_its_arity():
    """Each call into NQCDynamics, NQCModels, NQCBase, ACEpotentials, AtomsCalculators and SciMLBase names a
    function or type the pinned package defines, with a method taking that many positional arguments and
    those keywords; each method we add to a package function (NQCModels.potential, ...) has the arity of one
    of its methods. The names and arities were read from the packages' sources at the commits recorded."""
    pytest.importorskip("tree_sitter_julia")
    table = load_fixture()
    compat = {}
    for line in (REPO / "julia/PyScatterNQCD/Project.toml").read_text().split("[compat]")[1].splitlines():
        if "=" in line:
            name, versions = line.split("=", 1)
            compat[name.strip()] = [v.strip() for v in versions.strip().strip('"').split(",")]
    for name, package in table["packages"].items():
        assert any(package["version"] == v or package["version"].startswith(v + ".") for v in compat[name]), (
            f"{name} {package['version']} read, compat {compat[name]}")
    assert check_uses(OURS.read_bytes(), table) == []
    assert {"NQCDynamics", "NQCModels", "ACEpotentials"} <= set(table["packages"])


@pytest.mark.parametrize("change, message", [
    ("DynamicsMethods.create_problem(u0, (0.0, crit.max_steps * crit.dt), sim)",
     "DynamicsMethods.create_problem(u0, (0.0, crit.max_steps * crit.dt))"),
    ("NQCModels.potential(model::FixedAtomsModel, R::AbstractMatrix)", "NQCModels.potential(model::FixedAtomsModel)"),
    ("DynamicsUtils.get_positions, DynamicsUtils.get_velocities", "DynamicsUtils.positions, DynamicsUtils.get_velocities"),
    ("energy_forces_virial(system, evaluator.potential; ntasks=1)", "energy_forces_virial(system)"),
])
def test_the_api_check_catches_a_wrong_call(change, message):
    pytest.importorskip("tree_sitter_julia")
    source = OURS.read_text()
    assert change in source
    assert check_uses(source.replace(change, message).encode(), load_fixture()) != []


def test_the_fake_module_refuses_what_julia_would():
    fake = fake_module(Criteria=lambda **kw: kw, run_ensemble=lambda *a: a)
    criteria = dict(molecule=(1, 2), top_layer=[1], cell=np.eye(3), periodic=[True] * 3, molecule_masses=(1.0, 1.0),
                    dissociation_distance=1.0, scatter_height=1.0, max_steps=1, dt=1.0)
    assert fake.Criteria(**criteria) == criteria
    with pytest.raises(TypeError):
        fake.Criteria(**criteria, extra=1)
    with pytest.raises(TypeError):
        fake.run_ensemble(*range(6))
    assert len(fake.run_ensemble(*range(7))) == 7
    assert [fake.DISSOCIATED, fake.SCATTERED, fake.TRAPPED] == [Outcome.DISSOCIATED, Outcome.SCATTERED, Outcome.TRAPPED]
    with pytest.raises(AttributeError):
        fake_module(run_simulation=lambda: None)


# --- with Julia ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emt_condition(tmp_path_factory):
    """A small EMT condition (Cu(111), 300 K, H2 v=0 J=0) and its initial conditions."""
    from pyscatter.conditions import RunSpec
    from pyscatter.initial.sampler import build_initial_conditions, quantised_molecule
    from pyscatter.initial.thermal import load_or_thermalise

    spec = RunSpec(surface="111", temperature=300.0, v=0, J=0, n_snapshots=2, termination=Termination(max_time=150.0), model="emt")
    model = EMTModel()
    slab = build_slab(spec.surface, 3.6)
    snapshots = load_or_thermalise(tmp_path_factory.mktemp("nqcd") / "snapshots.npz", model, slab,
                                   spec.temperature, spec.n_snapshots, spec.seed)
    initial = build_initial_conditions(spec, 0.1, slab, snapshots, quantised_molecule(spec, model))
    return spec, model, initial


def _run(engine, spec, model, initial, indices):
    results = []
    engine(model, initial, indices, lambda r, c: results.extend(r), 8, dt=spec.dt, termination=spec.termination)
    return sorted(results, key=lambda r: r.index)


@needs_julia
def test_julia_outcome_codes_are_pyscatters():
    pytest.importorskip("juliacall")
    jl = nqcd.julia()
    assert [jl.DISSOCIATED, jl.SCATTERED, jl.TRAPPED] == [Outcome.DISSOCIATED, Outcome.SCATTERED, Outcome.TRAPPED]


@needs_julia
def test_same_initial_conditions_same_trajectories(emt_condition):
    pytest.importorskip("juliacall")
    from pyscatter.engine.runner import run_dynamics

    spec, model, initial = emt_condition
    native = _run(run_dynamics, spec, model, initial, range(4))
    julia = _run(nqcd.run_dynamics_nqcd, spec, model, initial, range(4))
    assert [r.outcome for r in julia] == [r.outcome for r in native]
    assert [r.end_time for r in julia] == pytest.approx([r.end_time for r in native], abs=1.0)
    assert max(abs(r.energy_drift) for r in julia) < 1e-2


@needs_julia
def test_same_initial_conditions_same_statistics(emt_condition):
    pytest.importorskip("juliacall")
    from pyscatter.engine.runner import run_dynamics

    spec, model, initial = emt_condition
    n = 32
    native = [r.outcome for r in _run(run_dynamics, spec, model, initial, range(n))]
    julia = [r.outcome for r in _run(nqcd.run_dynamics_nqcd, spec, model, initial, range(n))]
    for outcome in (Outcome.DISSOCIATED, Outcome.SCATTERED, Outcome.TRAPPED):
        p1, p2 = native.count(outcome) / n, julia.count(outcome) / n
        pooled = (p1 + p2) / 2
        assert abs(p1 - p2) <= 3 * np.sqrt(2 * pooled * (1 - pooled) / n) + 1 / n
