"""Adaptive sample size: how many trajectories a condition needs for a target 95 % Wilson half-width of P_stick.

With ``target_ci`` each energy is looked at after n₁ = 100 trajectories and then at
n_{k+1} = min(cap, max(⌈1.25 n_k⌉, min(2 n_k, n*))), where n* = z² p̃(1 − p̃)/H² is the count at which the
Wilson half-width would reach H for the current Agresti–Coull estimate p̃ = (k + z²/2)/(n + z²); it
stops at the first look whose 95 % Wilson half-width is ≤ H, or at the cap (``trajectories``). The
table reports the counts of exactly the first n trajectories (by index) at the stopping look, so a
rerun replays the same decisions and computes nothing new. The coverage and bias of the interval
at the stopping look (optional stopping) are measured in ``docs/analysis.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import norm

from pyscatter.analysis.tally import wilson_interval
from pyscatter.conditions import check_trajectories


@dataclass(frozen=True)
class SampleSizeRule:
    """Adaptive sample size of one condition: enough trajectories once the 95 % Wilson half-width of P_stick is ≤ ``half_width``.

    cap: most trajectories per condition.  first: trajectories at the first look. See the module docstring.
    """

    half_width: float
    cap: int
    first: int = 100

    def __post_init__(self) -> None:
        if not 0.0 < self.half_width < 0.5:
            raise ValueError(f"target CI half-width must be in (0, 0.5), got {self.half_width}")
        check_trajectories(self.cap)
        check_trajectories(self.first)

    @property
    def first_look(self) -> int:
        return min(self.first, self.cap)

    def next_look(self, n: int, dissociated: int) -> int | None:
        """Trajectories at the next look after seeing ``dissociated`` out of ``n``; None to stop at ``n``."""
        low, high = wilson_interval(dissociated, n)
        if (high - low) / 2 <= self.half_width or n >= self.cap:
            return None
        z2 = norm.ppf(0.975) ** 2
        p = (dissociated + z2 / 2) / (n + z2)
        needed = math.ceil(z2 * p * (1 - p) / self.half_width**2)
        return min(self.cap, max(math.ceil(1.25 * n), min(2 * n, needed)))
