"""pyscatter.analysis.validation: the tests against closed forms and published numbers, the paired fit difference,
the table and the verdict against its bar."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pyscatter.analysis.fitting import erf_sticking, fit_erf
from pyscatter.analysis.validation import (
    Bar,
    compare,
    condition_record,
    markdown_table,
    mcnemar_exact,
    newcombe,
    paired_fit_difference,
    Verdict,
    verdict,
)
from pyscatter.outcomes import Outcome

D, S = Outcome.DISSOCIATED, Outcome.SCATTERED
ENERGIES = (0.3, 0.4, 0.5, 0.75)


def exact_mcnemar(b: int, c: int) -> float:
    """Two-sided exact McNemar p in closed form: twice the binomial(b + c, 1/2) tail at the smaller count, at most 1."""
    n = b + c
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n)


def exact_fisher(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided Fisher p in closed form: the hypergeometric probabilities of all tables with the margins of
    (k1, n1 - k1; k2, n2 - k2) that are no more probable than the observed one."""
    total = k1 + k2
    probability = {a: math.comb(n1, a) * math.comb(n2, total - a) / math.comb(n1 + n2, total)
                   for a in range(max(0, total - n2), min(total, n1) + 1)}
    return sum(p for p in probability.values() if p <= probability[k1] * (1 + 1e-7))


@pytest.mark.parametrize("b, c", [(4, 13), (0, 5), (41, 75), (7, 7), (1, 0), (30, 2)])
def test_mcnemar_is_the_exact_binomial_tail(b, c):
    assert mcnemar_exact(b, c) == pytest.approx(exact_mcnemar(b, c), rel=1e-9)


def test_mcnemar_without_discordant_pairs_is_one():
    assert mcnemar_exact(0, 0) == 1.0


@pytest.mark.parametrize("counts, interval", [
    ((56, 70, 48, 80), (0.0524, 0.3339)), ((9, 10, 3, 10), (0.1705, 0.8090)), ((6, 7, 2, 7), (0.0582, 0.8062)),
    ((5, 56, 0, 29), (-0.0381, 0.1926)), ((0, 10, 0, 20), (-0.1611, 0.2775)), ((0, 10, 0, 10), (-0.2775, 0.2775)),
    ((10, 10, 0, 20), (0.6791, 1.0000)), ((10, 10, 0, 10), (0.6075, 1.0000)),
])
def test_newcombe_interval_is_newcombes_table_ii_method_10(counts, interval):
    """Newcombe, Stat. Med. 17, 873 (1998), Table II, method 10 (hybrid score, no continuity correction), the
    published examples (a)-(h) to the 4 decimals printed."""
    d, low, high = newcombe(*counts)
    k1, n1, k2, n2 = counts
    assert d == pytest.approx(k1 / n1 - k2 / n2)
    assert (low, high) == pytest.approx(interval, abs=6e-5)


def test_row_counts_discordant_pairs_and_takes_exact_tests():
    """One energy of 150 pairs: 13 reference-only and 4 model-only dissociations, and an unpaired 46 of 100 against
    the reference's 91 of 150; the markdown row holds both tests' p."""
    reference = {i: D if i < 91 else S for i in range(150)}
    paired = {i: S if i < 13 else D if 91 <= i < 95 else o for i, o in reference.items()}
    unpaired = {i: D if i < 46 else S for i in range(100)}
    row = {"collision_energy": 0.6, "paired": compare(paired, reference, paired=True),
           "unpaired": compare(unpaired, reference, paired=False)}
    assert row["paired"]["discordant"] == [4, 13]
    assert row["paired"]["mcnemar_p"] == pytest.approx(exact_mcnemar(4, 13), rel=1e-9)
    assert row["unpaired"]["fisher_p"] == pytest.approx(exact_fisher(46, 100, 91, 150), rel=1e-9)
    assert row["paired"]["discordant_fraction"] == pytest.approx(17 / 150)
    condition = {"surface": "211", "v": 1, "rows": [row]}
    table = markdown_table({"facets": {"211": condition}})
    assert table.splitlines()[-1] == (f"| 211 (v=1) | 0.60 | 0.607 (150) | 0.547 (150) | 4 / 13 of 150 | "
                                      f"{exact_mcnemar(4, 13):.2f} | 0.460 (100) | {exact_fisher(46, 100, 91, 150):.2f} |")


def test_paired_comparison_counts_only_partners_of_reference_trajectories():
    """Partners run ahead of the reference prefix (to fill its gaps later) do not enter the paired row: 40 more model
    trajectories that all dissociate leave P_model at the partners' 30 of 100."""
    reference = {i: D if i < 35 else S for i in range(100)}
    paired = {i: D if i < 30 or i >= 100 else S for i in range(140)}
    row = compare(paired, reference, paired=True)
    assert (row["n_model"], row["n_reference"], row["n_pairs"]) == (100, 100, 100)
    assert (row["p_model"], row["discordant"]) == (0.30, [0, 5])
    assert row["mcnemar_p"] == pytest.approx(exact_mcnemar(0, 5))


def curve(rng, n: int = 400, E0: float = 0.45) -> dict[float, dict[int, Outcome]]:
    """n trajectories per energy of a true erf curve (A 0.7, E0 eV, W 0.15 eV)."""
    return {e: {i: D if rng.random() < erf_sticking(e, 0.7, E0, 0.15) else S for i in range(n)} for e in ENERGIES}


def test_paired_fit_difference_of_independent_curves_has_the_independent_fits_error():
    """Two independent samples of one curve, paired by index: resampling the pairs gives the error of the difference
    that the two fits' Fisher-information errors give in quadrature; the point difference is that of the two fits."""
    rng = np.random.default_rng(3)
    model, reference = curve(rng), curve(rng)
    result = paired_fit_difference(model, reference, draws=150)
    fits = [fit_erf(ENERGIES, [sum(o is D for o in runs[e].values()) for e in ENERGIES],
                    [len(runs[e]) for e in ENERGIES]) for runs in (model, reference)]
    assert result["E0"] == pytest.approx(fits[0].E0 - fits[1].E0, abs=1e-9)
    assert result["E0_sd"] == pytest.approx(math.hypot(fits[0].E0_err, fits[1].E0_err), rel=0.3)
    assert result["E0_ci95"][0] < result["E0"] < result["E0_ci95"][1]


def test_paired_fit_difference_of_nearly_identical_runs_is_sharp():
    """The model ends like the reference on all but 2 % of the pairs: the difference's error is a fraction of the
    independent one, and of one identical copy it is exactly zero."""
    rng = np.random.default_rng(4)
    reference = curve(rng)
    flip = {D: S, S: D}
    model = {e: {i: flip[o] if rng.random() < 0.02 else o for i, o in runs.items()} for e, runs in reference.items()}
    close = paired_fit_difference(model, reference, draws=150)
    fit = fit_erf(ENERGIES, [sum(o is D for o in reference[e].values()) for e in ENERGIES], [400] * 4)
    assert close["E0_sd"] < 0.5 * math.sqrt(2) * fit.E0_err
    same = paired_fit_difference(reference, reference, draws=20)
    assert same["E0"] == 0.0 and same["E0_sd"] == 0.0 and same["W_sd"] == 0.0


def test_verdicts_against_the_bar():
    """Identical runs pass; a curve 40 meV later fails on its pairs and its ΔE0; the bar's ΔE0 and alpha decide;
    without unpaired runs the verdict is undecided unless the bar judges the pairs only."""
    rng = np.random.default_rng(5)
    reference = curve(rng, n=300)
    same = condition_record({"reference": reference, "paired": reference, "unpaired": reference}, Bar(), draws=20)
    assert (same["verdict"], same["reasons"]) == ("pass", [])
    # the shifted model: each reference trajectory's uniform draw kept, so the pairs follow the shift
    draws = {e: rng.random(300) for e in ENERGIES}
    runs = {E0: {e: {i: D if draws[e][i] < erf_sticking(e, 0.7, E0, 0.15) else S for i in range(300)}
                 for e in ENERGIES} for E0 in (0.45, 0.49)}
    shifted = condition_record({"reference": runs[0.45], "paired": runs[0.49]}, Bar(pairs_only=True), draws=50)
    assert shifted["verdict"] == "fail"
    assert any("over all energies" in r for r in shifted["reasons"])
    assert any(r.startswith("paired ΔE0 = +") for r in shifted["reasons"])
    assert verdict(shifted, Bar(max_delta_e0=0.1, alpha=1e-30, pairs_only=True)).outcome == "pass"
    assert verdict(shifted, Bar(max_delta_e0=0.1, alpha=1e-30)) == verdict(
        shifted, Bar(max_delta_e0=0.1, alpha=1e-30, pairs_only=False))
    assert verdict(shifted, Bar(max_delta_e0=0.1, alpha=1e-30)).outcome == "undecided"
    # 40 pairs per energy: the point estimate may lie within the bar, but its error does not
    few = condition_record({"reference": {e: dict(list(r.items())[:40]) for e, r in runs[0.45].items()},
                            "paired": {e: dict(list(r.items())[:40]) for e, r in runs[0.45].items()}},
                           Bar(pairs_only=True), draws=50)
    assert few["paired_fit_difference"]["E0_sd"] == 0.0 and few["verdict"] == "pass"  # identical: no spread
    noisy = dict(few, paired_fit_difference=dict(few["paired_fit_difference"], E0=0.001, E0_sd=0.05))
    assert verdict(noisy, Bar(pairs_only=True)) == Verdict(
        "undecided", ("paired ΔE0 = +1 ± 50 meV: its error exceeds the bar, more pairs needed",))
    # beyond the bar, but with a larger error: not a miss either (Cu(100) at 25-50 pairs per energy: -35 ± 69 meV)
    far_noisy = dict(noisy, paired_fit_difference=dict(noisy["paired_fit_difference"], E0=-0.035, E0_sd=0.069))
    assert verdict(far_noisy, Bar(pairs_only=True)) == Verdict(
        "undecided", ("paired ΔE0 = -35 ± 69 meV: its error exceeds the bar, more pairs needed",))


def test_bar_refuses_impossible_levels():
    with pytest.raises(ValueError, match="alpha"):
        Bar(alpha=1.5)
    with pytest.raises(ValueError, match="ΔE0"):
        Bar(max_delta_e0=0.0)
