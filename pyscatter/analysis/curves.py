"""Sticking curves: P_stick(E) of one state on one facet with one model, as stored in a run directory.

A curve is one run directory (one :class:`~pyscatter.conditions.RunSpec`) whose collision energies
are its conditions, so ``pyscatter run``, ``pyscatter curve`` and :func:`sticking_curve` share and
resume the same results. :func:`load_results` reads a run directory (read-only, also while a run is
going) without computing anything; :func:`pyscatter.workflows.curve.sticking_curve` runs one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import pandas as pd

from pyscatter.analysis.committee import COMMITTEE_TABLE_COLUMNS, MEMBER_COLUMNS, committee_estimate, committee_fits
from pyscatter.analysis.fitting import ErfFit, fit_erf
from pyscatter.analysis.stored import complete_prefix, open_run, stored_energies
from pyscatter.analysis.tally import Tally
from pyscatter.conditions import RunSpec
from pyscatter.store import RunReader

TABLE_COLUMNS = (
    "collision_energy", "n", "n_dissociated", "n_scattered", "n_trapped", "n_failed", "P_stick", "ci_low", "ci_high",
)
"""Columns of :attr:`StickingCurve.table`: collision energy (eV), trajectory counts (n: all finished, failed
included), P_stick over the non-failed trajectories and its 95 % Wilson interval; a run with a committee adds
:data:`~pyscatter.analysis.committee.COMMITTEE_TABLE_COLUMNS`."""


@dataclass(frozen=True)
class StickingCurve:
    """P_stick(E) of one run directory.

    directory: the run directory.  spec: its :class:`RunSpec`.  provenance: model identity, versions.
    table: pandas DataFrame with :data:`TABLE_COLUMNS`, one row per collision energy (eV), ascending.
    committee: None, or for a run with a model committee (:mod:`pyscatter.analysis.committee`) one row per energy and
    member (:data:`~pyscatter.analysis.committee.MEMBER_COLUMNS`); the table then has the committee's columns.
    """

    directory: Path
    spec: RunSpec
    provenance: dict
    table: pd.DataFrame
    committee: pd.DataFrame | None = None

    @property
    def label(self) -> str:
        """e.g. ``H2(v=1, J=1)/Cu(111), 925 K, model emt`` (the run's metal)."""
        s = self.spec
        return f"{s.molecule}(v={s.v}, J={s.J})/{s.slab_label}, {s.temperature:g} K, model {Path(s.model).stem}"

    def __repr__(self) -> str:
        t = self.table
        head = f"StickingCurve({self.label}; {len(t)} energies; {self.directory})"
        return head if t.empty else f"{head}\n{t.to_string(index=False, float_format=lambda x: f'{x:.4g}')}"

    @cached_property
    def trajectories(self) -> pd.DataFrame:
        """One row per stored trajectory of the curve's energies: outcome, final state and regenerated initial
        state (:data:`pyscatter.analysis.trajectories.TRAJECTORY_COLUMNS`); read on first use."""
        from pyscatter.analysis.trajectories import trajectory_table

        return trajectory_table(self.directory, self.table["collision_energy"].tolist())

    def plot(self, fit: bool = True, A: float | None = None, log: bool = False, references=()):
        """A matplotlib Figure of P_stick(E) with 95 % Wilson error bars (and the committee's model sd beside them),
        the erf fit (if ``fit`` and the data determine one; ``A`` fixes its saturation value) and
        :class:`ReferenceCurve` s ``references``."""
        from pyscatter.analysis.fitting import FitError
        from pyscatter.analysis.plotting import sticking_curve_figure

        erf = None
        if fit:
            try:
                erf = self.fit(A=A)
            except FitError:
                pass
        return sticking_curve_figure([self], [erf], references, log=log)

    def fit(self, A: float | None = None) -> ErfFit:
        """Binomial maximum-likelihood error-function fit (A free if None); raises FitError if undetermined.
        With a committee, the fit's ``members`` are the members' curves' fits, whose spread is its model error."""
        t = self.table
        fit = fit_erf(t["collision_energy"], t["n_dissociated"], t["n"] - t["n_failed"], A=A)
        return fit if self.committee is None else replace(fit, members=committee_fits(t, self.committee, A))

    def records(self) -> list[dict]:
        """The table as JSON-ready dicts, each with the run's spec and model identity (and with a committee the
        members' P_stick estimates, ``P_stick_members``)."""
        spec = self.spec.as_dict()
        records = [
            {**spec, **row, "model_identity": self.provenance.get("model_identity")}
            for row in self.table.to_dict(orient="records")
        ]
        if self.committee is not None:
            for record in records:
                rows = self.committee[self.committee["collision_energy"] == record["collision_energy"]]
                record["P_stick_members"] = rows["P_stick_estimate"].tolist()
        return records


def _row(energy: float, counts) -> dict:
    tally = Tally(counts)
    low, high = tally.p_stick_ci
    return {
        "collision_energy": energy,
        "n": counts.n_trajectories,
        "n_dissociated": counts.n_dissociated,
        "n_scattered": counts.n_scattered,
        "n_trapped": counts.n_trapped,
        "n_failed": counts.n_failed,
        "P_stick": tally.p_stick,
        "ci_low": low,
        "ci_high": high,
    }


def curve_from_store(store: RunReader, limits: dict[float, int | None],
                     committee_trajectories: int | None = None) -> StickingCurve:
    """Rows for each energy (eV) over its first ``limit`` trajectories (None: the complete prefix); with the run's
    committee over its first ``committee_trajectories`` of those (None: as many as all members hold)."""
    rows, members = [], []
    for energy, limit in sorted(limits.items()):
        cid = store.condition_id(energy)
        n = complete_prefix(store.done_indices(cid)) if limit is None else limit
        counts = store.counts(cid, limit=n)
        if counts.n_trajectories:
            rows.append(_row(energy, counts))
            estimate = committee_estimate(store, energy, n, committee_trajectories)
            if estimate is not None:
                rows[-1].update(estimate.row())
                members += estimate.member_rows(energy)
    columns = list(TABLE_COLUMNS) + (list(COMMITTEE_TABLE_COLUMNS) if store.committee else [])
    committee = pd.DataFrame(members, columns=list(MEMBER_COLUMNS)) if store.committee else None
    return StickingCurve(store.directory, store.spec, store.provenance, pd.DataFrame(rows, columns=columns), committee)


def load_results(directory: str | Path, energies: Sequence[float] | None = None) -> StickingCurve:
    """The sticking curve stored in ``directory`` (all energies, or those given in eV), computing nothing.

    Each energy counts its longest complete prefix of trajectory indices.
    """
    with open_run(directory) as store:
        return curve_from_store(store, dict.fromkeys(stored_energies(store, energies)))


