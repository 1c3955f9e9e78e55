"""Shared test data beside the clone: ``../shared`` (the published MACE model and the authors' slabs).

CI (``.ci/run``) refuses to start without it; on a developer machine without it, the tests that need
it skip with the reason printed (pytest runs with ``-rs``). Every test reading ``../shared`` goes
through :data:`needs_teacher` or the :func:`shared_structure` fixture, nothing else.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TEACHER = SHARED / "models" / "h2cu_mace_stark2023.model"
"""The published H2/Cu MACE model of Stark et al. (2023), the default model's teacher."""
STRUCTURES = SHARED / "structures"
"""The authors' slabs (FHI-aims ``.in``): ``cu{facet}_0K.in``, ``cu{111,211}_h7.0_full_925K.in``."""

needs_teacher = pytest.mark.skipif(not TEACHER.is_file(), reason=f"needs the published H2/Cu MACE model at {TEACHER}")


def read_structure(name: str):
    """``../shared/structures/name`` as ASE Atoms; skips the calling test if it is missing."""
    import ase.io

    path = STRUCTURES / name
    if not path.is_file():
        pytest.skip(f"needs the authors' structure {path}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ase's FHI-aims reader
        return ase.io.read(path)


@pytest.fixture
def shared_structure():
    """The guard for tests reading ``../shared/structures``: ``shared_structure(name)`` -> Atoms (skip if missing)."""
    return read_structure


def calculator_results(calculator, frame, positions):
    """Energies (B,) eV and forces (B, N, 3) eV/Å of positions (B, N, 3) Å on ``frame`` (a pyscatter Frame)
    from an ASE calculator, one structure at a time."""
    import numpy as np

    energies, forces = [], []
    for x in positions:
        atoms = frame.atoms(x)
        atoms.calc = calculator
        energies.append(atoms.get_potential_energy())
        forces.append(atoms.get_forces())
    return np.array(energies), np.array(forces)


def ace_jax_reference(path: str, frame, positions):
    """:func:`calculator_results` of ace-jax's own ASE calculator on the model file ``path``, with its analytic
    radials (the reference of the compiled kernel)."""
    from ace_jax import ACECalculator

    return calculator_results(ACECalculator(path, spline_tol=None), frame, positions)
