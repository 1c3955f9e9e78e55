"""Options generated from dataclass field metadata (``surrogate build`` from :class:`SurrogateSettings`, as ``run``
from :class:`RunSpec`) and the one results table of ``run``, ``curve`` and ``plot``."""

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

import pyscatter.surrogate.pipeline
from pyscatter.analysis.curves import StickingCurve
from pyscatter.cli.curves import _format_curve
from pyscatter.cli.main import format_table, main
from pyscatter.conditions import RunSpec
from pyscatter.surrogate.settings import SurrogateSettings

BUILD = ["surrogate", "build", "--teacher", "emt", "--out", "b"]
EVERY_OPTION = [
    "--facets", "111,211", "--temperatures", "300,500", "--states", "0:0,1:2", "--energies", "0.3,0.6",
    "--trajectories", "3", "--dt", "0.2", "--max-time", "300", "--initial-height", "6.5", "--snapshots", "5",
    "--equilibration", "800", "--approach-frames", "10", "--approach-heights", "2,6", "--atom-frames", "7",
    "--atom-depth", "3", "--atom-weight", "0.25", "--n-train", "100", "--n-test", "20", "--neb-images", "9",
    "--neb-steps", "50", "--mep-samples", "4", "--mep-rattle", "0.1", "--cutoff", "5.5", "--order", "3",
    "--max-degree", "10", "--energy-weight", "50", "--interaction-weight", "5", "--prior-strength", "1e-6",
    "--batch-size", "4", "--seed", "7",
]
"""Every option of the hand-written ``surrogate build`` before the options were generated."""
HAND_WRITTEN = {
    "facets": ["111", "211"], "temperatures": [300.0, 500.0], "states": [[0, 0], [1, 2]], "collision_energies": [0.3, 0.6],
    "trajectories": 3, "dt": 0.2, "max_time": 300.0, "record_every_fs": 1.0, "initial_height": 6.5, "n_snapshots": 5,
    "equilibration_fs": 800.0, "approach_frames": 10, "approach_heights": [2.0, 6.0], "atom_frames": 7,
    "atom_depth": 3.0, "atom_weight": 0.25, "n_train": 100, "n_test": 20, "neb_images": 9, "neb_fmax": 0.05,
    "neb_steps": 50, "mep_samples": 4, "mep_rattle": 0.1, "cutoff": 5.5, "order": 3, "max_degree": 10,
    "energy_weight": 50.0, "interaction_weight": 5.0, "validation_fraction": 0.1, "prior_strength": 1e-06, "seed": 7,
    "batch_size": 4,
}
"""The settings the hand-written CLI built from :data:`EVERY_OPTION` (recorded from it)."""
DEFAULTS = {
    "facets": ["111", "100", "110", "211"], "temperatures": [300.0, 600.0, 900.0], "states": [[0, 0], [1, 1]],
    "collision_energies": [0.2, 0.5, 0.9], "trajectories": 4, "dt": 0.1, "max_time": 400.0, "record_every_fs": 1.0,
    "initial_height": 7.0, "n_snapshots": 8, "equilibration_fs": 1000.0, "approach_frames": 64,
    "approach_heights": [2.5, 7.5], "atom_frames": 128, "atom_depth": 4.0, "atom_weight": 0.5, "n_train": 2000,
    "n_test": 400, "neb_images": 50, "neb_fmax": 0.05, "neb_steps": 500, "mep_samples": 24, "mep_rattle": 0.15,
    "cutoff": 6.0, "order": 4, "max_degree": 12, "energy_weight": 100.0, "interaction_weight": 10.0,
    "validation_fraction": 0.1, "prior_strength": None, "seed": 0, "batch_size": 8,
}
"""The settings the hand-written CLI built without options (recorded from it)."""


@pytest.fixture
def built_settings(monkeypatch, tmp_path):
    """``surrogate build ARGS`` -> the settings it would build with (nothing is built)."""
    monkeypatch.chdir(tmp_path)
    seen = []
    monkeypatch.setattr(pyscatter.surrogate.pipeline, "build", lambda out, teacher, settings, progress: seen.append(settings))

    def build(options: list[str]) -> dict:
        assert main(BUILD + options) == 0
        return seen[-1].as_dict()

    return build


def test_surrogate_build_reads_the_hand_written_options_as_before(built_settings):
    assert built_settings([]) == DEFAULTS
    assert built_settings(EVERY_OPTION) == HAND_WRITTEN


def test_every_settings_field_has_an_option(built_settings):
    """The fields the hand-written CLI did not list have options too."""
    changed = {"record_every_fs": 2.0, "neb_fmax": 0.02, "validation_fraction": 0.2}
    options = ["--record-every-fs", "2", "--neb-fmax", "0.02", "--validation-fraction", "0.2"]
    assert built_settings(EVERY_OPTION + options) == {**HAND_WRITTEN, **changed}
    assert {f.name for f in dataclasses.fields(SurrogateSettings)} == set(HAND_WRITTEN)


@pytest.mark.parametrize("options, message", [
    (["--states", "0"], "argument --states: expected 2 values separated by ':', got '0'"),
    (["--approach-heights", "2,4,6"], "argument --approach-heights: expected 2 values separated by ',', got '2,4,6'"),
    (["--n-train", "0"], "n_train must be >= 1, got 0"),
    (["--temperatures", "300,hot"], "argument --temperatures: expected a number, got 'hot'"),
])
def test_a_bad_option_is_one_line(options, message, built_settings, capsys):
    try:
        code = main(BUILD + options)
    except SystemExit as refused:  # argparse's refusals
        code = refused.code
    assert code == 2
    assert capsys.readouterr().err == f"pyscatter: error: {message}\n"


RUN_ROWS = [
    {"collision_energy": 0.3, "n_trajectories": 20, "n_dissociated": 3, "n_scattered": 15, "n_trapped": 1, "n_failed": 1,
     "p_stick": 3 / 19, "p_stick_ci": [0.05, 0.375], "n_energy_error_above_10meV": 2, "wall_time_s": 12.34},
    {"collision_energy": 0.6, "n_trajectories": 4, "n_dissociated": 0, "n_scattered": 0, "n_trapped": 0, "n_failed": 4,
     "p_stick": None, "p_stick_ci": [0.0, 1.0], "n_energy_error_above_10meV": 0, "wall_time_s": 1.0},
]
TABLE = [
    " E (eV)      N   diss   scat   trap   fail  P_stick            95% CI",
    "  0.300     20      3     15      1      1   0.1579 [ 0.0500,  0.3750]",
    "  0.600      4      0      0      0      4        - [ 0.0000,  1.0000]",
]
"""The rows above, formatted by hand."""


def test_run_and_curve_print_one_table():
    assert format_table(RUN_ROWS).splitlines() == [TABLE[0] + " |dE|>10meV  wall (s)",
                                                   TABLE[1] + "          2      12.3",
                                                   TABLE[2] + "          0       1.0"]
    table = pd.DataFrame([{"collision_energy": r["collision_energy"], "n": r["n_trajectories"],
                           "n_dissociated": r["n_dissociated"], "n_scattered": r["n_scattered"],
                           "n_trapped": r["n_trapped"], "n_failed": r["n_failed"],
                           "P_stick": float("nan") if r["p_stick"] is None else r["p_stick"],
                           "ci_low": r["p_stick_ci"][0], "ci_high": r["p_stick_ci"][1]} for r in RUN_ROWS])
    spec = RunSpec(surface="111", temperature=300.0, v=0, J=0)
    assert _format_curve(StickingCurve(Path("run"), spec, {}, table)).splitlines() == TABLE
