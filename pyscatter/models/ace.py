"""ACE force model: ace-jax linear ACE (``.npz``) and ML-PACE (``.yace``) files, batched.

Positions in Å, energies in eV, forces in eV/Å. The potential is ace-jax's own evaluation
form (``ACECalculator.eval_model``: lean, optionally splined radials, product-basis DAG);
what this module adds is the batch: every structure of a call gets a dense, padded
neighbour table (N, K) from a per-structure Verlet list with a ``skin`` (rebuilt for a
structure once any of its atoms moved more than skin / 2), pairs are cut at exactly the
model's cutoff inside the compiled step, and one ``jax.jit``-compiled, ``vmap``-ed function
returns energies and forces (minus the gradient of the energy with respect to positions) of
``structures_per_pass`` structures per call.

Edge vectors are formed in float64 from float64 positions and only then cast to the compute
``dtype``; site energies (without the isolated-atom energies E0, which are added afterwards)
are summed in float64. ``jax_enable_x64`` is switched on when this
module is imported (ace-jax evaluates float64 models only under it).

Measured agreement with ``ace_jax.ACECalculator`` (same file, exact radials) and timings:
``tests/test_ace.py`` and ``benchmarks/bench_force_call.py``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import torch
import vesin

from pyscatter.models.base import Frame, ModelError, ModelOutput, file_sha256

DEFAULT_SKIN = 1.0  # Å
DEFAULT_SPLINE_TOL = 1e-12
"""ace-jax ``spline_tol`` of the default path: splined radials, measured 1e-11 eV and 6e-10 eV/Å from the
analytic ones on a 56-atom Cu+H2 slab (1e-10 gave 2e-8 eV/Å) at the same speed; ``None``: analytic radials."""
DEFAULT_STRUCTURES_PER_PASS = 1
"""On CPU a vmap-ed pass costs more per structure than single ones for the shipped H2/Cu surrogate
(splined, float64, 56 atoms, one thread: 5.7 ms per structure alone, 9.0 at 8, 10.4 at 32 per pass)."""
_K_STEP = 8  # neighbour-table width grows in steps of this many slots (fewer recompilations)
SUPPORTED_DTYPES = (torch.float32, torch.float64)


@dataclass
class _Table:
    """Dense neighbour tables of B structures at their reference positions (B, N, 3), Å.

    index: (B, N, K) neighbour atom j of slot (i, k); shift: (B, N, K, 3) cell offset, Å, so
    that r_ij = x_j - x_i + shift; valid: (B, N, K) slot holds a pair within cutoff + skin.
    """

    frame: Frame
    reference: np.ndarray
    index: np.ndarray
    shift: np.ndarray
    valid: np.ndarray


def _site_energy_sum(model, cutoff: float, node_z, x, index, shift, valid):
    """Total energy (float64, eV) of one structure x (N, 3) from its dense neighbour table."""
    rij = x[index] - x[:, None, :] + shift
    mask = valid & (jnp.sum(rij * rij, axis=-1) < cutoff * cutoff)
    park = jnp.zeros(3, rij.dtype).at[0].set(model.pad_cutoff())
    rij = jnp.where(mask[..., None], rij, park)
    dtype = model.E0.dtype
    zi = jnp.broadcast_to(node_z[:, None], index.shape)
    sites = model.site_energies_dense(rij.astype(dtype), zi, node_z[index], mask, node_z)
    return jnp.sum(sites.astype(jnp.float64))


@eqx.filter_jit
def _energies(model, cutoff, node_z, x, index, shift, valid):
    one = lambda *a: _site_energy_sum(model, cutoff, node_z, *a)
    return jax.vmap(one)(x, index, shift, valid)


@eqx.filter_jit
def _energies_forces(model, cutoff, node_z, x, index, shift, valid):
    one = jax.value_and_grad(lambda *a: _site_energy_sum(model, cutoff, node_z, *a))
    energies, gradient = jax.vmap(one)(x, index, shift, valid)
    return energies, -gradient


class ACEModel:
    """An ace-jax ACE or PACE potential evaluated on batches of structures sharing one :class:`Frame`."""

    def __init__(
        self, eval_model, elements: list[int], e0: np.ndarray, cutoff: float, *,
        name: str, identity: str, dtype: torch.dtype, skin: float, structures_per_pass: int,
    ):
        self.eval_model = eval_model
        self.species = frozenset(int(z) for z in elements)
        self._element_index = {int(z): k for k, z in enumerate(elements)}
        self._e0 = e0  # isolated-atom energies (eV) per element, added in float64
        self.cutoff = float(cutoff)
        self.name = name
        self.identity = identity
        self.dtype = dtype
        self.skin = float(skin)
        self.structures_per_pass = int(structures_per_pass)
        self.default_batch_size = 8
        self._neighbour_list = vesin.NeighborList(cutoff=self.cutoff + self.skin, full_list=True)
        self._width = _K_STEP
        self._table: _Table | None = None

    def __call__(self, frame: Frame, positions: torch.Tensor, compute_forces: bool = True) -> ModelOutput:
        """Energies (B,) in eV and, if requested, forces (B, N, 3) in eV/Å, both float64."""
        if positions.ndim != 3 or positions.shape[1:] != (frame.n_atoms, 3):
            raise ValueError(f"positions must have shape (B, {frame.n_atoms}, 3), got {tuple(positions.shape)}")
        x = positions.detach().to("cpu", torch.float64).numpy()
        table = self._refresh(frame, x)
        species = np.array([self._element_index[int(z)] for z in frame.numbers], dtype=np.int32)
        offset = float(np.sum(self._e0[species]))
        fixed = (self.eval_model, self.cutoff, jnp.asarray(species))
        energies, forces = [], []
        for start in range(0, len(x), self.structures_per_pass):
            part = slice(start, start + self.structures_per_pass)
            batch = (jnp.asarray(x[part]), jnp.asarray(table.index[part]), jnp.asarray(table.shift[part]), jnp.asarray(table.valid[part]))
            if compute_forces:
                e, f = _energies_forces(*fixed, *batch)
                forces.append(np.asarray(f))
            else:
                e = _energies(*fixed, *batch)
            energies.append(np.asarray(e))
        device = positions.device
        out_forces = torch.from_numpy(np.concatenate(forces)).to(device) if compute_forces else None
        return ModelOutput(torch.from_numpy(np.concatenate(energies) + offset).to(device), out_forces)

    def _refresh(self, frame: Frame, x: np.ndarray) -> _Table:
        """The neighbour tables, rebuilt for structures that moved more than skin / 2 (all for a new frame or batch size)."""
        table = self._table
        if table is None or len(table.reference) != len(x) or not _same_frame(table.frame, frame):
            unknown = {int(z) for z in frame.numbers} - self.species
            if unknown:
                raise ModelError(f"model {self.name!r} has no parameters for atomic numbers {sorted(unknown)}")
            self._table = self._build(frame, x, range(len(x)), None)
            return self._table
        moved = np.linalg.norm(x - table.reference, axis=-1).max(axis=1) > self.skin / 2
        if moved.any():
            self._table = self._build(frame, x, np.flatnonzero(moved), table)
        return self._table

    def _build(self, frame: Frame, x: np.ndarray, stale, old: _Table | None) -> _Table:
        lists = {int(b): self._pairs(frame, x[b]) for b in stale}
        counts = max((np.bincount(i, minlength=frame.n_atoms).max(initial=0) for i, _, _ in lists.values()), default=0)
        width = max(self._width, -(-int(counts) // _K_STEP) * _K_STEP)
        B, N = x.shape[:2]
        if old is None or width != old.index.shape[2]:
            table = _Table(frame, x.copy(), np.zeros((B, N, width), np.int32), np.zeros((B, N, width, 3)), np.zeros((B, N, width), bool))
            if old is not None:  # keep the lists that are still good, widened
                k = old.index.shape[2]
                table.reference[:] = old.reference
                table.index[:, :, :k], table.shift[:, :, :k], table.valid[:, :, :k] = old.index, old.shift, old.valid
        else:
            table = old
        self._width = width
        for b, (i, j, shift) in lists.items():
            slot = np.arange(len(i)) - np.searchsorted(i, i)  # position of each pair in its atom's row
            table.index[b], table.shift[b], table.valid[b] = 0, 0.0, False
            table.index[b, i, slot] = j
            table.shift[b, i, slot] = shift
            table.valid[b, i, slot] = True
            table.reference[b] = x[b]
        return table

    def _pairs(self, frame: Frame, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(i, j, shift in Å) of all pairs closer than cutoff + skin, sorted by (i, j, S)."""
        i, j, s = self._neighbour_list.compute(points=x, box=frame.cell, periodic=list(frame.pbc), quantities="ijS")
        order = np.lexsort((s[:, 2], s[:, 1], s[:, 0], j, i))
        return i[order], j[order].astype(np.int32), s[order] @ frame.cell


def _same_frame(a: Frame, b: Frame) -> bool:
    return a is b or (a.pbc == b.pbc and np.array_equal(a.numbers, b.numbers) and np.array_equal(a.cell, b.cell))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def load_ace(
    path: str | os.PathLike,
    dtype: torch.dtype = torch.float64,
    skin: float = DEFAULT_SKIN,
    spline_tol: float | None = DEFAULT_SPLINE_TOL,
    structures_per_pass: int = DEFAULT_STRUCTURES_PER_PASS,
) -> ACEModel:
    """Load an ace-jax ``.npz`` or ML-PACE ``.yace`` file as an :class:`ACEModel`.

    dtype: compute precision (float64 or float32; positions, edge vectors and the energy sum stay float64).
    skin: Verlet skin of the cached neighbour tables, Å.
    spline_tol: tolerance of ace-jax's splined radials (``None``: the analytic radials, exact).
    structures_per_pass: structures per compiled (vmap-ed) call; a batch is evaluated in such passes.
    Raises :class:`ModelError` (one line) for missing or unreadable files and unsupported dtypes.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    if dtype not in SUPPORTED_DTYPES:
        raise ModelError(f"{path.name}: dtype must be float32 or float64, got {dtype}")
    if skin < 0:
        raise ModelError(f"skin must be >= 0 Å, got {skin}")
    from ace_jax.calc.point import ACECalculator

    try:
        calculator = ACECalculator(
            str(path), dtype=str(dtype).removeprefix("torch."), spline_tol=spline_tol, energy_reference="E0"
        )
    except Exception as exc:
        raise ModelError(f"{path.name} is not a readable ACE model: {_first_line(exc)}") from exc
    meta = calculator.meta
    settings = f"{str(dtype)[6:]}:spline={spline_tol}"
    model = ACEModel(
        calculator.eval_model,
        [int(z) for z in meta["elements"]],
        np.asarray(calculator.model.E0, np.float64),
        float(calculator.cutoff),
        name=path.name,
        identity=f"ace:{file_sha256(str(path))}:{settings}",
        dtype=dtype,
        skin=skin,
        structures_per_pass=structures_per_pass,
    )
    return model
