"""Outcomes of single trajectories and the record kept for each."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Outcome(enum.IntEnum):
    """How a trajectory ended (RUNNING only while it is integrated).

    FAILED: the integration broke down (non-finite energies, forces or positions, or a total-energy
    error above the run's bound); such a trajectory is recorded with its reason and left out of P_stick.
    The integer codes are shared with the Julia engine.
    """

    RUNNING = 0
    DISSOCIATED = 1
    SCATTERED = 2
    TRAPPED = 3
    FAILED = 4

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class TrajectoryResult:
    """One finished trajectory.

    index: trajectory number within its condition (defines its random stream).
    end_time: fs.  energy_drift: E_total(end) - E_total(0), eV.
    max_energy_error: max over steps of |E_total(t) - E_total(0)|, eV.
    Final state of a scattered molecule (NaN otherwise): v_final, J_final (real-valued),
    translational_energy (eV, of the centre of mass), internal_energy (eV above the potential minimum).
    """

    index: int
    outcome: Outcome
    end_time: float
    energy_drift: float
    max_energy_error: float
    v_final: float = float("nan")
    J_final: float = float("nan")
    translational_energy: float = float("nan")
    internal_energy: float = float("nan")
    failure: str = ""
    """Why a FAILED trajectory failed (one line); empty otherwise."""
    electronic_energy_loss: float = 0.0
    """eV the nuclei gave to the electrons through electronic friction (friction minus random force); 0 without."""
