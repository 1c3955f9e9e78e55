"""``pyscatter surrogate validate`` end to end on EMT against EMT, where the answer is known, and ``--snapshots-from``.

ASE's EMT has no barrier to H2 dissociation on Cu(111) (CI-NEB: none, reaction energy -1.0 eV), so its P_stick is
about 1 at every energy and its curve has no E0. The teacher here is EMT with H's kappa doubled, which has a barrier:
P_stick rises between 0.8 and 1.5 eV (3/8 to 7/8). The same model must pass (no discordant pair, identical curves);
EMT with H's kappa 2.2 times ASE's, whose barrier lies beyond 1.5 eV (no dissociation there), must fail.
"""

from __future__ import annotations

import json
import shutil
from contextlib import nullcontext

import numpy as np
import pytest
from ase.calculators.emt import parameters as EMT_PARAMETERS

from pyscatter.analysis.validation import Bar
from pyscatter.cli.main import main
from pyscatter.initial.thermal import ThermalSnapshots
from pyscatter.models.emt import EMTModel
from pyscatter.store import SNAPSHOT_FILE, RunReader
from pyscatter.workflows.validate import KINDS, Condition, Validation, report, run_model, run_reference

H_KAPPA = 4
"""Index of kappa (1/bohr) in a row of ASE's EMT table."""
ENERGIES = (0.8, 1.0, 1.2, 1.5)
N = 8
SMALL = {"n_snapshots": 2, "max_time": 150.0}
CONDITION = Condition("111", 0, 0, ENERGIES)
TITLE = "H2(v=0, J=0)/Cu(111), 300 K"
CLI_CONDITION = ["--facets", "111", "--states", "0:0", "--T", "300", "--energies", *map(str, ENERGIES),
                 "--snapshots", "2", "--max-time", "150"]


def emt_with_h_kappa(factor: float) -> EMTModel:
    row = list(EMT_PARAMETERS["H"])
    row[H_KAPPA] *= factor
    return EMTModel(parameters={"H": tuple(row)})


def validation(out, model, **options) -> Validation:
    return Validation(teacher=emt_with_h_kappa(2.0), model=model, conditions=(CONDITION,), out=out,
                      temperature=300.0, reference_trajectories=N, model_trajectories=N, spec_options=SMALL, **options)


def quiet(message: str) -> None:
    pass


def stored(directory) -> int:
    with RunReader(directory) as store:
        return sum(store.count_done(store.condition_id(e), N) for e in ENERGIES)


def test_the_same_model_passes_and_a_shifted_model_fails(tmp_path, capsys):
    """The teacher's own parameters, paired and unpaired: every pair ends alike, the curves are identical (Fisher
    p = 1, ΔE0 = 0), the verdict is pass; the stages resume without running anything again; the command's report
    stage gives the verdict line and exit status 0. EMT with a higher barrier, partners only: it dissociates where
    the teacher does not, never the other way; the pooled McNemar test fails the bar, the command exits 1. (One test:
    both share the teacher's run, which pytest-xdist would run once per worker as a fixture.)"""
    same = validation(tmp_path / "same", emt_with_h_kappa(2.0))
    run_reference(same, quiet)
    teacher_run = same.directory("reference", CONDITION)
    run_model(same, quiet)
    run_reference(same, quiet)  # resumes: nothing to do
    run_model(same, quiet)
    assert [stored(same.directory(kind, CONDITION)) for kind in KINDS] == [len(ENERGIES) * N] * 3
    record = report(same, Bar(), draws=50)
    condition = record["facets"]["111v0J0"]
    assert condition["verdict"] == "pass", condition["reasons"]
    for row in condition["rows"]:
        assert row["paired"]["discordant"] == [0, 0] and row["paired"]["n_pairs"] == N
        assert row["unpaired"]["p_model"] == row["unpaired"]["p_reference"] and row["unpaired"]["fisher_p"] == 1.0
    assert condition["fits"]["reference"] is not None and condition["paired_fit_difference"]["E0"] == 0.0
    assert {row["collision_energy"] for row in condition["rows"]} == set(ENERGIES)
    assert 0 < sum(row["paired"]["p_reference"] for row in condition["rows"]) < len(ENERGIES)  # a curve, not 0 or 1
    assert json.loads((same.out / "validation.json").read_text())["facets"]["111v0J0"]["verdict"] == "pass"
    assert (same.out / "validation.png").stat().st_size > 0 and "**pass**" in (same.out / "validation.md").read_text()
    assert main(["surrogate", "validate", "report", "--out", str(same.out), *CLI_CONDITION, "--draws", "20"]) == 0
    assert verdict_lines(capsys) == [f"{TITLE}: PASS (paired McNemar p, unpaired Fisher p >= 0.01, |ΔE0| <= 20 meV)"]

    shifted = validation(tmp_path / "shifted", emt_with_h_kappa(2.2), pairs_only=True)
    shutil.copytree(teacher_run, shifted.directory("reference", CONDITION))
    run_model(shifted, quiet)
    assert not shifted.directory("unpaired", CONDITION).exists()
    condition = report(shifted, Bar(pairs_only=True), draws=50)["facets"]["111v0J0"]
    assert condition["verdict"] == "fail"
    model_only, reference_only = condition["paired_pooled"]["discordant"]
    assert model_only == 0 and reference_only >= 10
    assert condition["paired_pooled"]["mcnemar_p"] < 0.01
    assert any("over all energies" in reason for reason in condition["reasons"])
    assert main(["surrogate", "validate", "report", "--out", str(shifted.out), *CLI_CONDITION, "--pairs-only"]) == 1
    lines = verdict_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith(f"{TITLE}: FAIL (paired McNemar p >= 0.01, |ΔE0| <= 20 meV): ")


def verdict_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith(f"{TITLE}: ")]


def test_command_refuses_what_cannot_run(tmp_path, capsys):
    """One line, exit 2, nothing written: a condition without preset energies, the reference stage (a default one)
    without a teacher, a report without reference runs, an unknown stage."""
    refusals = {
        "condition 111v0J0 at 925 K has no preset collision energies (--energies)":
            ["report", "--facets", "111", "--states", "0:0"],
        "the reference stage needs --teacher": ["--facets", "111"],
        "no reference runs under": ["report", "--facets", "111"],
        "argument STAGE: choose from reference, model, report, merge, got 'fit'": ["fit"],
    }
    for message, options in refusals.items():
        with pytest.raises(SystemExit) if "argument" in message else nullcontext():
            assert main(["surrogate", "validate", *options, "--out", str(tmp_path / "out")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


RUN = ["run", "--surface", "111", "--T", "300", "--v", "0", "--J", "0", "--snapshots", "2", "--max-time", "150",
       "--model", "emt", "--energy", "1.0", "--trajectories", "1", "--workers", "1"]


def test_run_starts_from_another_runs_snapshots(tmp_path, capsys):
    """``pyscatter run --snapshots-from DIR``: the run starts on DIR's slabs and lattice constant (here those of seed
    0, where seed 1 would make others); a missing file, another facet or temperature, or another lattice constant are
    refused in one line before anything is written."""
    source = tmp_path / "source"
    assert main([*RUN, "--out", str(source)]) == 0
    assert main([*RUN, "--out", str(tmp_path / "run"), "--seed", "1", "--snapshots-from", str(source)]) == 0
    given, used = (ThermalSnapshots.load(d / SNAPSHOT_FILE) for d in (source, tmp_path / "run"))
    assert np.array_equal(given.positions, used.positions) and used.lattice_constant == given.lattice_constant
    assert given.seed == 0 == used.seed
    capsys.readouterr()
    refusals = {
        "no such file": ["--snapshots-from", str(tmp_path / "nowhere")],
        "do not fit this run of 2 on Cu(111) at 600 K": ["--snapshots-from", str(source), "--T", "600"],
        "not 3.5 Å": ["--snapshots-from", str(source), "--lattice-constant", "3.5"],
    }
    for message, options in refusals.items():
        assert main([*RUN, "--out", str(tmp_path / "refused"), *options]) == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("pyscatter: error")]
        assert len(errors) == 1 and message in errors[0]
        assert not (tmp_path / "refused").exists()
