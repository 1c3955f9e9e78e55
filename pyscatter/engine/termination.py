"""Terminating criteria: dissociated, scattered or trapped, checked every step."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pyscatter.outcomes import Outcome


@dataclass(frozen=True)
class StoppingCriteria:
    """molecule: indices of the two molecular atoms.  top_layer: indices of the slab's top-layer atoms.
    cell: (3, 3) Å, rows are cell vectors; pbc: periodicity used for minimum-image distances.
    dissociation_distance: Å.  scatter_height: centre-of-mass height above the mean top layer, Å.
    max_steps: steps after which a still-running trajectory counts as trapped.
    """

    molecule: tuple[int, int]
    top_layer: torch.Tensor
    cell: torch.Tensor
    pbc: tuple[bool, bool, bool]
    masses: torch.Tensor
    dissociation_distance: float = 2.25
    scatter_height: float = 7.1
    max_steps: int = 30000


def minimum_image(displacement: torch.Tensor, cell: torch.Tensor, pbc: tuple[bool, bool, bool]) -> torch.Tensor:
    """Shortest periodic image of displacement vectors (..., 3), Å (exact for lengths below half a cell height)."""
    fractional = displacement @ torch.linalg.inv(cell)
    periodic = torch.tensor(pbc, device=displacement.device)
    fractional = torch.where(periodic, fractional - torch.round(fractional), fractional)
    return fractional @ cell


def bond_length(positions: torch.Tensor, crit: StoppingCriteria) -> torch.Tensor:
    """Minimum-image distance between the two molecular atoms (B,), Å."""
    a, b = crit.molecule
    return minimum_image(positions[:, b] - positions[:, a], crit.cell, crit.pbc).norm(dim=-1)


def molecule_height(positions: torch.Tensor, velocities: torch.Tensor, crit: StoppingCriteria) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre-of-mass height above the mean top layer (B,), Å, and its vertical velocity (B,)."""
    idx = list(crit.molecule)
    m = crit.masses[idx]
    com_z = (positions[:, idx, 2] * m).sum(-1) / m.sum()
    com_vz = (velocities[:, idx, 2] * m).sum(-1) / m.sum()
    return com_z - positions[:, crit.top_layer, 2].mean(-1), com_vz


def classify(positions: torch.Tensor, velocities: torch.Tensor, steps: torch.Tensor, crit: StoppingCriteria) -> torch.Tensor:
    """Outcome code per system (B,): dissociation first, then scattering (above and moving away), then t_max."""
    height, vz = molecule_height(positions, velocities, crit)
    outcome = torch.full_like(steps, int(Outcome.RUNNING))
    outcome = torch.where(steps >= crit.max_steps, int(Outcome.TRAPPED), outcome)
    outcome = torch.where((height > crit.scatter_height) & (vz > 0), int(Outcome.SCATTERED), outcome)
    return torch.where(bond_length(positions, crit) > crit.dissociation_distance, int(Outcome.DISSOCIATED), outcome)
