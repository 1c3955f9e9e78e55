"""Periodic geometry: displacements in a cell whose rows are its vectors, Å."""

from __future__ import annotations

import torch


def minimum_image(displacement: torch.Tensor, cell: torch.Tensor, pbc: tuple[bool, bool, bool] | torch.Tensor,
                  inverse_cell: torch.Tensor | None = None) -> torch.Tensor:
    """Shortest periodic image of displacement vectors (..., 3), Å (exact for lengths below half a cell height);
    ``pbc`` per cell vector, a tuple or a bool tensor (3,)."""
    fractional = displacement @ (torch.linalg.inv(cell) if inverse_cell is None else inverse_cell)
    periodic = torch.as_tensor(pbc, device=displacement.device)
    fractional = torch.where(periodic, fractional - torch.round(fractional), fractional)
    return fractional @ cell
