"""Tallies of one condition: P_stick, P_scatter, P_trapped with 95 % Wilson intervals.

Failed trajectories (integration broke down) are counted but left out of the probabilities: their
denominator is the number of finished trajectories that did not fail.
"""

from __future__ import annotations

from dataclasses import dataclass

from scipy.stats import binomtest

from pyscatter.store import Counts


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (scipy's); (0, 1) when there are no trials."""
    if trials == 0:
        return 0.0, 1.0
    ci = binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


@dataclass(frozen=True)
class Tally:
    """Outcome probabilities of one condition over its non-failed trajectories, with 95 % Wilson intervals."""

    counts: Counts

    def __repr__(self) -> str:
        c = self.counts
        low, high = self.p_stick_ci
        return (f"Tally(P_stick={self.p_stick:.4g} [{low:.4g}, {high:.4g}] of {self.n_valid}: {c.n_dissociated} dissociated, "
                f"{c.n_scattered} scattered, {c.n_trapped} trapped; {c.n_failed} failed)")

    @property
    def n_valid(self) -> int:
        """Finished trajectories that did not fail: the denominator of every probability."""
        return self.counts.n_trajectories - self.counts.n_failed

    def _p(self, n: int) -> float:
        return n / self.n_valid if self.n_valid else float("nan")

    @property
    def p_stick(self) -> float:
        return self._p(self.counts.n_dissociated)

    @property
    def p_scatter(self) -> float:
        return self._p(self.counts.n_scattered)

    @property
    def p_trapped(self) -> float:
        return self._p(self.counts.n_trapped)

    @property
    def p_stick_ci(self) -> tuple[float, float]:
        return wilson_interval(self.counts.n_dissociated, self.n_valid)

    def as_dict(self) -> dict:
        """JSON-ready counts, probabilities (None when every trajectory failed) and their intervals."""
        c = self.counts
        defined = lambda p: p if self.n_valid else None  # noqa: E731 - JSON has no NaN
        return {
            "n_trajectories": c.n_trajectories,
            "n_dissociated": c.n_dissociated,
            "n_scattered": c.n_scattered,
            "n_trapped": c.n_trapped,
            "n_failed": c.n_failed,
            "p_stick": defined(self.p_stick),
            "p_stick_ci": list(self.p_stick_ci),
            "p_scatter": defined(self.p_scatter),
            "p_scatter_ci": list(wilson_interval(c.n_scattered, self.n_valid)),
            "p_trapped": defined(self.p_trapped),
            "p_trapped_ci": list(wilson_interval(c.n_trapped, self.n_valid)),
            "n_energy_error_above_10meV": c.n_energy_error_above_10meV,
            "force_calls": c.force_calls,
            "wall_time_s": c.wall_time_s,
        }


PROBABILITY_HEADER = f"{'P_stick':>8} {'95% CI':>17} {'P_scatter':>9} {'P_trapped':>9} {'failed':>6}"
"""Column heads of :func:`probability_columns`."""


def probability_columns(summary: dict) -> str:
    """P_stick with its 95 % interval, P_scatter, P_trapped ('-' when every trajectory failed) and the failed
    count of a summary dict (:meth:`Tally.as_dict`), as fixed-width table columns."""
    p = lambda value, width: f"{value:{width}.4f}" if value is not None else f"{'-':>{width}}"  # noqa: E731
    low, high = summary["p_stick_ci"]
    return (f"{p(summary['p_stick'], 8)} [{low:7.4f}, {high:7.4f}] {p(summary['p_scatter'], 9)}"
            f" {p(summary['p_trapped'], 9)} {summary['n_failed']:6d}")
