"""Stopping criteria of the native engine, from :class:`~pyscatter.conditions.Termination`: dissociated,
scattered or trapped, checked every step on a batch of systems (positions in Å, velocities in ASE units)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from pyscatter.conditions import Termination
from pyscatter.engine.geometry import minimum_image
from pyscatter.outcomes import Outcome


@dataclass(frozen=True)
class StoppingCriteria:
    """molecule: indices of the two molecular atoms.  top_layer: indices of the slab's top-layer atoms.
    cell: (3, 3) Å, rows are cell vectors; pbc: periodicity used for minimum-image distances.
    masses: (N,) amu.  dissociation_distance: Å.  scatter_height: centre-of-mass height above the mean
    top layer, Å.  max_steps: steps after which a still-running trajectory counts as trapped.
    """

    molecule: tuple[int, int]
    top_layer: torch.Tensor
    cell: torch.Tensor
    pbc: tuple[bool, bool, bool]
    masses: torch.Tensor
    dissociation_distance: float
    scatter_height: float
    max_steps: int
    inverse_cell: torch.Tensor = field(init=False, repr=False)
    periodic: torch.Tensor = field(init=False, repr=False)
    molecule_index: torch.Tensor = field(init=False, repr=False)
    mass_share: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        derived = {
            "inverse_cell": torch.linalg.inv(self.cell),
            "periodic": torch.tensor(self.pbc),
            "molecule_index": torch.tensor(self.molecule, dtype=torch.long),
            "mass_share": self.masses[list(self.molecule)] / self.masses[list(self.molecule)].sum(),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)

    @classmethod
    def of(cls, initial, termination: Termination, dt: float) -> "StoppingCriteria":
        """The criteria of ``termination`` (time step ``dt`` fs) for the systems of ``initial``
        (:class:`~pyscatter.engine.batch.InitialConditions`)."""
        masses = torch.as_tensor(initial.masses, dtype=torch.float64)
        return cls(
            molecule=tuple(initial.molecule),
            top_layer=torch.as_tensor(initial.top_layer, dtype=torch.long),
            cell=torch.as_tensor(initial.frame.cell, dtype=torch.float64),
            pbc=initial.frame.pbc,
            masses=masses,
            dissociation_distance=termination.dissociation_distance,
            scatter_height=termination.scatter_height,
            max_steps=termination.max_steps(dt),
        )


def bond_length(positions: torch.Tensor, crit: StoppingCriteria) -> torch.Tensor:
    """Minimum-image distance between the two molecular atoms (B,), Å."""
    a, b = crit.molecule
    return minimum_image(positions[:, b] - positions[:, a], crit.cell, crit.periodic, crit.inverse_cell).norm(dim=-1)


def molecule_height(positions: torch.Tensor, velocities: torch.Tensor, crit: StoppingCriteria) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre-of-mass height above the mean top layer (B,), Å, and its vertical velocity (B,)."""
    index = crit.molecule_index
    com_z = (positions[:, index, 2] * crit.mass_share).sum(-1)  # not a matmul: bitwise the same at any batch size
    com_vz = (velocities[:, index, 2] * crit.mass_share).sum(-1)
    return com_z - positions[:, crit.top_layer, 2].mean(-1), com_vz


def classify(positions: torch.Tensor, velocities: torch.Tensor, steps: torch.Tensor,
             crit: StoppingCriteria) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Outcome code per system (B,): dissociation first, then scattering (above and moving away), then t_max;
    with the molecule's height (B,) Å and vertical velocity (B,) of :func:`molecule_height`."""
    height, vz = molecule_height(positions, velocities, crit)
    outcome = torch.where(steps >= crit.max_steps, int(Outcome.TRAPPED), int(Outcome.RUNNING))
    outcome = torch.where((height > crit.scatter_height) & (vz > 0), int(Outcome.SCATTERED), outcome)
    outcome = torch.where(bond_length(positions, crit) > crit.dissociation_distance, int(Outcome.DISSOCIATED), outcome)
    return outcome, height, vz
