"""The run directory: a transactional SQLite store of finished trajectories.

A run directory holds one :class:`~pyscatter.conditions.RunSpec` (facet, T, state, model, seed,
integration settings), any number of collision energies (conditions), one row per finished
trajectory, and the cached thermal slab snapshots. Each batch of results is committed in one
transaction keyed by (condition, trajectory index), so a killed run loses at most uncommitted
work and never counts a trajectory twice. An exclusive lock refuses a second process.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from pyscatter.conditions import RunSpec
from pyscatter.outcomes import Outcome, TrajectoryResult

DB_NAME = "results.sqlite"
LOCK_NAME = ".lock"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS run (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS conditions (
    id INTEGER PRIMARY KEY,
    collision_energy REAL NOT NULL UNIQUE,
    force_calls INTEGER NOT NULL DEFAULT 0,
    wall_time_s REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS trajectories (
    condition_id INTEGER NOT NULL REFERENCES conditions(id),
    idx INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    end_time_fs REAL NOT NULL,
    energy_drift_eV REAL NOT NULL,
    max_energy_error_eV REAL NOT NULL,
    v_final REAL,
    J_final REAL,
    translational_energy_eV REAL,
    internal_energy_eV REAL,
    PRIMARY KEY (condition_id, idx)
);
"""


class StoreError(RuntimeError):
    """A run directory that cannot be used as asked; the message is one line."""


@dataclass(frozen=True)
class Counts:
    """Outcome counts of one condition, plus the cost spent on it (force_calls, wall_time_s).

    n_energy_error_above_10meV: trajectories whose total energy strayed more than 10 meV from its start.
    """

    n_trajectories: int
    n_dissociated: int
    n_scattered: int
    n_trapped: int
    force_calls: int
    wall_time_s: float
    n_energy_error_above_10meV: int = 0


def _nan_to_none(x: float) -> float | None:
    return None if math.isnan(x) else x


class RunStore:
    """Open (creating if needed) the run directory for ``spec``; holds an exclusive lock until closed."""

    def __init__(self, directory: str | os.PathLike, spec: RunSpec, provenance: dict):
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock = open(self.directory / LOCK_NAME, "a")
        except OSError as err:
            raise StoreError(f"cannot write run directory {self.directory}: {err.strerror}") from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise StoreError(f"run directory {self.directory} is in use by another pyscatter process") from None
        try:
            self._db = sqlite3.connect(self.directory / DB_NAME, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._claim(spec, provenance)
        except sqlite3.DatabaseError as err:
            self.close()
            raise StoreError(f"{self.directory / DB_NAME} is not a usable pyscatter store: {err}") from None
        except StoreError:
            self.close()
            raise

    def _claim(self, spec: RunSpec, provenance: dict) -> None:
        wanted = json.dumps(spec.as_dict(), sort_keys=True)
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.strip().split(";"):
                if statement.strip():
                    self._db.execute(statement)
            row = self._db.execute("SELECT value FROM run WHERE key='spec'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO run VALUES ('spec', ?)", (wanted,))
                self._db.execute("INSERT INTO run VALUES ('provenance', ?)", (json.dumps(provenance, sort_keys=True),))
            elif row[0] != wanted:
                stored = json.loads(row[0])
                diff = ", ".join(f"{k}={stored.get(k)!r} (asked {v!r})" for k, v in spec.as_dict().items() if stored.get(k) != v)
                raise StoreError(f"run directory {self.directory} holds a different run: {diff}; choose another --out")

    @property
    def spec(self) -> RunSpec:
        return RunSpec.from_dict(json.loads(self._meta("spec")))

    @property
    def provenance(self) -> dict:
        return json.loads(self._meta("provenance"))

    def _meta(self, key: str) -> str:
        return self._db.execute("SELECT value FROM run WHERE key=?", (key,)).fetchone()[0]

    def condition_id(self, collision_energy: float) -> int:
        """The id of the condition at ``collision_energy`` (eV), created if new."""
        self._db.execute("INSERT OR IGNORE INTO conditions (collision_energy) VALUES (?)", (collision_energy,))
        return self._db.execute("SELECT id FROM conditions WHERE collision_energy=?", (collision_energy,)).fetchone()[0]

    def collision_energies(self) -> list[float]:
        return [row[0] for row in self._db.execute("SELECT collision_energy FROM conditions ORDER BY collision_energy")]

    def done_indices(self, condition_id: int) -> set[int]:
        rows = self._db.execute("SELECT idx FROM trajectories WHERE condition_id=?", (condition_id,))
        return {row[0] for row in rows}

    def add(self, condition_id: int, results: list[TrajectoryResult], force_calls: int, wall_time_s: float) -> None:
        """Commit finished trajectories and the cost spent since the last commit, atomically."""
        rows = [
            (
                condition_id, r.index, r.outcome.label, r.end_time, r.energy_drift, r.max_energy_error,
                _nan_to_none(r.v_final), _nan_to_none(r.J_final),
                _nan_to_none(r.translational_energy), _nan_to_none(r.internal_energy),
            )
            for r in results
        ]
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT INTO trajectories VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
            self._db.execute(
                "UPDATE conditions SET force_calls = force_calls + ?, wall_time_s = wall_time_s + ? WHERE id=?",
                (force_calls, wall_time_s, condition_id),
            )

    def counts(self, condition_id: int, limit: int | None = None) -> Counts:
        """Outcome counts over the trajectories with index < ``limit`` (all if None)."""
        bound = limit if limit is not None else 2**62
        tallies = dict(
            self._db.execute(
                "SELECT outcome, COUNT(*) FROM trajectories WHERE condition_id=? AND idx<? GROUP BY outcome",
                (condition_id, bound),
            ).fetchall()
        )
        force_calls, wall = self._db.execute(
            "SELECT force_calls, wall_time_s FROM conditions WHERE id=?", (condition_id,)
        ).fetchone()
        (energy_errors,) = self._db.execute(
            "SELECT COUNT(*) FROM trajectories WHERE condition_id=? AND idx<? AND max_energy_error_eV > 0.01",
            (condition_id, bound),
        ).fetchone()
        return Counts(
            n_trajectories=sum(tallies.values()),
            n_dissociated=tallies.get(Outcome.DISSOCIATED.label, 0),
            n_scattered=tallies.get(Outcome.SCATTERED.label, 0),
            n_trapped=tallies.get(Outcome.TRAPPED.label, 0),
            force_calls=force_calls,
            wall_time_s=wall,
            n_energy_error_above_10meV=energy_errors,
        )

    def trajectories(self, condition_id: int) -> list[TrajectoryResult]:
        """Every stored trajectory of a condition, by index."""
        rows = self._db.execute(
            "SELECT idx, outcome, end_time_fs, energy_drift_eV, max_energy_error_eV, v_final, J_final,"
            " translational_energy_eV, internal_energy_eV FROM trajectories WHERE condition_id=? ORDER BY idx",
            (condition_id,),
        )
        nan = float("nan")
        return [
            TrajectoryResult(
                index=r[0], outcome=Outcome[r[1].upper()], end_time=r[2], energy_drift=r[3], max_energy_error=r[4],
                v_final=nan if r[5] is None else r[5], J_final=nan if r[6] is None else r[6],
                translational_energy=nan if r[7] is None else r[7], internal_energy=nan if r[8] is None else r[8],
            )
            for r in rows
        ]

    def close(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()
            self._db = None
        if not self._lock.closed:
            self._lock.close()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
