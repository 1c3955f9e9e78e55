"""Reading a run directory's store: opened read-only, its collision energies, and the prefix of trajectory
indices that its sticking probabilities count."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pyscatter.store import RunReader, StoreError


def open_run(directory: str | Path) -> RunReader:
    """The existing run directory's store, read-only (no lock: a running run can be read)."""
    return RunReader(directory)


def complete_prefix(done: set[int]) -> int:
    """Length n of the longest run 0..n−1 of finished indices.

    An interrupted condition can hold later indices without some earlier ones; since fast outcomes
    finish first, only a complete prefix is an unbiased sample.
    """
    n = 0
    while n in done:
        n += 1
    return n


def stored_energies(store: RunReader, energies: Sequence[float] | None = None) -> list[float]:
    """The run's collision energies (eV), or those of ``energies``, which must all be in the run."""
    stored = store.collision_energies()
    if energies is None:
        return stored
    missing = sorted(set(map(float, energies)) - set(stored))
    if missing:
        raise StoreError(f"{store.directory} has no condition at {missing} eV (it has {stored})")
    return sorted(set(map(float, energies)))
