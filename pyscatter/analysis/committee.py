"""Model uncertainty of P_stick from a committee of models run on the main model's trajectory indices.

A committee run (:func:`pyscatter.workflows.committee.run_committee`) integrates trajectories 0..m−1 of each
collision energy with every member, from the main run's thermal snapshots and seeds (identical starts). The
main model (``--model``) keeps the headline P_stick and its 95 % Wilson interval; the committee adds the
model uncertainty beside it, estimated from paired differences on the shared indices: for member k,
d_k = P_k(first m) − P_main(first m), the member's estimate is P_main(all n) + d_k, the committee mean their
mean and ``p_stick_model_sd`` = sd_k(d_k) (ddof=1). With m = n (the default) the estimates are the members'
own P_stick and the sd their spread. Pairing cancels the sampling noise the models share (most trajectories
end alike from the same start), so m can be well below n; what remains of the members' finite samples adds to
the sd, which errs towards overstating the model spread. Probabilities count non-failed
trajectories; estimates are not clipped to [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pyscatter.analysis.fitting import ErfFit, FitError, fit_erf
from pyscatter.analysis.stored import complete_prefix
from pyscatter.analysis.tally import Tally
from pyscatter.store import Counts, RunReader, StoreError

COMMITTEE_TABLE_COLUMNS = ("n_committee", "P_stick_committee_mean", "P_stick_model_sd")
"""Columns a committee adds to :attr:`~pyscatter.analysis.curves.StickingCurve.table`: the shared trajectory
count m, the mean of the members' estimates and their standard deviation (the model error)."""
MEMBER_COLUMNS = ("collision_energy", "member", "model", "model_identity", "n", "n_dissociated", "n_failed", "P_stick",
                  "P_stick_estimate")
"""Columns of :attr:`~pyscatter.analysis.curves.StickingCurve.committee`, one row per energy (eV) and member:
its counts and P_stick over the first ``n`` trajectories, and its estimate P_main(all) + d_k."""
_NONE = Tally(Counts(0, 0, 0, 0, 0, 0.0))
"""A member without shared trajectories (P_stick NaN)."""


@dataclass(frozen=True)
class MemberTally:
    """One member's outcomes over the shared trajectories: its model name, identity and :class:`Tally`."""

    model: str
    identity: str
    tally: Tally


@dataclass(frozen=True)
class CommitteeEstimate:
    """The committee's P_stick at one collision energy, paired with the main model on indices 0..n−1.

    n: shared trajectories m.  main: the main model's tally over all its counted trajectories;
    main_paired: over the first n.  members: each member's over the first n.
    """

    n: int
    main: Tally
    main_paired: Tally
    members: tuple[MemberTally, ...]

    @property
    def differences(self) -> np.ndarray:
        """d_k = P_k(first n) − P_main(first n) per member."""
        return np.array([m.tally.p_stick - self.main_paired.p_stick for m in self.members])

    @property
    def estimates(self) -> np.ndarray:
        """Each member's P_stick estimate P_main(all) + d_k (its own P_stick when n is the main count)."""
        return self.main.p_stick + self.differences

    @property
    def mean(self) -> float:
        return float(np.mean(self.estimates))

    @property
    def model_sd(self) -> float:
        """Between-member standard deviation of P_stick (ddof=1), from the paired differences."""
        return float(np.std(self.differences, ddof=1))

    def row(self) -> dict:
        """The :data:`COMMITTEE_TABLE_COLUMNS` of a curve's table row."""
        return dict(zip(COMMITTEE_TABLE_COLUMNS, (self.n, self.mean, self.model_sd)))

    def member_rows(self, collision_energy: float) -> list[dict]:
        """One :data:`MEMBER_COLUMNS` row per member."""
        return [dict(zip(MEMBER_COLUMNS, (collision_energy, k, m.model, m.identity, m.tally.counts.n_trajectories,
                                          m.tally.counts.n_dissociated, m.tally.counts.n_failed, m.tally.p_stick,
                                          estimate)))
                for k, (m, estimate) in enumerate(zip(self.members, self.estimates))]

    def as_dict(self) -> dict:
        """JSON-ready (None where undefined): committee_trajectories (m), p_stick_committee_mean, p_stick_model_sd,
        p_stick_members (the estimates) and per member its model, identity, counts and P_stick over the first m."""
        return {
            "committee_trajectories": self.n,
            "p_stick_committee_mean": _json(self.mean),
            "p_stick_model_sd": _json(self.model_sd),
            "p_stick_members": [_json(p) for p in self.estimates],
            "committee": [{"model": m.model, "model_identity": m.identity, "n_trajectories": m.tally.counts.n_trajectories,
                           "n_dissociated": m.tally.counts.n_dissociated, "n_failed": m.tally.counts.n_failed,
                           "p_stick": _json(m.tally.p_stick)} for m in self.members],
        }


COMMITTEE_HEADER = f"{'N_comm':>6} {'mean':>8} {'model sd':>8}"
"""Column heads of :func:`committee_columns`."""


def committee_columns(n: int, mean: float | None, sd: float | None) -> str:
    """The shared trajectories, committee mean and model sd of P_stick as fixed-width table columns ('-' if undefined)."""
    p = lambda x: f"{x:8.4f}" if x is not None and math.isfinite(x) else f"{'-':>8}"  # noqa: E731
    return f"{n:6d} {p(mean)} {p(sd)}"


def _json(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _shared_prefix(reader: RunReader, collision_energy: float) -> int:
    """Length of the complete index prefix a member holds at ``collision_energy`` (0 if it has none)."""
    try:
        return complete_prefix(reader.done_indices(reader.condition_id(collision_energy)))
    except StoreError:
        return 0


def committee_estimate(store: RunReader, collision_energy: float, n: int,
                       trajectories: int | None = None) -> CommitteeEstimate | None:
    """The committee estimate of a run directory at ``collision_energy`` (eV) whose main model counts its first
    ``n`` trajectories; None if the run has no committee.

    The members share the first m = min(n, ``trajectories``) indices, or without ``trajectories`` the longest
    prefix every member holds (up to n): NaN estimates where a member has none.
    """
    record = store.committee
    if not record:
        return None
    readers = []
    try:
        for member in record:
            path = store.directory / member["directory"]
            readers.append(RunReader(path) if path.is_dir() else None)
        bounds = [0 if r is None else _shared_prefix(r, collision_energy) for r in readers]
        m = min([n, *bounds] + ([] if trajectories is None else [trajectories]))
        members = tuple(
            MemberTally(member["model"], member["model_identity"],
                        Tally(reader.counts(reader.condition_id(collision_energy), limit=m)) if m else _NONE)
            for member, reader in zip(record, readers))
    finally:
        for reader in readers:
            if reader is not None:
                reader.close()
    cid = store.condition_id(collision_energy)
    return CommitteeEstimate(m, Tally(store.counts(cid, limit=n)), Tally(store.counts(cid, limit=m)), members)


def committee_fits(table: pd.DataFrame, committee: pd.DataFrame, A: float | None) -> tuple[ErfFit | None, ...]:
    """Erf fits of each member's estimated curve (paired with the main fit: the same energies, weighted by the main
    model's non-failed counts n_valid, i.e. P_estimate·n_valid of n_valid, P clipped to [0, 1]); None for a member
    with an undefined estimate at some energy or whose curve the data do not determine."""
    estimates = committee.pivot(index="collision_energy", columns="member", values="P_stick_estimate")
    trials = (table["n"] - table["n_failed"]).to_numpy()
    estimates = estimates.reindex(table["collision_energy"])
    fits = []
    for k in estimates.columns:
        p = estimates[k].to_numpy()
        try:
            fits.append(None if np.isnan(p).any() else
                        fit_erf(table["collision_energy"], np.clip(p, 0.0, 1.0) * trials, trials, A=A))
        except FitError:
            fits.append(None)
    return tuple(fits)
