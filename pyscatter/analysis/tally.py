"""Tallies: probabilities of each outcome with binomial confidence intervals."""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import norm

from pyscatter.store import Counts


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0, 1) when there are no trials."""
    if trials == 0:
        return 0.0, 1.0
    z = norm.ppf(0.5 + confidence / 2)
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return float(low), float(high)


@dataclass(frozen=True)
class Tally:
    """Outcome probabilities of one condition with 95 % Wilson intervals."""

    counts: Counts

    def _p(self, n: int) -> float:
        return n / self.counts.n_trajectories if self.counts.n_trajectories else float("nan")

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
        return wilson_interval(self.counts.n_dissociated, self.counts.n_trajectories)

    def as_dict(self) -> dict:
        c = self.counts
        return {
            "n_trajectories": c.n_trajectories,
            "n_dissociated": c.n_dissociated,
            "n_scattered": c.n_scattered,
            "n_trapped": c.n_trapped,
            "p_stick": self.p_stick,
            "p_stick_ci": list(self.p_stick_ci),
            "p_scatter": self.p_scatter,
            "p_scatter_ci": list(wilson_interval(c.n_scattered, c.n_trajectories)),
            "p_trapped": self.p_trapped,
            "p_trapped_ci": list(wilson_interval(c.n_trapped, c.n_trajectories)),
            "n_energy_error_above_10meV": c.n_energy_error_above_10meV,
            "force_calls": c.force_calls,
            "wall_time_s": c.wall_time_s,
        }
