"""The one progress display of the command line and of ``sticking_curve(progress=True)``: a tqdm bar on stderr
summed over named parts.

Workflows report progress through plain callbacks; :class:`ProgressBar` turns each kind of callback
into bar updates: trajectories of a run or curve (per collision energy, with the running P_stick and
its 95 % Wilson interval), conditions of a campaign, and Langevin steps of the slab thermalisation.
"""

from __future__ import annotations

import sys
from collections.abc import Hashable
from pathlib import Path


class ProgressBar:
    """One bar whose count and total are the sums over parts (e.g. collision energies); a context manager."""

    def __init__(self, unit: str = "traj", description: str = "", stream=None):
        self.unit, self.description, self.stream = unit, description, stream or sys.stderr
        self._bar = None
        self._done: dict[Hashable, int] = {}
        self._total: dict[Hashable, int] = {}

    def update(self, part: Hashable, done: int, total: int | None = None, description: str | None = None,
               postfix: str | None = None) -> None:
        """Part ``part`` has ``done`` of ``total`` units (``total`` None: unchanged)."""
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=0, unit=self.unit, desc=self.description, file=self.stream,
                             dynamic_ncols=True, smoothing=0.05)
        self._done[part] = done
        if total is not None:
            self._total[part] = total
        self._bar.total = sum(self._total.values())
        if description is not None:
            self._bar.set_description_str(description, refresh=False)
        if postfix is not None:
            self._bar.set_postfix_str(postfix, refresh=False)
        self._bar.update(sum(self._done.values()) - self._bar.n)

    def expect(self, parts: dict[Hashable, int]) -> None:
        """Announce the totals of parts that have not started yet (a whole curve or campaign)."""
        for part, total in parts.items():
            self._done.setdefault(part, 0)
            self._total.setdefault(part, total)

    def expect_members(self, members: list[str], energies, n: int, committee_trajectories: int | None) -> None:
        """Announce the trajectories committee ``members`` will run of the main model's first ``n`` per energy."""
        from pyscatter.workflows.committee import shared_trajectories

        self.expect({(m, e): shared_trajectories(n, committee_trajectories) for m in members for e in energies})

    def trajectories(self, collision_energy: float, done: int, total: int, tally, member: str | None = None) -> None:
        """The ``on_progress`` callback of :func:`pyscatter.workflows.run.run` (of a committee ``member``'s run: its
        parts are apart from the main run's)."""
        low, high = tally.p_stick_ci
        who = "" if member is None else f"{Path(member).name} "
        self.update(collision_energy if member is None else (member, collision_energy), done, total,
                    postfix=f"{who}E={collision_energy:g} eV: {done}/{total}, P_stick={tally.p_stick:.3f} [{low:.3f}, {high:.3f}]")

    def member(self, model: str):
        """The ``on_progress`` of committee member ``model``'s run (:func:`pyscatter.workflows.committee.run_committee`)."""
        return lambda collision_energy, done, total, tally: self.trajectories(collision_energy, done, total, tally, model)

    def condition(self, spec, collision_energy: float, done: int) -> None:
        """The ``on_progress`` callback of :func:`pyscatter.workflows.campaign.run_campaign`."""
        self.update((spec, collision_energy), done, description=(
            f"{spec.molecule}(v={spec.v},J={spec.J}) {spec.slab_label} {spec.temperature:g} K "
            f"{Path(spec.model).stem} E={collision_energy:g} eV"))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._done.clear()
        self._total.clear()

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def thermalisation_bar(stream=None):
    """A ``progress(steps_done, steps_total)`` callback for the slab thermalisation; its bar closes when done."""
    bar = ProgressBar(unit="step", description="thermalising slab", stream=stream)

    def report(done: int, total: int) -> None:
        bar.update("steps", done, total)
        if done >= total:
            bar.close()

    return report
