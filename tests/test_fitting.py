"""Error-function fits: the model against the normal CDF, the MLE against a generic optimiser, coverage."""

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.stats import binom, norm

from pyscatter.analysis.fitting import FitError, ReferenceCurve, erf_sticking, fit_erf

ENERGIES = np.array([0.2, 0.3, 0.4, 0.5, 0.6, 0.75])  # eV


def test_erf_model_is_a_scaled_normal_cdf():
    # A/2 [1 + erf((E-E0)/W)] = A Φ(√2 (E-E0)/W)
    E = np.linspace(-1, 2, 31)
    assert np.allclose(erf_sticking(E, 0.8, 0.45, 0.15), 0.8 * norm.cdf(np.sqrt(2) * (E - 0.45) / 0.15), atol=1e-14)
    assert ReferenceCurve(0.5, 0.3, 0.1, "ref")(0.3) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        ReferenceCurve(1.5, 0.3, 0.1, "bad A")


@pytest.mark.parametrize("warm", [False, True], ids=["three starts", "warm start"])
@pytest.mark.parametrize("A", [None, 0.9])
def test_maximum_likelihood_agrees_with_a_generic_optimiser(A, warm):
    n = np.full(6, 200)
    k = np.random.default_rng(7).binomial(n, erf_sticking(ENERGIES, 0.9, 0.45, 0.15))
    # warm: started from the fit of other data, as a bootstrap resample is started from the full data's fit
    other = fit_erf(ENERGIES, np.random.default_rng(8).binomial(n, erf_sticking(ENERGIES, 0.7, 0.55, 0.3)), n)
    fit = fit_erf(ENERGIES, k, n, A=A, start=other if warm else None)

    def nll(x):
        a, e0, w = (x if A is None else (A, *x))
        if not (0 < a <= 1 and w > 0):
            return np.inf
        return -binom.logpmf(k, n, np.clip(erf_sticking(ENERGIES, a, e0, w), 1e-15, 1 - 1e-15)).sum()

    start = [0.8, 0.4, 0.2] if A is None else [0.4, 0.2]
    ref = minimize(nll, start, method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 20000})
    expected = ref.x if A is None else [A, *ref.x]
    assert [fit.A, fit.E0, fit.W] == pytest.approx(expected, abs=2e-5)
    assert fit.A_fixed == (A is not None) and (fit.A_err == 0) == (A is not None)


@pytest.mark.parametrize("truth, A", [((0.9, 0.45, 0.15), None), ((1.0, 0.5, 0.12), 1.0)])
def test_parameters_recovered_within_their_uncertainty_over_many_seeds(truth, A):
    """95 % Wald intervals from the Fisher information cover the true (A, E0, W) close to nominally."""
    n = np.full(len(ENERGIES), 300)
    p = erf_sticking(ENERGIES, *truth)
    z = norm.ppf(0.975)
    hits = []
    for seed in range(200):
        fit = fit_erf(ENERGIES, np.random.default_rng(seed).binomial(n, p), n, A=A)
        hits.append([abs(fit.E0 - truth[1]) <= z * fit.E0_err, abs(fit.W - truth[2]) <= z * fit.W_err]
                    + ([abs(fit.A - truth[0]) <= z * fit.A_err] if A is None else []))
    coverage = np.mean(hits, axis=0)
    assert np.all((coverage >= 0.91) & (coverage <= 0.985)), coverage


def test_saturated_or_too_few_points_raise_fit_error():
    n = np.full(6, 100)
    with pytest.raises(FitError):
        fit_erf(ENERGIES, n, n)  # P_stick = 1 everywhere: no rise to fit
    with pytest.raises(FitError):
        fit_erf(ENERGIES[:2], [10, 50], [100, 100])  # two energies, three parameters
