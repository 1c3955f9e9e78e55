"""Sticking curves: P_stick(E) of one state on one facet with one model, run through the run store.

A curve is one run directory (one :class:`~pyscatter.conditions.RunSpec`) whose collision energies
are its conditions, so ``pyscatter run``, ``pyscatter curve`` and :func:`sticking_curve` share and
resume the same results. :func:`load_results` reads a run directory without computing anything.

Adaptive stopping (``target_ci``): each energy is looked at after n₁ = 100 trajectories and then at
n_{k+1} = min(cap, max(⌈1.25 n_k⌉, min(2 n_k, n*))), where n* = z² p̃(1 − p̃)/H² is the count at which the
Wilson half-width would reach H for the current Agresti–Coull estimate p̃ = (k + z²/2)/(n + z²); it
stops at the first look whose 95 % Wilson half-width is ≤ H, or at the cap (``trajectories``). The
table reports the counts of exactly the first n trajectories (by index) at the stopping look, so a
rerun replays the same decisions and computes nothing new. Looking at the data several times biases
a sequential estimate; for this rule it was quantified by simulation (binomial draws, 20000
conditions per P, P ∈ [0.005, 0.995], H ∈ {0.02, 0.05}; ``tests/test_curves.py`` re-measures it):
the 95 % interval at the stopping look covers P in 0.94–0.98 of the cases for 0.05 ≤ P ≤ 0.95
(0.93–0.97 beyond; where the first look already stops, e.g. P ≤ 0.01 at H = 0.05, the coverage is
the fixed-n Wilson value, 0.91–0.92), and P̂ is biased towards the nearer of 0 and 1 by at most
0.15 H (0.003 at H = 0.02), well inside the interval.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from scipy.stats import norm

from pyscatter.analysis import wilson_interval
from pyscatter.conditions import RunSpec, check_collision_energy, check_trajectories
from pyscatter.fitting import ErfFit, fit_erf
from pyscatter.models import DEFAULT_MODEL
from pyscatter.store import DB_NAME, RunStore, StoreError

TABLE_COLUMNS = ("collision_energy", "n", "n_dissociated", "n_scattered", "n_trapped", "P_stick", "ci_low", "ci_high")
"""Columns of :attr:`StickingCurve.table`: collision energy (eV), trajectory counts, P_stick and its 95 % Wilson interval."""


@dataclass(frozen=True)
class StoppingRule:
    """Adaptive stopping of one condition: stop once the 95 % Wilson half-width of P_stick is ≤ ``half_width``.

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


@dataclass(frozen=True)
class StickingCurve:
    """P_stick(E) of one run directory.

    directory: the run directory.  spec: its :class:`RunSpec`.  provenance: model identity, versions.
    table: pandas DataFrame with :data:`TABLE_COLUMNS`, one row per collision energy (eV), ascending.
    """

    directory: Path
    spec: RunSpec
    provenance: dict
    table: pd.DataFrame

    @property
    def label(self) -> str:
        """e.g. ``H2(v=1, J=1)/Cu(111), 925 K, model emt``."""
        s = self.spec
        return f"{s.molecule}(v={s.v}, J={s.J})/Cu({s.surface}), {s.temperature:g} K, model {Path(s.model).stem}"

    def fit(self, A: float | None = None) -> ErfFit:
        """Binomial maximum-likelihood error-function fit (A free if None); raises FitError if undetermined."""
        t = self.table
        return fit_erf(t["collision_energy"], t["n_dissociated"], t["n"], A=A)

    def records(self) -> list[dict]:
        """The table as JSON-ready dicts, each with the run's spec and model identity."""
        spec = self.spec.as_dict()
        return [
            {**spec, **row, "model_identity": self.provenance.get("model_identity")}
            for row in self.table.to_dict(orient="records")
        ]


class CurveProgress:
    """One progress bar for a whole curve (trajectories done over all energies); ``update`` matches ``simulation.Progress``."""

    def __init__(self, energies: Sequence[float], per_energy: int, stream=None):
        from tqdm import tqdm

        self._target = dict.fromkeys(energies, per_energy)
        self._done = dict.fromkeys(energies, 0)
        self._bar = tqdm(total=sum(self._target.values()), unit="traj", desc="curve", file=stream,
                         dynamic_ncols=True, smoothing=0.05)

    def update(self, collision_energy: float, done: int, total: int, tally) -> None:
        self._target[collision_energy], self._done[collision_energy] = total, done
        self._bar.total = sum(self._target.values())
        self._bar.update(sum(self._done.values()) - self._bar.n)
        low, high = tally.p_stick_ci
        self._bar.set_postfix_str(
            f"E={collision_energy:g} eV: {done}/{total}, P_stick={tally.p_stick:.3f} [{low:.3f}, {high:.3f}]", refresh=False
        )

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> "CurveProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _stored_spec(directory: Path) -> RunSpec:
    db = directory / DB_NAME
    if not db.is_file():
        raise StoreError(f"{directory} is not a pyscatter run directory (no {DB_NAME})")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = con.execute("SELECT value FROM run WHERE key='spec'").fetchone()
    except sqlite3.DatabaseError as err:
        raise StoreError(f"{db} is not a usable pyscatter store: {err}") from None
    finally:
        con.close()
    if row is None:
        raise StoreError(f"{db} holds no run")
    return RunSpec(**json.loads(row[0]))


def open_run(directory: str | Path) -> RunStore:
    """The existing run directory's store (no new run is created; holds the directory's lock)."""
    directory = Path(directory)
    return RunStore(directory, _stored_spec(directory), provenance={})


def complete_prefix(done: set[int]) -> int:
    """Length n of the longest run 0..n−1 of finished indices.

    An interrupted condition can hold later indices without some earlier ones; since fast outcomes
    finish first, only a complete prefix is an unbiased sample.
    """
    n = 0
    while n in done:
        n += 1
    return n


def _row(energy: float, counts) -> dict:
    low, high = wilson_interval(counts.n_dissociated, counts.n_trajectories)
    return {
        "collision_energy": energy,
        "n": counts.n_trajectories,
        "n_dissociated": counts.n_dissociated,
        "n_scattered": counts.n_scattered,
        "n_trapped": counts.n_trapped,
        "P_stick": counts.n_dissociated / counts.n_trajectories,
        "ci_low": low,
        "ci_high": high,
    }


def _curve(store: RunStore, limits: dict[float, int | None]) -> StickingCurve:
    """Rows for each energy (eV) over its first ``limit`` trajectories (None: the complete prefix)."""
    rows = []
    for energy, limit in sorted(limits.items()):
        cid = store.condition_id(energy)
        n = complete_prefix(store.done_indices(cid)) if limit is None else limit
        counts = store.counts(cid, limit=n)
        if counts.n_trajectories:
            rows.append(_row(energy, counts))
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    return StickingCurve(store.directory, store.spec, store.provenance, table)


def stored_energies(store: RunStore, energies: Sequence[float] | None = None) -> list[float]:
    """The run's collision energies (eV), or those of ``energies``, which must all be in the run."""
    stored = store.collision_energies()
    if energies is None:
        return stored
    missing = sorted(set(map(float, energies)) - set(stored))
    if missing:
        raise StoreError(f"{store.directory} has no condition at {missing} eV (it has {stored})")
    return sorted(set(map(float, energies)))


def load_results(directory: str | Path, energies: Sequence[float] | None = None) -> StickingCurve:
    """The sticking curve stored in ``directory`` (all energies, or those given in eV), computing nothing.

    Each energy counts its longest complete prefix of trajectory indices.
    """
    with open_run(directory) as store:
        return _curve(store, dict.fromkeys(stored_energies(store, energies)))


def run_curve(
    spec: RunSpec,
    energies: Sequence[float],
    trajectories: int,
    out: str | Path | None = None,
    stopping: StoppingRule | None = None,
    on_progress=None,
    **execution,
) -> StickingCurve:
    """Run or resume ``spec`` at every collision energy (eV) and return the curve.

    ``trajectories`` per energy, or with a ``stopping`` rule each energy stops adaptively (its cap
    replaces ``trajectories``; see the module docstring). ``on_progress`` and ``execution`` (workers,
    batch_size, threads, executor) are passed to :func:`pyscatter.simulation.run`.
    """
    from pyscatter.models import load_model
    from pyscatter.simulation import default_out_dir, run

    energies = sorted({check_collision_energy(e) for e in energies})
    directory = Path(out) if out is not None else default_out_dir(spec)
    options = dict(out_dir=directory, on_progress=on_progress, model=load_model(spec.model), **execution)
    if stopping is None:
        run(spec, energies, trajectories, **options)
        limits = dict.fromkeys(energies, trajectories)
    else:
        limits = dict.fromkeys(energies, stopping.first_look)
        pending = dict(limits)
        while pending:  # one round: every pending energy up to its next look, equal looks in one call
            looks = dict(pending)
            for n in sorted(set(looks.values())):
                for record in run(spec, [e for e, m in looks.items() if m == n], n, **options):
                    energy = record["collision_energy"]
                    limits[energy] = n
                    look = stopping.next_look(n, record["n_dissociated"])
                    if look is None:
                        del pending[energy]
                    else:
                        pending[energy] = look
    with RunStore(directory, spec, provenance={}) as store:
        return _curve(store, limits)


def sticking_curve(
    surface: str = "111",
    T: float = 925.0,
    v: int = 1,
    J: int = 1,
    energies: Sequence[float] = (0.2, 0.3, 0.4, 0.5, 0.6, 0.75),
    model: str = DEFAULT_MODEL,
    trajectories: int = 10000,
    molecule: str = "H2",
    out: str | Path | None = None,
    target_ci: float | None = None,
    workers: int = 1,
    progress: bool = False,
    **spec_options,
) -> StickingCurve:
    """P_stick(E) of ``molecule`` (v, J) on Cu(``surface``) at ``T`` K, collision energies in eV.

    Runs or resumes every energy in ``out`` (default ``runs/<condition>``), the same store that
    ``pyscatter run`` uses. ``model``: a shipped model's name (default the H2/Cu ACE surrogate), "emt" or a model file. ``trajectories`` per energy (the cap
    with ``target_ci``, the 95 % half-width of P_stick at which an energy stops). ``spec_options``:
    further :class:`RunSpec` fields (seed, dt fs, max_time fs, n_snapshots, ...). ``progress``: a bar on stderr.
    """
    spec = RunSpec(surface=surface, temperature=T, v=v, J=J, molecule=molecule, model=model, **spec_options)
    stopping = StoppingRule(target_ci, trajectories) if target_ci is not None else None
    if not progress:
        return run_curve(spec, energies, trajectories, out=out, stopping=stopping, workers=workers)
    with CurveProgress(energies, stopping.first_look if stopping else trajectories) as bar:
        return run_curve(spec, energies, trajectories, out=out, stopping=stopping, workers=workers,
                         on_progress=bar.update)
