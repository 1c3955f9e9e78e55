"""benchmarks/validate_model.py: the paired fit difference against the independent fits' errors; the table's tests."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest, fisher_exact

from pyscatter.analysis.fitting import fit_erf, erf_sticking
from pyscatter.outcomes import Outcome

_spec = importlib.util.spec_from_file_location("validate_model", Path(__file__).resolve().parents[1] / "benchmarks" / "validate_model.py")
validate_model = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(validate_model)

ENERGIES = (0.3, 0.4, 0.5, 0.75)


def curve(rng, n: int = 400) -> dict[float, dict[int, Outcome]]:
    """n trajectories per energy of a true erf curve (A 0.7, E0 0.45 eV, W 0.15 eV)."""
    return {e: {i: Outcome.DISSOCIATED if rng.random() < erf_sticking(e, 0.7, 0.45, 0.15) else Outcome.SCATTERED
                for i in range(n)} for e in ENERGIES}


def test_paired_fit_difference_of_independent_curves_has_the_independent_fits_error():
    """Two independent samples of one curve, paired by index: resampling the pairs gives the error of the difference
    that the two fits' Fisher-information errors give in quadrature; the point difference is that of the two fits."""
    rng = np.random.default_rng(3)
    model, reference = curve(rng), curve(rng)
    result = validate_model.paired_fit_difference(model, reference, draws=150)
    fits = [fit_erf(ENERGIES, [sum(o is Outcome.DISSOCIATED for o in runs[e].values()) for e in ENERGIES],
                    [len(runs[e]) for e in ENERGIES]) for runs in (model, reference)]
    assert result["E0"] == pytest.approx(fits[0].E0 - fits[1].E0, abs=1e-9)
    assert result["E0_sd"] == pytest.approx(math.hypot(fits[0].E0_err, fits[1].E0_err), rel=0.3)
    assert result["E0_ci95"][0] < result["E0"] < result["E0_ci95"][1]


def test_paired_fit_difference_of_nearly_identical_runs_is_sharp():
    """The model ends like the reference on all but 2 % of the pairs: the difference's error is a fraction of the
    independent one, and of one identical copy it is exactly zero."""
    rng = np.random.default_rng(4)
    reference = curve(rng)
    flip = {Outcome.DISSOCIATED: Outcome.SCATTERED, Outcome.SCATTERED: Outcome.DISSOCIATED}
    model = {e: {i: flip[o] if rng.random() < 0.02 else o for i, o in runs.items()} for e, runs in reference.items()}
    close = validate_model.paired_fit_difference(model, reference, draws=150)
    fit = fit_erf(ENERGIES, [sum(o is Outcome.DISSOCIATED for o in reference[e].values()) for e in ENERGIES], [400] * 4)
    assert close["E0_sd"] < 0.5 * math.sqrt(2) * fit.E0_err
    same = validate_model.paired_fit_difference(reference, reference, draws=20)
    assert same["E0"] == 0.0 and same["E0_sd"] == 0.0 and same["W_sd"] == 0.0


def test_markdown_row_counts_discordant_pairs_and_takes_exact_tests():
    """One energy of 150 pairs: 13 reference-only and 4 model-only dissociations (McNemar: an exact binomial test of
    4 in 17), and an unpaired 46 of 100 against the reference's 91 of 150 (Fisher)."""
    D, S = Outcome.DISSOCIATED, Outcome.SCATTERED
    reference = {i: D if i < 91 else S for i in range(150)}
    paired = {i: S if i < 13 else D if 91 <= i < 95 else o for i, o in reference.items()}
    unpaired = {i: D if i < 46 else S for i in range(100)}
    row = {"collision_energy": 0.6, "paired": validate_model.compare(paired, reference, paired=True),
           "unpaired": validate_model.compare(unpaired, reference, paired=False)}
    table = validate_model.markdown_table({"facets": {"211": {"rows": [row]}}})
    mcnemar = binomtest(4, 17, 0.5).pvalue
    fisher = fisher_exact([[46, 54], [91, 59]]).pvalue
    assert table.splitlines()[-1] == (f"| 211 (v=1) | 0.60 | 0.607 (150) | 0.547 (150) | 4 / 13 of 150 | {mcnemar:.2f} "
                                      f"| 0.460 (100) | {fisher:.2f} |")
    assert row["paired"]["discordant_fraction"] == pytest.approx(17 / 150)


def test_paired_comparison_counts_only_partners_of_reference_trajectories():
    """Partners run ahead of the reference prefix (to fill its gaps later) do not enter the paired row: 40 more model
    trajectories that all dissociate leave P_model at the partners' 30 of 100."""
    D, S = Outcome.DISSOCIATED, Outcome.SCATTERED
    reference = {i: D if i < 35 else S for i in range(100)}
    paired = {i: D if i < 30 or i >= 100 else S for i in range(140)}
    row = validate_model.compare(paired, reference, paired=True)
    assert (row["n_model"], row["n_reference"], row["n_pairs"]) == (100, 100, 100)
    assert (row["p_model"], row["discordant"]) == (0.30, [0, 5])
    assert row["mcnemar_p"] == pytest.approx(binomtest(0, 5, 0.5).pvalue)


def test_energies_are_a_subset_of_the_conditions_in_the_order_given():
    """``--energies`` picks some of a condition's energies (the undecided ones first); others stop the stage."""
    from argparse import Namespace

    assert validate_model.energies("211", Namespace(energies=None)) == (0.3, 0.45, 0.6, 0.85)
    assert validate_model.energies("211", Namespace(energies=[0.6, 0.45])) == (0.6, 0.45)
    with pytest.raises(SystemExit, match=r"\[0\.5\] eV: not among"):
        validate_model.energies("211", Namespace(energies=[0.6, 0.5]))


def test_another_state_starts_from_the_facets_v1_snapshots_of_the_same_model(tmp_path, monkeypatch):
    """v=0 runs reuse the v=1 thermal slabs of their own model: the reference's for the reference (and so for the
    paired partners), the model's own unpaired ones for the unpaired run; v=1 runs make their own."""
    from argparse import Namespace

    for kind in ("reference_Cu111", "unpaired_Cu111", "reference_Cu111v0"):
        (tmp_path / kind).mkdir()
        (tmp_path / kind / validate_model.SNAPSHOT_FILE).touch()
    calls = []
    monkeypatch.setattr(validate_model, "run", lambda spec, energies, n, out_dir, **kw: calls.append(
        (out_dir.name, kw.get("snapshots_from"))) or [{"n_dissociated": 0, "n_trajectories": n}])
    args = Namespace(facets=["111v0", "111"], energies=None, reference="teacher", model="h2cu-ace",
                     reference_trajectories=25, model_trajectories=100, workers=1, device="cpu", batch_size=None,
                     last_start=None, out=tmp_path)
    validate_model.run_model(args)
    snapshots = lambda kind: tmp_path / kind / validate_model.SNAPSHOT_FILE  # noqa: E731
    assert calls == [("paired_Cu111v0", snapshots("reference_Cu111v0")),
                     ("unpaired_Cu111v0", snapshots("unpaired_Cu111")),
                     ("paired_Cu111", snapshots("reference_Cu111")), ("unpaired_Cu111", None)]
    calls.clear()
    monkeypatch.setattr(validate_model, "ModelRef", lambda name, **kw: Namespace(load=lambda: (name, None)))
    validate_model.run_reference(args)
    assert set(calls) == {("reference_Cu111v0", snapshots("reference_Cu111")), ("reference_Cu111", None)}
