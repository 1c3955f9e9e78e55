"""Error-function sticking model S(E) = A/2 · [1 + erf((E − E0)/W)] and its binomial maximum-likelihood fit.

A sticking curve is a set of binomial counts (k_i dissociated out of n_i trajectories at collision
energy E_i). :func:`fit_erf` maximises Σ k_i ln S(E_i) + (n_i − k_i) ln(1 − S(E_i)) over (A, E0, W)
(or (E0, W) with A fixed) and reports standard errors from the inverse expected Fisher information
I = Σ n_i ∇S ∇Sᵀ / [S(1 − S)] at the optimum. Energies in eV; A dimensionless in (0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import erf

_P_FLOOR = 1e-12  # keeps ln S and ln(1 − S) finite


class FitError(ValueError):
    """The data do not determine the fitted parameters (e.g. P_stick saturated at every energy)."""


def erf_sticking(energy, A: float, E0: float, W: float) -> np.ndarray:
    """S(E) = A/2 · [1 + erf((E − E0)/W)]; E, E0, W in eV."""
    return 0.5 * A * (1.0 + erf((np.asarray(energy, dtype=np.float64) - E0) / W))


def _gradient(energy: np.ndarray, A: float, E0: float, W: float) -> np.ndarray:
    """∂S/∂(A, E0, W) at each energy, shape (len(energy), 3)."""
    x = (energy - E0) / W
    bump = A / (W * np.sqrt(np.pi)) * np.exp(-x * x)
    return np.stack([0.5 * (1.0 + erf(x)), -bump, -bump * x], axis=-1)


@dataclass(frozen=True)
class ReferenceCurve:
    """A user-supplied sticking function S(E) = A/2 · [1 + erf((E − E0)/W)] (E0, W in eV), drawn with the data."""

    A: float
    E0: float
    W: float
    label: str

    def __post_init__(self) -> None:
        if not (0.0 < self.A <= 1.0 and self.W > 0.0 and np.isfinite(self.E0)):
            raise ValueError(f"reference curve {self.label!r}: need 0 < A ≤ 1, W > 0 eV, finite E0; got {self}")

    def __call__(self, energy) -> np.ndarray:
        return erf_sticking(energy, self.A, self.E0, self.W)


@dataclass(frozen=True)
class ErfFit:
    """Maximum-likelihood (A, E0, W) with standard errors (A_err = 0 when A was fixed); eV for E0, W.

    covariance: 3x3 over (A, E0, W) (zero row/column for a fixed A).
    log_likelihood: binomial log-likelihood at the optimum (without the binomial coefficients).
    members: with a model committee, the fits of its members' curves (None where one cannot be fitted); the
    standard deviation of a parameter over them (ddof=1) is its model error (``E0_model_err``, ...), beside the
    statistical ``E0_err``.
    """

    A: float
    E0: float
    W: float
    A_err: float
    E0_err: float
    W_err: float
    A_fixed: bool
    covariance: np.ndarray
    log_likelihood: float
    members: tuple[ErfFit | None, ...] = ()

    def __call__(self, energy) -> np.ndarray:
        return erf_sticking(energy, self.A, self.E0, self.W)

    def model_err(self, name: str) -> float | None:
        """Standard deviation (ddof=1) of parameter ``name`` ("A", "E0", "W") over the members' fits: None without a
        committee, NaN if a member's curve could not be fitted."""
        if not self.members:
            return None
        return float(np.std([np.nan if m is None else getattr(m, name) for m in self.members], ddof=1))

    def __repr__(self) -> str:
        def value(name: str, digits: str, unit: str = "") -> str:
            model = self.model_err(name)
            spread = f" ± {getattr(self, name + '_err'):.2g}" + ("" if model is None else f" (stat) ± {model:.2g} (model)")
            return f"{name}={getattr(self, name):{digits}}{spread}{unit}"

        a = f"A={self.A:.4g} (fixed)" if self.A_fixed else value("A", ".4g")
        return f"ErfFit({a}, {value('E0', '.4g', ' eV')}, {value('W', '.4g', ' eV')})"

    def as_dict(self) -> dict:
        """JSON-ready parameters and errors; with a committee also the model errors (None where undefined) and the
        members' E0 (eV)."""
        record = {
            "A": self.A, "A_err": self.A_err, "A_fixed": self.A_fixed,
            "E0_eV": self.E0, "E0_err_eV": self.E0_err, "W_eV": self.W, "W_err_eV": self.W_err,
            "log_likelihood": self.log_likelihood,
        }
        if self.members:
            finite = lambda x: x if x is not None and np.isfinite(x) else None  # noqa: E731 - JSON has no NaN
            record.update(A_model_err=finite(self.model_err("A")), E0_model_err_eV=finite(self.model_err("E0")),
                          W_model_err_eV=finite(self.model_err("W")),
                          E0_members_eV=[None if m is None else m.E0 for m in self.members])
        return record


def fit_erf(
    energies: Sequence[float], dissociated: Sequence[int], trials: Sequence[int], A: float | None = None,
    start: ErfFit | None = None,
) -> ErfFit:
    """Binomial maximum-likelihood fit of S(E) to ``dissociated`` out of ``trials`` at ``energies`` (eV).

    ``A=None`` fits the saturation value A ∈ (0, 1]; a number fixes it. ``start``: a fit of similar data (e.g. of
    the full data, for its bootstrap resamples) as the optimiser's one starting point, instead of three starts
    along the energy range (several times faster). Raises :class:`FitError` when
    the data cannot determine the parameters (fewer energies than parameters, no rise within reach of
    the data, or a singular information matrix).
    """
    E = np.asarray(energies, dtype=np.float64)
    k = np.asarray(dissociated, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    keep = n > 0
    E, k, n = E[keep], k[keep], n[keep]
    if A is not None and not 0.0 < A <= 1.0:
        raise ValueError(f"fixed A must be in (0, 1], got {A}")
    n_free = 2 if A is not None else 3
    if len(np.unique(E)) < n_free:
        raise FitError(f"need at least {n_free} collision energies with trajectories, got {len(np.unique(E))}")
    span = max(float(np.ptp(E)), 0.05)
    e0_bounds = (E.min() - 2 * span, E.max() + 2 * span)
    w_bounds = (np.log(span / 200), np.log(5 * span))

    free = slice(1, 3) if A is not None else slice(0, 3)  # fitted entries of (A, E0, W)

    def unpack(x: np.ndarray) -> tuple[float, float, float]:
        return (x[0], x[1], np.exp(x[2])) if A is None else (A, x[0], np.exp(x[1]))

    def negative_log_likelihood(x: np.ndarray) -> tuple[float, np.ndarray]:
        a, e0, w = unpack(x)
        s = np.clip(erf_sticking(E, a, e0, w), _P_FLOOR, 1 - _P_FLOOR)
        g = _gradient(E, a, e0, w) * np.array([1.0, 1.0, w])  # ∂S/∂(A, E0, ln W)
        dl_ds = k / s - (n - k) / (1 - s)
        value = -float(np.sum(k * np.log(s) + (n - k) * np.log1p(-s)))
        return value, -(dl_ds @ g)[free]

    p = k / n
    a_start = A if A is not None else float(np.clip(p.max(), 0.05, 1.0))
    bounds = [e0_bounds, w_bounds] if A is not None else [(1e-6, 1.0), e0_bounds, w_bounds]
    if start is not None:
        x0 = [start.A, start.E0, np.log(start.W)][free]
        starts = [np.clip(x0, *np.transpose(bounds))]
    else:  # three starts along the data's energy range
        starts = [[a_start, e0, np.log(span / 3)][free] for e0 in np.linspace(E.min(), E.max(), 3)]
    best = None
    for x0 in starts:
        result = minimize(negative_log_likelihood, x0, jac=True, method="L-BFGS-B", bounds=bounds)
        if best is None or result.fun < best.fun:
            best = result
    a, e0, w = unpack(best.x)
    at_edge = not (e0_bounds[0] + 1e-6 < e0 < e0_bounds[1] - 1e-6) or not (
        w_bounds[0] + 1e-6 < np.log(w) < w_bounds[1] - 1e-6
    )
    if at_edge:
        raise FitError(
            f"the data do not constrain the rise of S(E) (best E0 = {e0:.3g} eV, W = {w:.3g} eV at the edge of "
            f"[{e0_bounds[0]:.3g}, {e0_bounds[1]:.3g}] eV); P_stick = {np.round(p, 3).tolist()}"
        )
    s = np.clip(erf_sticking(E, a, e0, w), _P_FLOOR, 1 - _P_FLOOR)
    g = _gradient(E, a, e0, w)[:, free]
    information = (g * (n / (s * (1 - s)))[:, None]).T @ g
    if np.linalg.cond(information) > 1e12:
        raise FitError("the Fisher information of the fit is singular: the data do not determine (A, E0, W)")
    covariance = np.zeros((3, 3))
    covariance[free, free] = np.linalg.inv(information)
    errors = np.sqrt(np.diag(covariance))
    return ErfFit(
        A=float(a), E0=float(e0), W=float(w), A_err=float(errors[0]), E0_err=float(errors[1]), W_err=float(errors[2]),
        A_fixed=A is not None, covariance=covariance, log_likelihood=-float(best.fun),
    )
