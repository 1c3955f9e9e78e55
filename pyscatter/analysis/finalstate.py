"""Final states of scattered molecules: v′ and J′ populations, vibrational (de-)excitation, translational energy loss.

The store keeps real-valued v′, J′ (from the classical action and angular momentum), the
centre-of-mass translational energy E′_trans and the internal energy of every scattered molecule.
They are binned to quantum numbers by standard histogram binning: v′ to the nearest integer
(negative values, below the zero-point level, go to v′ = 0; molecules above their centrifugal
barrier have no v′ and are counted as "unbound"), J′ to the nearest integer of the incident J's
parity for H2 and D2 (ortho/para conservation), to the nearest integer for HD. Populations and
(de-)excitation probabilities are fractions of the scattered molecules of a condition.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pyscatter.analysis.tally import wilson_interval
from pyscatter.analysis.stored import complete_prefix, open_run, stored_energies
from pyscatter.outcomes import Outcome

SUMMARY_COLUMNS = (
    "collision_energy", "n", "n_scattered", "n_unbound", "P_vib_excitation", "P_vib_excitation_ci",
    "P_vib_deexcitation", "P_vib_deexcitation_ci", "mean_E_trans_final", "mean_E_trans_loss", "mean_E_trans_loss_err",
)
"""Columns of :func:`final_state_summary` (energies in eV; probabilities are fractions of the scattered molecules)."""


def bin_rotational(J_final: np.ndarray, J_initial: int, homonuclear: bool) -> np.ndarray:
    """Nearest integer J′, of the same parity as ``J_initial`` for a homonuclear molecule."""
    J_final = np.asarray(J_final, dtype=np.float64)
    if not homonuclear:
        return np.rint(J_final).astype(int)
    parity = J_initial % 2
    return (parity + 2 * np.rint((J_final - parity) / 2)).astype(int)


def bin_vibrational(v_final: np.ndarray) -> np.ndarray:
    """Nearest integer v′ ≥ 0 (as float; NaN for unbound molecules)."""
    return np.maximum(np.rint(np.asarray(v_final, dtype=np.float64)), 0.0)


def scattered_molecules(directory, energies: Sequence[float] | None = None) -> pd.DataFrame:
    """One row per scattered trajectory in the complete index prefix of each condition.

    Columns: collision_energy, index, v_final, J_final (real), v_bin (float, NaN if unbound), J_bin,
    E_trans_final, E_internal, E_trans_loss = E − E′_trans (eV). ``attrs``: the spec's v, J, molecule and
    ``n`` (trajectories per energy).
    """
    with open_run(directory) as store:
        spec = store.spec
        rows, n = [], {}
        for energy in stored_energies(store, energies):
            cid = store.condition_id(energy)
            n[energy] = complete_prefix(store.done_indices(cid))
            for t in store.trajectories(cid):
                if t.index < n[energy] and t.outcome is Outcome.SCATTERED:
                    rows.append((energy, t.index, t.v_final, t.J_final, t.translational_energy, t.internal_energy))
    table = pd.DataFrame(rows, columns=["collision_energy", "index", "v_final", "J_final", "E_trans_final", "E_internal"])
    table["v_bin"] = bin_vibrational(table["v_final"].to_numpy())
    table["J_bin"] = bin_rotational(table["J_final"].to_numpy(), spec.J, homonuclear=spec.molecule != "HD")
    table["E_trans_loss"] = table["collision_energy"] - table["E_trans_final"]
    table.attrs.update(v=spec.v, J=spec.J, molecule=spec.molecule, n=n, label=_label(spec))
    return table


def _label(spec) -> str:
    return f"{spec.molecule}(v={spec.v}, J={spec.J})/{spec.slab_label}, {spec.temperature:g} K"


def populations(molecules: pd.DataFrame, quantum_number: str) -> pd.DataFrame:
    """Fractions of the scattered molecules of each energy (rows, eV) in each ``v_bin`` or ``J_bin`` (columns)."""
    bound = molecules.dropna(subset=[quantum_number])
    counts = pd.crosstab(bound["collision_energy"], bound[quantum_number].astype(int))
    scattered = molecules.groupby("collision_energy").size()
    return counts.div(scattered.loc[counts.index], axis=0)


def final_state_summary(molecules: pd.DataFrame) -> pd.DataFrame:
    """Per collision energy: vibrational (de-)excitation probabilities with 95 % Wilson intervals and the
    mean translational energy loss ⟨E − E′_trans⟩ (eV) with its standard error; see :data:`SUMMARY_COLUMNS`."""
    v0 = molecules.attrs["v"]
    rows = []
    for energy, n in sorted(molecules.attrs["n"].items()):
        group = molecules[molecules["collision_energy"] == energy]
        m = len(group)
        up, down = int((group["v_bin"] > v0).sum()), int((group["v_bin"] < v0).sum())
        loss = group["E_trans_loss"].to_numpy()
        rows.append({
            "collision_energy": energy, "n": n, "n_scattered": m, "n_unbound": int(group["v_bin"].isna().sum()),
            "P_vib_excitation": up / m if m else np.nan, "P_vib_excitation_ci": wilson_interval(up, m),
            "P_vib_deexcitation": down / m if m else np.nan, "P_vib_deexcitation_ci": wilson_interval(down, m),
            "mean_E_trans_final": group["E_trans_final"].mean() if m else np.nan,
            "mean_E_trans_loss": loss.mean() if m else np.nan,
            "mean_E_trans_loss_err": loss.std(ddof=1) / np.sqrt(m) if m > 1 else np.nan,
        })
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
