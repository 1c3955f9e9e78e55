"""One row per trajectory: its stored outcome and final state, and its initial conditions, regenerated.

Nothing about a trajectory's start is stored: it is a deterministic function of (seed, collision
energy, index) (:func:`pyscatter.initial.sampler.draw_trajectory`), so it is drawn again from the run's
spec and its thermal snapshots file (for the lattice constant of the ideal slab the impact sites
refer to). No model is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pyscatter.analysis.stored import complete_prefix, open_run, stored_energies
from pyscatter.initial.sampler import draw_trajectory
from pyscatter.initial.sites import SITE_CLASSES, surface_sites
from pyscatter.initial.surface import run_slab
from pyscatter.initial.thermal import ThermalSnapshots
from pyscatter.store import SNAPSHOT_FILE, StoreError, stored_slab_file

TRAJECTORY_COLUMNS = (
    "collision_energy", "index", "outcome", "end_time_fs", "energy_drift_eV", "max_energy_error_eV", "failure",
    "v_final", "J_final", "E_trans_final", "E_internal_final", "electronic_energy_loss_eV", "counted",
    "snapshot", "impact_u", "impact_v", "impact_x", "impact_y", "site", "cos_theta", "theta_deg", "phi_deg",
    "vib_phase",
)
"""Columns of :func:`trajectory_table`.

Stored: collision_energy (eV), index, outcome (dissociated, scattered, trapped, failed), end_time_fs,
energy_drift_eV (final minus initial total energy), max_energy_error_eV, failure (reason, "" if none);
v_final, J_final (real-valued), E_trans_final, E_internal_final (eV) of scattered molecules (NaN otherwise);
electronic_energy_loss_eV (given to the electrons by electronic friction; 0 without);
counted: the index is in the complete prefix of finished indices that the sticking probability counts.
Regenerated initial state: snapshot (index of the thermal slab snapshot); impact_u, impact_v (fractional
coordinates of the centre of mass's lateral position in the surface cell) and impact_x, impact_y (Å);
site (:mod:`pyscatter.initial.sites` class of the impact point; None on a slab file of another facet); cos_theta, theta_deg (polar angle of the
bond, first atom to second, from the surface normal), phi_deg (its azimuth from the x axis, the first cell
vector, [0, 360)); vib_phase (time along the vibrational orbit in half periods, [0, 2): [0, 1) outward
from the inner turning point).
"""


def trajectory_table(directory: str | Path, energies: Sequence[float] | None = None) -> pd.DataFrame:
    """Every stored trajectory of ``directory`` (all energies, or those given in eV), :data:`TRAJECTORY_COLUMNS`.

    Raises StoreError if the run's thermal snapshots file is missing.
    """
    directory = Path(directory)
    with open_run(directory) as store:
        spec = store.spec
        stored = {e: store.trajectories(store.condition_id(e)) for e in stored_energies(store, energies)}
    path = directory / SNAPSHOT_FILE
    if not path.is_file():
        raise StoreError(f"{directory} has no {SNAPSHOT_FILE}: its initial conditions cannot be regenerated")
    snapshots = ThermalSnapshots.load(path)
    slab = run_slab(spec, snapshots.lattice_constant, stored_slab_file(directory))
    sites = surface_sites(slab) if spec.surface in SITE_CLASSES else None
    cell = slab.atoms.cell.array[:2, :2]
    n_snapshots = len(snapshots.positions)
    rows = []
    for energy, results in stored.items():
        prefix = complete_prefix({t.index for t in results})
        for t in results:
            draw = draw_trajectory(spec.seed, energy, t.index, n_snapshots)
            bond = draw.internal.bond
            rows.append((
                energy, t.index, t.outcome.label, t.end_time, t.energy_drift, t.max_energy_error, t.failure,
                t.v_final, t.J_final, t.translational_energy, t.internal_energy, t.electronic_energy_loss,
                t.index < prefix,
                draw.snapshot, *draw.impact, *(draw.impact @ cell), None, bond[2],
                np.degrees(np.arccos(np.clip(bond[2], -1.0, 1.0))), np.degrees(np.arctan2(bond[1], bond[0])) % 360.0,
                draw.internal.phase,
            ))
    table = pd.DataFrame(rows, columns=list(TRAJECTORY_COLUMNS))
    table["site"] = sites.classify(table[["impact_u", "impact_v"]].to_numpy()) if len(table) and sites else None
    table.attrs.update(surface=spec.surface, metal=spec.metal, molecule=spec.molecule,
                       lattice_constant=snapshots.lattice_constant, slab_file=stored_slab_file(directory))
    return table
