"""Other fcc metals and slab files: built slabs, thermal expansion, the run's refusals, a run end to end on Ag(111)
(the README's condition at a few trajectories) and on a slab file (stored, resumed, reported)."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, fcc111, fcc211
from ase.constraints import FixAtoms
from ase.io import read, write

from pyscatter.cli.main import main
from pyscatter.conditions import DEFAULT_MODEL, METALS, ConditionError, RunSpec
from pyscatter.initial.surface import (
    CU_MELTING_POINT,
    DEBYE_EXPANSION,
    DebyeExpansion,
    SlabFileError,
    build_slab,
    read_slab,
    scaled_slab,
    thermal_expansion_factor,
)
from pyscatter.store import SLAB_FOLDER

AG_RUN = ["run", "--metal", "Ag", "--surface", "111", "--T", "300", "--v", "1", "--J", "1", "--model", "emt",
          "--snapshots", "2", "--max-time", "300", "--workers", "1"]


def _cli(args, capsys):
    try:
        code = main([str(a) for a in args])
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr()


@pytest.mark.parametrize("metal", METALS)
def test_built_slab_is_ase_fcc111_of_the_metal(metal):
    slab = build_slab("111", 3.9, metal)
    reference = fcc111(metal, (3, 3, 6), a=3.9)
    assert set(slab.atoms.get_chemical_symbols()) == {metal} and slab.metal == metal
    assert np.allclose(slab.atoms.cell.array[:2], reference.cell.array[:2])
    assert sorted(slab.atoms.positions[:, 2].round(6)) == sorted((reference.positions[:, 2] - reference.positions[:, 2].min()).round(6))
    assert slab.fixed.sum() == 18 and len(slab.top_layer) == 9


def test_debye_form_reproduces_copper_nist_data_below_600_K():
    """The form the other metals use, with Cu's room-temperature alpha (CRC) and Debye temperature (Kittel), against
    Cu's NIST SRM 736 data: the validity range stated in initial/surface.py."""
    copper = DebyeExpansion(16.5e-6, 343.0, CU_MELTING_POINT)
    for t, tolerance in ((100.0, 3e-5), (300.0, 3e-5), (400.0, 5e-5), (600.0, 3e-4), (800.0, 8e-4)):
        assert copper.factor(t) == pytest.approx(thermal_expansion_factor(t, "Cu"), rel=tolerance), t


@pytest.mark.parametrize("metal", sorted(DEBYE_EXPANSION))
def test_expansion_coefficient_at_room_temperature_is_the_tabulated_one(metal):
    """d ln a / dT at 293.15 K (central difference) is the CRC alpha; far above the Debye temperature alpha tends to
    its classical limit alpha_293 / C_D(293 K), i.e. it grows by less than the factor C_D(293)^-1."""
    data = DEBYE_EXPANSION[metal]
    h = 0.01
    slope = (np.log(thermal_expansion_factor(293.15 + h, metal)) - np.log(thermal_expansion_factor(293.15 - h, metal))) / (2 * h)
    assert slope == pytest.approx(data.alpha_293, rel=1e-6)
    assert thermal_expansion_factor(1e-3, metal) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match=metal):
        thermal_expansion_factor(data.melting_point + 1.0, metal)


def test_every_metal_has_expansion_data():
    assert set(DEBYE_EXPANSION) | {"Cu"} == set(METALS)


def test_spec_metal_defaults_to_copper_and_old_stores_read_as_copper():
    old = {"surface": "111", "temperature": 925.0, "v": 1, "J": 1}  # a store written before metals existed
    assert RunSpec.from_dict(old).metal == "Cu" and RunSpec.from_dict(old).slab is None
    assert RunSpec(surface="111", temperature=300.0, v=1, J=1).slab_label == "Cu(111)"
    with pytest.raises(ConditionError, match="unknown metal 'Fe'"):
        RunSpec(surface="111", temperature=300.0, v=1, J=1, model="emt", metal="Fe")
    with pytest.raises(ConditionError, match=f"{DEFAULT_MODEL} is for H2 on Cu only: on Pt choose model emt"):
        RunSpec(surface="111", temperature=300.0, v=1, J=1, metal="Pt")
    from pyscatter.workflows.campaign import parse_campaign

    campaign = {"facets": ["111", "211"], "states": [[1, 1]], "energies": [0.5], "models": ["emt"], "T": 300,
                "trajectories": 10, "metal": "Pt"}
    assert {spec.slab_label for spec in parse_campaign(campaign).specs} == {"Pt(111)", "Pt(211)"}


def test_another_metal_without_a_model_is_refused_in_one_line(tmp_path, capsys):
    code, out = _cli(["run", "--metal", "Pt", "--surface", "111", "--T", "300", "--v", "1", "--J", "1",
                      "--out", tmp_path / "run"], capsys)
    assert code == 2 and not (tmp_path / "run").exists()
    assert out.err.count("\n") == 1 and "h2cu-ace is for H2 on Cu only" in out.err and "model emt" in out.err


def test_a_model_without_the_metal_is_refused_naming_its_elements(tmp_path, capsys):
    from pyscatter.models import SHIPPED

    code, out = _cli(["run", "--metal", "Pt", "--surface", "111", "--T", "300", "--v", "1", "--J", "1",
                      "--model", SHIPPED["h2cu-ace"], "--out", tmp_path / "run"], capsys)
    assert code == 2 and not (tmp_path / "run").exists()
    assert out.err.count("\n") == 1 and "no parameters for Pt" in out.err and "its elements: H, Cu" in out.err


def test_readme_condition_on_silver_runs_stores_resumes_and_reports(tmp_path, capsys):
    out = tmp_path / "ag"
    code, first = _cli([*AG_RUN, "--trajectories", "3", "--out", out, "--json"], capsys)
    assert code == 0, first.err
    assert "Ag(111) slab at a = " in first.err and "Ag's thermal expansion" in first.err
    record = json.loads(first.out.splitlines()[0])
    assert record["metal"] == "Ag" and record["n_trajectories"] == 3
    code, second = _cli([*AG_RUN, "--trajectories", "5", "--out", out, "--json"], capsys)
    assert code == 0 and json.loads(second.out)["n_trajectories"] == 5
    assert "the resumed run's thermal snapshots'" in second.err
    from pyscatter.store import RunReader

    with RunReader(out) as store:
        assert store.spec.metal == "Ag"
        assert store.provenance["lattice_constant"] == pytest.approx(4.0, abs=0.1)
    code, report = _cli(["report", out], capsys)
    assert code == 0, report.err
    code, status = _cli(["status", out], capsys)
    assert code == 0 and "Ag(111)" in status.out


def _slab_file(path, atoms: Atoms) -> str:
    write(path, atoms)
    return str(path)


def test_slab_file_reads_as_the_built_slab_and_scales_exactly(tmp_path):
    """A Pt(211) slab written by ASE with FixAtoms on its bottom 18 atoms: the same slab as built, its lattice
    constant found, and scaled to another lattice constant it is the slab built there."""
    built = build_slab("211", 3.95, "Pt")
    path = _slab_file(tmp_path / "pt211.extxyz", built.atoms)
    slab = read_slab(path, "Pt", "211")
    assert slab.lattice_constant == pytest.approx(3.95, abs=1e-7)  # extxyz keeps 8 decimals
    assert np.allclose(slab.atoms.positions, built.atoms.positions, atol=1e-7)
    assert (slab.fixed == built.fixed).all() and (slab.top_layer == built.top_layer).all()
    rebuilt = build_slab("211", 4.0, "Pt")
    scaled = scaled_slab(slab, 4.0)
    assert np.allclose(scaled.atoms.positions, rebuilt.atoms.positions, atol=1e-6)
    assert np.allclose(scaled.atoms.cell.array, rebuilt.atoms.cell.array, atol=1e-6)


def test_slab_file_of_the_authors_has_their_lattice_constant(shared_structure):
    shared_structure("cu111_0K.in")  # skips without ../shared
    from conftest import STRUCTURES

    slab = read_slab(str(STRUCTURES / "cu111_0K.in"), "Cu", "111")
    assert slab.lattice_constant == pytest.approx(3.6528, abs=1e-4)
    assert slab.fixed.sum() == 18 and len(slab.top_layer) == 9


def test_fixed_layers_replace_the_file_constraint(tmp_path):
    atoms = fcc111("Au", (2, 2, 5), a=4.1, vacuum=12.0)
    atoms.pbc = True
    path = _slab_file(tmp_path / "au.cif", atoms)
    with pytest.raises(SlabFileError, match="no FixAtoms constraint: give fixed_layers"):
        read_slab(path, "Au", "111")
    slab = read_slab(path, "Au", "111", fixed_layers=3)
    assert slab.fixed.sum() == 12 and (slab.atoms.positions[slab.fixed, 2] < slab.atoms.positions[~slab.fixed, 2].min()).all()
    with pytest.raises(SlabFileError, match="has 5 layers: cannot fix 5"):
        read_slab(path, "Au", "111", fixed_layers=5)


@pytest.mark.parametrize("case, message", [
    ("bulk", "has 2.0 Å of vacuum above the slab along z"),
    ("molecule", "is not periodic in x and y"),
    ("nickel", "is mostly Ni, not Pt: set metal to Ni"),
])
def test_unusable_slab_files_are_refused_in_one_line(tmp_path, case, message):
    atoms = {"bulk": bulk("Pt", "fcc", a=3.92, cubic=True).repeat((2, 2, 3)),
             "molecule": Atoms("Pt2", positions=[[0, 0, 0], [0, 0, 2.5]]),
             "nickel": fcc111("Ni", (2, 2, 4), a=3.52, vacuum=10.0)}[case]
    atoms.set_constraint(FixAtoms(indices=[0]))
    path = _slab_file(tmp_path / f"{case}.extxyz", atoms)
    with pytest.raises(SlabFileError, match=message) as err:
        read_slab(path, "Pt", "111")
    assert "\n" not in str(err.value)


def test_slab_file_run_stores_the_file_resumes_and_refuses_a_changed_file(tmp_path, capsys):
    path = tmp_path / "POSCAR"
    write(path, build_slab("111", 3.92, "Pt").atoms, format="vasp")  # selective dynamics from FixAtoms
    out = tmp_path / "run"
    run = ["run", "--metal", "Pt", "--slab", path, "--surface", "111", "--T", "300", "--v", "0", "--J", "0",
           "--model", "emt", "--snapshots", "2", "--max-time", "200", "--workers", "1", "--out", out, "--json"]
    code, first = _cli([*run, "--trajectories", "2"], capsys)
    assert code == 0, first.err
    assert "Pt(111) slab at a = " in first.err and "read at a = 3.92000 Å, scaled by" in first.err
    copy = out / SLAB_FOLDER / "POSCAR"
    assert copy.read_bytes() == path.read_bytes()
    from pyscatter.models.base import file_sha256
    from pyscatter.store import RunReader

    with RunReader(out) as store:
        assert store.provenance["slab_sha256"] == file_sha256(str(path)) and store.spec.slab == str(path)
    code, second = _cli([*run, "--trajectories", "4"], capsys)
    assert code == 0 and json.loads(second.out)["n_trajectories"] == 4
    code, report = _cli(["report", out], capsys)
    assert code == 0, report.err
    rows = sqlite3.connect(out / "results.sqlite").execute("SELECT count(*) FROM trajectories").fetchone()
    assert rows == (4,)
    moved = read(path)
    moved.positions[-1, 2] += 0.01
    write(path, moved, format="vasp")
    code, refused = _cli([*run, "--trajectories", "6"], capsys)
    error = refused.err.splitlines()[-1]  # after the EMT note
    assert code == 2 and error.startswith("pyscatter: error: slab file") and "changed since run directory" in error
