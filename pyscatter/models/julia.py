"""ACEpotentials.jl models (``ACEpotentials.save_model`` JSON files) evaluated in Julia.

Positions in Å, energies in eV, forces in eV/Å; Julia works in Hartree atomic units, converted by
:mod:`pyscatter.models.julia_session`; :mod:`pyscatter.engine.nqcd` also runs whole trajectories with such a model in Julia.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from pyscatter.models.base import ForceModel, Frame, ModelError, ModelOutput, file_sha256
from pyscatter.models.julia_session import AU_ENERGY, AU_FORCE, AU_LENGTH, julia


class JuliaACEModel(ForceModel):
    """An ACEpotentials.jl model file, evaluated in Julia.

    As a :class:`~pyscatter.models.base.ForceModel` (structure by structure, for lattice constants,
    thermalisation and EBK) and, inside :func:`pyscatter.engine.nqcd.run_dynamics_nqcd`, natively
    without Python per step. Reading the file runs no code from it (JSON).
    """

    def __init__(self, path: str | Path):
        path = Path(path)
        try:
            spec = json.loads(path.read_text())["model_spec"]
            elements = spec["elements"]
            cutoff = max(float(spec[k]) for k in ("rcut", "pair_rcut") if isinstance(spec.get(k), (int, float)))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ModelError(f"{path}: not an ACEpotentials model file with numeric model_spec rcut and elements") from err
        from ase.data import atomic_numbers

        self.path = path
        self.name = path.name
        self.species = frozenset(atomic_numbers[e] for e in elements)
        self.cutoff = float(cutoff)
        self.dtype = torch.float64
        self.identity = f"acepotentials:{file_sha256(str(path))}"
        self._potential = None

    def evaluator(self, frame: Frame):
        """The Julia ``ACEEvaluator`` of this model for ``frame``."""
        jl = julia()
        if self._potential is None:
            self._potential = jl.load_ace(str(self.path))
        return jl.ACEEvaluator(self._potential, frame.numbers, np.asfortranarray(frame.cell.T / AU_LENGTH), np.asarray(frame.pbc))

    def __call__(self, frame: Frame, positions: torch.Tensor, compute_forces: bool = True) -> ModelOutput:
        """Energies (B,) eV and forces (B, N, 3) eV/Å; NaN for a structure with non-finite positions."""
        evaluator, jl = self.evaluator(frame), julia()
        pos = positions.detach().to("cpu", torch.float64).numpy()
        energies, forces = np.full(len(pos), np.nan), np.full(pos.shape, np.nan)
        for b, p in enumerate(pos):
            if not np.isfinite(p).all():
                continue
            energy, derivative = jl.evaluate(evaluator, np.asfortranarray(p.T / AU_LENGTH))
            energies[b] = float(energy) * AU_ENERGY
            forces[b] = -np.asarray(derivative).T * AU_FORCE
        dev = positions.device
        return ModelOutput(torch.from_numpy(energies).to(dev), torch.from_numpy(forces).to(dev) if compute_forces else None)
