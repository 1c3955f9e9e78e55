"""Reactivity maps: P_stick against where and how the molecule arrives, from the per-trajectory table.

Every probability counts the trajectories of :func:`pyscatter.analysis.trajectories.trajectory_table`
in the complete index prefix (``counted``) that did not fail, with 95 % Wilson intervals. Impact points
are folded into the primitive surface cell (:data:`pyscatter.initial.sites.PRIMITIVE_REPEATS`): the ideal
slab repeats there, and the thermal snapshots are drawn uniformly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pyscatter.analysis.tally import wilson_interval
from pyscatter.initial.sites import PRIMITIVE_REPEATS, SITE_CLASSES

MAP_BIN = 0.4
"""Å: about this wide are the bins of the impact map along each primitive cell vector."""


def _valid(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["counted"] & (table["outcome"] != "failed")]


def _rates(groups) -> list[dict]:
    rows = []
    for key, group in groups:
        n, k = len(group), int((group["outcome"] == "dissociated").sum())
        low, high = wilson_interval(k, n)
        rows.append({**key, "n": n, "n_dissociated": k, "P_stick": k / n if n else np.nan, "ci_low": low, "ci_high": high})
    return rows


def site_reactivity(table: pd.DataFrame) -> pd.DataFrame:
    """P_stick by site class per collision energy: collision_energy (eV), site, n, n_dissociated, P_stick,
    ci_low, ci_high; every class of the facet, in :data:`SITE_CLASSES` order (n = 0 where none landed)."""
    valid = _valid(table)
    classes = SITE_CLASSES[table.attrs["surface"]]
    groups = (({"collision_energy": e, "site": c}, valid[(valid["collision_energy"] == e) & (valid["site"] == c)])
              for e in sorted(valid["collision_energy"].unique()) for c in classes)
    return pd.DataFrame(_rates(groups), columns=["collision_energy", "site", "n", "n_dissociated", "P_stick", "ci_low", "ci_high"])


def orientation_reactivity(table: pd.DataFrame, bins: int = 5) -> pd.DataFrame:
    """P_stick in ``bins`` equal bins of the bond's polar orientation per collision energy.

    Homonuclear molecules (H2, D2) are binned in |cos θ| ∈ [0, 1] (θ and π − θ are the same molecule;
    0: bond parallel to the surface, 1: perpendicular), HD in cos θ ∈ [−1, 1] (θ from the surface normal
    to the H→D bond). Columns: collision_energy (eV), quantity ("|cos theta|" or "cos theta"), bin_low,
    bin_high, n, n_dissociated, P_stick, ci_low, ci_high.
    """
    valid = _valid(table)
    homonuclear = table.attrs["molecule"] != "HD"
    quantity = "|cos theta|" if homonuclear else "cos theta"
    x = valid["cos_theta"].abs() if homonuclear else valid["cos_theta"]
    edges = np.linspace(0.0 if homonuclear else -1.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, bins - 1)
    groups = (({"collision_energy": e, "quantity": quantity, "bin_low": edges[b], "bin_high": edges[b + 1]},
               valid[(valid["collision_energy"] == e) & (which == b)])
              for e in sorted(valid["collision_energy"].unique()) for b in range(bins))
    return pd.DataFrame(_rates(groups), columns=["collision_energy", "quantity", "bin_low", "bin_high", "n",
                                                 "n_dissociated", "P_stick", "ci_low", "ci_high"])


def impact_map(table: pd.DataFrame, energy: float, cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts (all, dissociated) of shape (bins_u, bins_v) over the primitive cell at ``energy`` (eV).

    cell: (2, 2) lateral slab cell, Å. Bin i along the first primitive vector covers fractional
    coordinates [i/bins_u, (i+1)/bins_u) of the primitive cell.
    """
    shape = map_shape(table.attrs["surface"], cell)
    valid = _valid(table)
    at = valid[valid["collision_energy"] == energy]
    repeats = np.array(PRIMITIVE_REPEATS[table.attrs["surface"]])
    folded = (at[["impact_u", "impact_v"]].to_numpy() * repeats) % 1.0
    idx = np.minimum((folded * shape).astype(int), np.array(shape) - 1)
    flat = idx[:, 0] * shape[1] + idx[:, 1]
    total = np.bincount(flat, minlength=shape[0] * shape[1]).reshape(shape)
    hits = np.bincount(flat[(at["outcome"] == "dissociated").to_numpy()], minlength=shape[0] * shape[1]).reshape(shape)
    return total, hits


def map_shape(surface: str, cell: np.ndarray) -> tuple[int, int]:
    """Bins of the impact map along each primitive cell vector (about :data:`MAP_BIN` wide, at least 4)."""
    lengths = np.linalg.norm(cell, axis=1) / np.array(PRIMITIVE_REPEATS[surface])
    return tuple(int(max(4, round(length / MAP_BIN))) for length in lengths)
