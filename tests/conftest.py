"""Shared test data beside the clone: ``../shared`` (the published MACE model and the authors' slabs).

CI (``.ci/run``) refuses to start without it; on a developer machine without it, the tests that need
it skip with the reason printed (pytest runs with ``-rs``). Every test reading ``../shared`` goes
through :data:`needs_teacher` or the :func:`shared_structure` fixture, nothing else.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TEACHER = SHARED / "models" / "h2cu_mace_stark2023.model"
"""The published H2/Cu MACE model of Stark et al. (2023), the default model's teacher."""
STRUCTURES = SHARED / "structures"
"""The authors' slabs (FHI-aims ``.in``): ``cu{facet}_0K.in``, ``cu{111,211}_h7.0_full_925K.in``."""


def pytest_configure(config):
    """Under pytest-xdist (``-n 2`` in pyproject.toml) each worker's torch gets its share of the cores: torch's
    default, one thread per core in every worker, oversubscribes the 2-core CI machine."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(workers)))


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


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> str:
    """A small H/Cu linear ACE basis (ace-jax) with a random readout and E0, as ace-jax writes fitted models."""
    import io

    import numpy as np
    from ace_jax.basis.export import save_npz
    from ace_jax.basis.model import build_model
    from ace_jax.eval import load
    from ace_jax.fit.inducing import GPConfig
    from ace_jax.fit.pipeline.export import linear_arrays_from_mean

    basis = build_model([1, 29], 2, 6, rcut=4.5, r0=np.array([[0.74, 1.67], [1.67, 2.6]]))
    buffer = io.BytesIO()
    save_npz(buffer, basis)
    buffer.seek(0)
    _, meta, arrays = load(buffer)
    cfg = GPConfig(r0=1.0, rcut=4.5, n_B=meta["n_B"], n_pair=meta["n_pair"], NZ=2, C=1)
    coefficients = np.random.default_rng(1).normal(0.0, 0.05, cfg.len_basis)
    path = tmp_path_factory.mktemp("ace") / "h2cu.npz"
    np.savez(path, **linear_arrays_from_mean(arrays, np.array([-1.1, -3.7]), cfg, coefficients))
    return str(path)


class Poisoned:
    """``model`` except that the given structures (positions (n, 3) Å, of any system size: a whole system or a free
    molecule) get NaN forces, to inject failures exactly where a reference run put a trajectory."""

    def __init__(self, model, structures):
        import torch

        self.model, self.structures = model, [torch.as_tensor(x) for x in structures]
        self.name, self.species, self.cutoff, self.dtype = "poisoned", model.species, model.cutoff, model.dtype
        self.identity = "poisoned"

    def select(self, frame, keep):
        self.model.select(frame, keep)

    def __call__(self, frame, positions, compute_forces=True):
        out = self.model(frame, positions, compute_forces)
        for poison in self.structures:
            if poison.shape == positions.shape[1:]:
                out.forces[(positions == poison).flatten(1).all(1)] = float("nan")
        return out
