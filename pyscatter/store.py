"""The run directory: a transactional SQLite store of finished trajectories.

A run directory holds one :class:`~pyscatter.conditions.RunSpec` (facet, T, state, model, seed,
integration settings), any number of collision energies (conditions, each with an optional target
trajectory count), one row per finished trajectory (failed ones included, with their reason), and
the cached thermal slab snapshots; a run with a model committee also records its members, each an
ordinary run directory under ``committee/`` (:mod:`pyscatter.workflows.committee`). Each batch of
results is committed in one transaction keyed by (condition, trajectory index), so a killed run loses
at most uncommitted work and never counts a trajectory twice. :class:`RunStore` writes and holds an exclusive lock that refuses a second writer;
:class:`RunReader` reads without the lock and without writing, so a running or archived run (even
on read-only media) can be looked at.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pyscatter.conditions import RunSpec
from pyscatter.outcomes import Outcome, TrajectoryResult

DB_NAME = "results.sqlite"
SNAPSHOT_FILE = "thermal_snapshots.npz"
"""The run's thermal slab snapshots, next to the store (:class:`~pyscatter.initial.thermal.ThermalSnapshots`)."""
SLAB_FOLDER = "slab"
"""Folder of the run's byte-for-byte copy of its slab file (a spec with ``slab``), under the file's own name."""
LOCK_NAME = ".lock"


def stored_slab_file(directory: str | os.PathLike) -> str | None:
    """The absolute path of run directory ``directory``'s copy of its slab file; None if it has none."""
    found = sorted((Path(directory) / SLAB_FOLDER).glob("*"))
    return str(found[0].absolute()) if found else None

_TRAJECTORY_COLUMNS = (
    "idx", "outcome", "end_time_fs", "energy_drift_eV", "max_energy_error_eV", "v_final", "J_final",
    "translational_energy_eV", "internal_energy_eV", "failure", "electronic_energy_loss_eV",
)
_TRAJECTORIES = """
CREATE TABLE IF NOT EXISTS trajectories (
    condition_id INTEGER NOT NULL REFERENCES conditions(id),
    idx INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    end_time_fs REAL,
    energy_drift_eV REAL,
    max_energy_error_eV REAL,
    v_final REAL,
    J_final REAL,
    translational_energy_eV REAL,
    internal_energy_eV REAL,
    failure TEXT,
    electronic_energy_loss_eV REAL,
    PRIMARY KEY (condition_id, idx)
)"""
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS run (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS conditions (
    id INTEGER PRIMARY KEY,
    collision_energy REAL NOT NULL UNIQUE,
    force_calls INTEGER NOT NULL DEFAULT 0,
    wall_time_s REAL NOT NULL DEFAULT 0,
    target_trajectories INTEGER
)""",
    _TRAJECTORIES,
)
_PAGE = 65536  # stored indices read per query by missing_indices


class StoreError(RuntimeError):
    """A run directory that cannot be used as asked; the message is one line."""


@dataclass(frozen=True)
class Counts:
    """Outcome counts of one condition, plus the cost spent on it (force_calls, wall_time_s).

    n_trajectories: finished trajectories, failed ones included.
    n_energy_error_above_10meV: trajectories whose total energy strayed more than 10 meV from its start.
    n_failed: trajectories whose integration broke down (outcome FAILED).
    """

    n_trajectories: int
    n_dissociated: int
    n_scattered: int
    n_trapped: int
    force_calls: int
    wall_time_s: float
    n_energy_error_above_10meV: int = 0
    n_failed: int = 0


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _nan_if_none(x: float | None) -> float:
    return float("nan") if x is None else x


def _columns(db: sqlite3.Connection, table: str) -> dict[str, bool]:
    """Column name -> NOT NULL of ``table``."""
    return {row[1]: bool(row[3]) for row in db.execute(f"PRAGMA table_info({table})")}


def _same_arrays(first: Path, second: Path) -> bool:
    """Whether two ``.npz`` files both exist and hold the same arrays (names, shapes, values)."""
    if not (first.is_file() and second.is_file()):
        return False
    with np.load(first) as a, np.load(second) as b:
        return sorted(a.files) == sorted(b.files) and all(np.array_equal(a[k], b[k]) for k in a.files)


class RunReader:
    """An existing run directory, read-only: no lock, nothing written, a live run's committed batches visible.

    A store another process has open (its ``-wal`` file present) is read through SQLite's
    write-ahead log (``mode=ro``); a closed one as an immutable file, which needs no ``-wal``/``-shm``
    and so creates nothing in the directory and works on read-only media. If ``mode=ro`` cannot
    open the log's files (read-only media holding an interrupted run's log) it falls back to the
    immutable file, which leaves that log's uncheckpointed batches out.
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        db = self.directory / DB_NAME
        if not db.is_file():
            raise StoreError(f"{self.directory} is not a pyscatter run directory (no {DB_NAME})")
        uri = db.absolute().as_uri()  # percent-encodes '#', '?', '%' and spaces of the path
        modes = ["mode=ro", "mode=ro&immutable=1"] if Path(f"{db}-wal").exists() else ["mode=ro&immutable=1"]
        for mode in modes:
            try:
                self._db = sqlite3.connect(f"{uri}?{mode}", uri=True)
                self._read_schema()
                return
            except sqlite3.OperationalError as err:
                self.close()
                if mode == modes[-1]:
                    raise StoreError(f"cannot read {db}: {err}") from None
            except sqlite3.DatabaseError as err:
                self.close()
                raise StoreError(f"{db} is not a usable pyscatter store: {err}") from None

    def _read_schema(self) -> None:
        try:
            conditions, trajectories = _columns(self._db, "conditions"), _columns(self._db, "trajectories")
            row = self._db.execute("SELECT value FROM run WHERE key='spec'").fetchone()
        except sqlite3.OperationalError as err:
            if "no such table" in str(err):
                raise sqlite3.DatabaseError(str(err)) from None
            raise
        if row is None or not trajectories:
            raise sqlite3.DatabaseError("it holds no run")
        self._has_target = "target_trajectories" in conditions
        self._has_failure = "failure" in trajectories
        self._has_electronic = "electronic_energy_loss_eV" in trajectories

    @property
    def spec(self) -> RunSpec:
        return RunSpec.from_dict(json.loads(self._meta("spec")))

    @property
    def provenance(self) -> dict:
        return json.loads(self._meta("provenance"))

    @property
    def committee(self) -> list[dict]:
        """The run's model committee as last run (:func:`pyscatter.workflows.committee.run_committee`): per member
        its ``model`` (name or path), ``model_identity`` and ``directory`` (its sub-run, relative to this one);
        empty if none."""
        row = self._db.execute("SELECT value FROM run WHERE key='committee'").fetchone()
        return json.loads(row[0]) if row is not None else []

    def _meta(self, key: str) -> str:
        return self._db.execute("SELECT value FROM run WHERE key=?", (key,)).fetchone()[0]

    def condition_id(self, collision_energy: float) -> int:
        """The id of the condition at ``collision_energy`` (eV); StoreError if the run has none."""
        row = self._db.execute("SELECT id FROM conditions WHERE collision_energy=?", (collision_energy,)).fetchone()
        if row is None:
            raise StoreError(f"{self.directory} has no condition at {collision_energy} eV")
        return row[0]

    def collision_energies(self) -> list[float]:
        return [row[0] for row in self._db.execute("SELECT collision_energy FROM conditions ORDER BY collision_energy")]

    def done_indices(self, condition_id: int) -> set[int]:
        """Indices of the stored (finished, failed included) trajectories of a condition."""
        rows = self._db.execute("SELECT idx FROM trajectories WHERE condition_id=?", (condition_id,))
        return {row[0] for row in rows}

    def count_done(self, condition_id: int, n: int) -> int:
        """Stored trajectories (failed included) with index < ``n``."""
        return self._db.execute(
            "SELECT COUNT(*) FROM trajectories WHERE condition_id=? AND idx<?", (condition_id, n)
        ).fetchone()[0]

    def missing_indices(self, condition_id: int, n: int) -> Iterator[int]:
        """The indices < ``n`` not stored yet, ascending, lazily in constant memory (any ``n``, e.g. 10**12).

        Walks the stored indices in pages of the primary-key order and yields the gaps; indices
        committed while the generator is consumed (they are ones it already yielded) are skipped.
        """
        start = 0
        while start < n:
            stored = [row[0] for row in self._db.execute(
                "SELECT idx FROM trajectories WHERE condition_id=? AND idx>=? AND idx<? ORDER BY idx LIMIT ?",
                (condition_id, start, n, _PAGE),
            )]
            for index in stored:
                yield from range(start, index)
                start = index + 1
            if len(stored) < _PAGE:
                yield from range(start, n)
                return

    def target(self, condition_id: int) -> int | None:
        """The trajectory count a run was last started with for this condition (None if never recorded)."""
        if not self._has_target:
            return None
        return self._db.execute("SELECT target_trajectories FROM conditions WHERE id=?", (condition_id,)).fetchone()[0]

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
            n_failed=tallies.get(Outcome.FAILED.label, 0),
        )

    def trajectories(self, condition_id: int) -> list[TrajectoryResult]:
        """Every stored trajectory of a condition, by index (NaN where a value was not finite or not defined)."""
        columns = ", ".join(_TRAJECTORY_COLUMNS[:-2]) + (", failure" if self._has_failure else ", NULL") \
            + (", electronic_energy_loss_eV" if self._has_electronic else ", 0.0")
        rows = self._db.execute(
            f"SELECT {columns} FROM trajectories WHERE condition_id=? ORDER BY idx", (condition_id,)
        )
        return [
            TrajectoryResult(r[0], Outcome[r[1].upper()], *map(_nan_if_none, r[2:9]), failure=r[9] or "",
                             electronic_energy_loss=_nan_if_none(r[10]))
            for r in rows
        ]

    def close(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()
            self._db = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RunStore(RunReader):
    """Open (creating if needed) the run directory for ``spec`` to write; holds an exclusive lock until closed.

    An older store (NOT NULL float columns, no ``failure`` or target column) is upgraded on open.
    """

    def __init__(self, directory: str | os.PathLike, spec: RunSpec, provenance: dict):
        self.directory = Path(directory)
        created = [p for p in (*reversed(self.directory.absolute().parents), self.directory.absolute())
                   if not p.exists()]  # what a refused lock leaves as it found it
        lock_path = self.directory / LOCK_NAME
        new_lock = not lock_path.exists()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock = open(lock_path, "a")
        except OSError as err:
            raise StoreError(f"cannot write run directory {self.directory}: {err.strerror}") from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            self._lock.close()
            if isinstance(err, BlockingIOError):
                raise StoreError(f"run directory {self.directory} is in use by another pyscatter process") from None
            if new_lock:
                lock_path.unlink()
            for path in reversed(created):
                path.rmdir()
            raise StoreError(f"cannot lock run directory {self.directory} ({err.strerror}): its filesystem has no "
                             "flock (e.g. some network filesystems); choose an --out on a local disk") from None
        try:
            self._db = sqlite3.connect(self.directory / DB_NAME, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._claim(spec, provenance)
            self._read_schema()
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
            for statement in _SCHEMA:
                self._db.execute(statement)
            self._upgrade()
            row = self._db.execute("SELECT value FROM run WHERE key='spec'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO run VALUES ('spec', ?)", (wanted,))
                self._db.execute("INSERT INTO run VALUES ('provenance', ?)", (json.dumps(provenance, sort_keys=True),))
            elif RunSpec.from_dict(json.loads(row[0])).as_dict() != spec.as_dict():  # older stores lack newer keys
                stored = RunSpec.from_dict(json.loads(row[0])).as_dict()
                diff = ", ".join(f"{k}={stored.get(k)!r} (asked {v!r})" for k, v in spec.as_dict().items() if stored.get(k) != v)
                raise StoreError(f"run directory {self.directory} holds a different run: {diff}; choose another run directory")

    def _upgrade(self) -> None:
        """Bring a store written by an older pyscatter to the current schema (inside the open transaction)."""
        if "target_trajectories" not in _columns(self._db, "conditions"):
            self._db.execute("ALTER TABLE conditions ADD COLUMN target_trajectories INTEGER")
        columns = _columns(self._db, "trajectories")
        if columns and "electronic_energy_loss_eV" not in columns:  # stored before friction: none was given
            self._db.execute("ALTER TABLE trajectories ADD COLUMN electronic_energy_loss_eV REAL DEFAULT 0.0")
            columns = _columns(self._db, "trajectories")
        if "failure" in columns and not any(columns[c] for c in ("end_time_fs", "energy_drift_eV", "max_energy_error_eV")):
            return
        old = [c for c in _TRAJECTORY_COLUMNS if c in columns]
        self._db.execute("ALTER TABLE trajectories RENAME TO trajectories_old")
        self._db.execute(_TRAJECTORIES)
        listed = ", ".join(["condition_id", *old])
        self._db.execute(f"INSERT INTO trajectories ({listed}) SELECT {listed} FROM trajectories_old")
        self._db.execute("DROP TABLE trajectories_old")

    def condition_id(self, collision_energy: float) -> int:
        """The id of the condition at ``collision_energy`` (eV), created if new."""
        self._db.execute("INSERT OR IGNORE INTO conditions (collision_energy) VALUES (?)", (collision_energy,))
        return super().condition_id(collision_energy)

    def set_target(self, condition_id: int, n: int) -> None:
        """Record ``n`` as the trajectory count the run now aims at for this condition (for ETAs)."""
        self._db.execute("UPDATE conditions SET target_trajectories=? WHERE id=?", (n, condition_id))

    def set_committee(self, members: list[dict]) -> None:
        """Record the run's committee (see :attr:`RunReader.committee`), replacing any earlier one."""
        self._db.execute("INSERT OR REPLACE INTO run VALUES ('committee', ?)", (json.dumps(members),))

    def add(self, condition_id: int, results: list[TrajectoryResult], force_calls: int, wall_time_s: float) -> None:
        """Commit finished trajectories and the cost spent since the last commit, atomically.

        A non-finite float (NaN, ±inf) of a result is stored as NULL; a failure reason as given.
        """
        rows = [
            (
                condition_id, r.index, r.outcome.label,
                *map(_finite_or_none, (r.end_time, r.energy_drift, r.max_energy_error, r.v_final, r.J_final,
                                       r.translational_energy, r.internal_energy)),
                r.failure or None, _finite_or_none(r.electronic_energy_loss),
            )
            for r in results
        ]
        listed = ", ".join(["condition_id", *_TRAJECTORY_COLUMNS])
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(f"INSERT INTO trajectories ({listed}) VALUES ({', '.join('?' * (len(_TRAJECTORY_COLUMNS) + 1))})", rows)
            self._db.execute(
                "UPDATE conditions SET force_calls = force_calls + ?, wall_time_s = wall_time_s + ? WHERE id=?",
                (force_calls, wall_time_s, condition_id),
            )

    def merge(self, source: str | os.PathLike) -> int:
        """Add the trajectories of the run directory ``source`` that this store lacks; the number added.

        ``source`` must hold the same run (spec, model identity) started from the same thermal snapshots, e.g. a
        copy of this directory resumed on another machine: then trajectory i is the same trajectory in both.
        Each condition's cost (force calls, wall time) grows by the source's in proportion to the trajectories
        taken from it. Raises :class:`StoreError` for a source of another run.
        """
        source = Path(source)
        with RunReader(source) as other:
            if other.spec.as_dict() != self.spec.as_dict():
                raise StoreError(f"{source} holds another run than {self.directory}")
            if other.provenance["model_identity"] != self.provenance["model_identity"]:
                raise StoreError(f"{source} was made with model identity {other.provenance['model_identity']!r}, "
                                 f"not {self.provenance['model_identity']!r}")
            if not _same_arrays(self.directory / SNAPSHOT_FILE, source / SNAPSHOT_FILE):
                raise StoreError(f"{source} and {self.directory} do not start from the same thermal snapshots")
            added = 0
            for energy in other.collision_energies():
                theirs = other.condition_id(energy)
                ours = self.condition_id(energy)
                done = self.done_indices(ours)
                offered = other.trajectories(theirs)
                new = [r for r in offered if r.index not in done]
                if new:
                    counts = other.counts(theirs)
                    share = len(new) / len(offered)
                    self.add(ours, new, round(share * counts.force_calls), share * counts.wall_time_s)
                    added += len(new)
            return added

    def close(self) -> None:
        super().close()
        if not self._lock.closed:
            self._lock.close()
