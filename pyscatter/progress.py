"""A live progress display: trajectories done/total, current P_stick ± 95 % CI, rate and ETA."""

from __future__ import annotations

import sys

from tqdm import tqdm

from pyscatter.analysis import Tally


class ProgressBar:
    """One bar per collision energy, written to stderr; ``update`` matches ``simulation.Progress``."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self._bar: tqdm | None = None
        self._energy: float | None = None

    def update(self, collision_energy: float, done: int, total: int, tally: Tally) -> None:
        if self._bar is None or collision_energy != self._energy:
            self.close()
            self._energy = collision_energy
            self._bar = tqdm(total=total, initial=done, desc=f"E={collision_energy:g} eV", unit="traj",
                             file=self.stream, dynamic_ncols=True, smoothing=0.05)
        self._bar.update(done - self._bar.n)
        lo, hi = tally.p_stick_ci
        self._bar.set_postfix_str(f"P_stick={tally.p_stick:.3f} [{lo:.3f}, {hi:.3f}]", refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
