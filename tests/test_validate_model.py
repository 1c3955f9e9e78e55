"""benchmarks/validate_model.py, a caller of pyscatter.workflows.validate: its conditions, energies and run layout."""

from __future__ import annotations

import importlib.util
from argparse import Namespace
from pathlib import Path

import pytest

import pyscatter.workflows.validate as workflow

_spec = importlib.util.spec_from_file_location("validate_model", Path(__file__).resolve().parents[1] / "benchmarks" / "validate_model.py")
validate_model = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(validate_model)


def test_energies_are_a_subset_of_the_conditions_in_the_order_given():
    """``--energies`` picks some of a condition's energies (the undecided ones first); others stop the stage."""
    assert validate_model.energies("211", Namespace(energies=None)) == (0.3, 0.45, 0.6, 0.85)
    assert validate_model.energies("211", Namespace(energies=[0.6, 0.45])) == (0.6, 0.45)
    with pytest.raises(SystemExit, match=r"\[0\.5\] eV: not among"):
        validate_model.energies("211", Namespace(energies=[0.6, 0.5]))


def test_conditions_keep_their_run_directory_names():
    """The stores under benchmarks/results/validation: ``<kind>_Cu111``, ``<kind>_Cu111v0`` (H2(v=0, J=1)), ..."""
    assert set(validate_model.CONDITIONS) == {"111", "211", "111v0", "100", "110"}
    for name in validate_model.CONDITIONS:
        assert workflow.condition_name(*workflow.parse_condition(name)) == name
    assert workflow.parse_condition("111v0") == ("111", 0, 1)
    assert workflow.condition_name("211", 0, 0) == "211v0J0"


def test_another_state_starts_from_the_facets_v1_snapshots_of_the_same_model(tmp_path, monkeypatch):
    """v=0 runs reuse the v=1 thermal slabs of their own model: the reference's for the reference (and so for the
    paired partners), the model's own unpaired ones for the unpaired run; v=1 runs make their own."""
    for kind in ("reference_Cu111", "unpaired_Cu111", "reference_Cu111v0"):
        (tmp_path / kind).mkdir()
        (tmp_path / kind / workflow.SNAPSHOT_FILE).touch()
    calls = []
    monkeypatch.setattr(workflow, "run", lambda spec, energies, n, out_dir, **kw: calls.append(
        (out_dir.name, kw.get("snapshots_from"))) or [{"collision_energy": e, "n_dissociated": 0, "n_trajectories": n}
                                                      for e in energies])
    args = Namespace(facets=["111v0", "111"], energies=None, reference="teacher", model="h2cu-ace",
                     reference_trajectories=25, model_trajectories=100, workers=1, device="cpu", batch_size=None,
                     last_start=None, out=tmp_path)
    workflow.run_model(validate_model.validation(args), progress=lambda message: None)
    snapshots = lambda kind: tmp_path / kind / workflow.SNAPSHOT_FILE  # noqa: E731
    assert calls == [("paired_Cu111v0", snapshots("reference_Cu111v0")),
                     ("unpaired_Cu111v0", snapshots("unpaired_Cu111")),
                     ("paired_Cu111", snapshots("reference_Cu111")), ("unpaired_Cu111", None)]
    calls.clear()
    monkeypatch.setattr(workflow, "load_model", lambda name, **kw: name)
    workflow.run_reference(validate_model.validation(args), progress=lambda message: None)
    assert set(calls) == {("reference_Cu111v0", snapshots("reference_Cu111")), ("reference_Cu111", None)}
