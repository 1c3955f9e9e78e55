"""ML-PACE (``.yace``) potentials evaluated by ace-jax's own JAX code, batched.

Positions in Å, energies in eV, forces in eV/Å (minus the JAX gradient of the energy), float64.
Pairs come from full neighbour lists with a Verlet skin (:mod:`pyscatter.models.neighbours`),
laid out as dense per-atom tables that ace-jax's ``site_energies_dense`` reads. Slower than the
compiled kernel of linear ACE models (:mod:`pyscatter.models.ace`); ``.yace`` files have
nonlinear embeddings the kernel does not evaluate.
"""

from __future__ import annotations

from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import torch

from pyscatter.models.base import Frame, ModelOutput, check_species
from pyscatter.models.neighbours import FrameLists, NeighbourCache, SelectsLists, positions_array

_K_STEP = 8  # neighbour-table width grows in steps of this many slots (fewer recompilations)


@dataclass
class _Table:
    """Dense neighbour tables of B structures.

    index: (B, N, K) neighbour atom j of slot (i, k); shift: (B, N, K, 3) cell offset, Å, so
    that r_ij = x_j - x_i + shift; valid: (B, N, K) slot holds a pair within cutoff + skin.
    """

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


class PACEModel(SelectsLists):
    """An ML-PACE potential evaluated by ace-jax (jit-compiled JAX), ``structures_per_pass`` structures per pass.

    e0: isolated-atom energies (eV) per element of ``elements``; cutoff, skin: Å.
    """

    def __init__(
        self, eval_model, elements: list[int], e0: np.ndarray, cutoff: float, *,
        name: str, identity: str, skin: float,
    ):
        self.eval_model = eval_model
        self.species = frozenset(int(z) for z in elements)
        self._element_index = {int(z): k for k, z in enumerate(elements)}
        self._e0 = e0
        self.cutoff = float(cutoff)
        self.name = name
        self.identity = identity
        self.dtype = torch.float64
        self.skin = float(skin)
        self.structures_per_pass = 1
        self.default_batch_size = 8
        self.neighbours = NeighbourCache(self.cutoff, self.skin, full_list=True)
        self._width = _K_STEP

    def __call__(self, frame: Frame, positions: torch.Tensor, compute_forces: bool = True) -> ModelOutput:
        """Energies (B,) in eV and, if requested, forces (B, N, 3) in eV/Å, both float64; NaN for a structure
        with non-finite positions or two atoms at one place."""
        x = positions_array(frame, positions)
        lists = self.neighbours.refresh(frame, x)
        table = self._table(lists)
        bad = ~lists.finite | _coincident(x, table)
        x = np.where(bad[:, None, None], 0.0, x)  # evaluated without pairs, then set to NaN
        valid = table.valid & ~bad[:, None, None]
        species = np.array([self._element_index[int(z)] for z in frame.numbers], dtype=np.int32)
        offset = float(np.sum(self._e0[species]))
        fixed = (self.eval_model, self.cutoff, jnp.asarray(species))
        energies, forces = [], []
        for start in range(0, len(x), self.structures_per_pass):
            part = slice(start, start + self.structures_per_pass)
            batch = (jnp.asarray(x[part]), jnp.asarray(table.index[part]), jnp.asarray(table.shift[part]), jnp.asarray(valid[part]))
            if compute_forces:
                e, f = _energies_forces(*fixed, *batch)
                forces.append(np.asarray(f))
            else:
                e = _energies(*fixed, *batch)
            energies.append(np.asarray(e))
        energies = np.concatenate(energies) + offset
        energies[bad] = np.nan
        device = positions.device
        out_forces = None
        if compute_forces:
            out_forces = np.concatenate(forces)
            out_forces[bad] = np.nan
            out_forces = torch.from_numpy(out_forces).to(device)
        return ModelOutput(torch.from_numpy(energies).to(device), out_forces)

    def _table(self, lists: FrameLists) -> _Table:
        """The dense tables of ``lists``, brought up to date."""
        if lists.state is None:
            check_species(self, lists.frame.numbers)
            lists.state = self._build(lists, range(len(lists)), None)
        elif len(lists.changed[0]):
            lists.state = self._build(lists, lists.changed[0], lists.state)
        return lists.state

    def _build(self, lists: FrameLists, stale, old: _Table | None) -> _Table:
        n_atoms = lists.frame.n_atoms
        pairs = {int(b): lists.pairs[0][b] for b in stale}
        counts = max((np.bincount(i, minlength=n_atoms).max(initial=0) for i, _, _ in pairs.values()), default=0)
        width = max(self._width, -(-int(counts) // _K_STEP) * _K_STEP)
        shape = (len(lists), n_atoms, width)
        if old is None or width != old.index.shape[2]:
            table = _Table(np.zeros(shape, np.int32), np.zeros((*shape, 3)), np.zeros(shape, bool))
            if old is not None:  # keep the tables that are still good, widened
                k = old.index.shape[2]
                table.index[:, :, :k], table.shift[:, :, :k], table.valid[:, :, :k] = old.index, old.shift, old.valid
        else:
            table = old
        self._width = width
        for b, (i, j, s) in pairs.items():
            slot = np.arange(len(i)) - np.searchsorted(i, i)  # position of each pair in its atom's row
            table.index[b], table.shift[b], table.valid[b] = 0, 0.0, False
            table.index[b, i, slot] = j
            table.shift[b, i, slot] = s @ lists.frame.cell
            table.valid[b, i, slot] = True
        return table


def _coincident(x: np.ndarray, table: _Table) -> np.ndarray:
    """(B,) structures with a pair of their tables at zero distance."""
    rows = np.arange(len(x))[:, None, None]
    rij = x[rows, table.index] - x[:, :, None, :] + table.shift
    return ((np.einsum("bnkc,bnkc->bnk", rij, rij) == 0.0) & table.valid).any(axis=(1, 2))
