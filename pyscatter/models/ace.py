"""ACE force models: ace-jax linear ACE (``.npz``) and ML-PACE (``.yace``) files, batched.

Positions in Å, energies in eV, forces in eV/Å, all float64. ace-jax reads the file and defines
the potential. A linear ACE model (what ace-jax fits and ``pyscatter surrogate build`` writes)
is evaluated by a compiled kernel (:mod:`pyscatter.models.ace_kernel`, numba, one thread) from
the model's own functions, taken once at load:

- radials: every (centre, neighbour) species pair's many-body radials R_nl(r) and pair
  potential, as piecewise degree-7 polynomials on intervals of ``RADIAL_INTERVAL`` Å from
  ``RADIAL_R_MIN`` (linear continuation below) to the cutoff, each least-squares fitted to ace-jax's analytic values and
  r-derivatives at 8 Chebyshev points of its interval (checked at load on random distances);
- angular part: ace-jax's real solid harmonics, which are polynomials in (x, y, z), as
  monomial terms (fitted exactly and checked at load);
- readout: the product basis (orders 1-4) with the folded per-species coefficients.

Forces are the analytic gradient of that energy. Pairs come from per-structure half neighbour
lists with a Verlet ``skin``, rebuilt for a structure once any of its atoms moved more than
skin / 2. ML-PACE files (nonlinear embeddings) are evaluated by ace-jax's own JAX code instead
(:class:`PACEModel`, slower).

Agreement with ``ace_jax.ACECalculator`` (analytic radials) and timings: ``tests/test_ace.py``,
``benchmarks/bench_force_call.py``.
"""

from __future__ import annotations

import math
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

from pyscatter.models import ace_kernel
from pyscatter.models.base import Frame, ModelError, ModelOutput, file_sha256

DEFAULT_SKIN = 0.5  # Å
RADIAL_INTERVAL = 0.02  # Å
RADIAL_R_MIN = 0.2
"""Å: the radial tables start here; closer pairs (H-H > 20 eV up the wall, never reached in scattering) continue linearly."""
RADIAL_DEGREE = 7  # the kernel (ace_kernel._radial) is written out for this degree
RADIAL_CHECK = 1e-9
"""Largest accepted table error at random distances, relative to the largest radial value (values and r-derivatives)."""
PACE_SPLINE_TOL = 1e-12
"""ace-jax ``spline_tol`` of the ML-PACE path: measured 1e-11 eV and 6e-10 eV/Å from analytic radials."""
_K_STEP = 8  # PACE path: neighbour-table width grows in steps of this many slots (fewer recompilations)


@dataclass(frozen=True)
class LinearACETables:
    """A linear ACE potential in the form :func:`pyscatter.models.ace_kernel.evaluate` reads.

    table: (NZ * NZ, n_intervals, degree + 1, n_cols) coefficients of t^q, t = (r - r_min) / h - k on
        interval k, for species pair z_i * NZ + z_j; columns: n_rnl many-body radials, then the pair potential(s).
    r_min, h, cutoff: Å. w_pair: (n_pair, NZ) pair readout per centre species.
    exponents (n_monomials, 3): (a, b, c) of the monomials x^a y^b z^c (float), ordered by degree; chain
        (n_monomials, 2): monomial q is monomial chain[q, 0] times coordinate chain[q, 1]; derivatives (n, 3):
        (q, d, lower) for every positive exponent d of monomial q, lower being q with that exponent lowered by one.
    terms (n, 2) = (y, monomial) and weights (n,): Y_y(v) = sum of weight * monomial over the terms of y; l_max.
    blocks (n_blocks, 4): per l, (l, n_l, first radial column, first A index); the atomic basis
        A[a0 + m n_l + n] = sum_j R[r0 + n] Y[l^2 + m], radial columns reordered to make each l contiguous.
    products (n_AA, 4), orders (n_AA,), readout (n_AA, NZ): the product basis (indices into that A) and its coefficients.
    e0: isolated-atom energies per element, eV. elements: atomic numbers in species-index order.
    """

    table: np.ndarray
    r_min: float
    h: float
    cutoff: float
    n_rnl: int
    w_pair: np.ndarray
    exponents: np.ndarray
    chain: np.ndarray
    derivatives: np.ndarray
    terms: np.ndarray
    weights: np.ndarray
    l_max: int
    blocks: np.ndarray
    products: np.ndarray
    orders: np.ndarray
    readout: np.ndarray
    e0: np.ndarray
    elements: tuple[int, ...]


def _radial_columns(eval_model, zi: int, zj: int):
    """r (Å, shape (n,)) -> (values, d/dr) of all radial columns (n, n_cols) of species pair (zi, zj)."""

    def columns(r):
        rij = jnp.stack([r, jnp.zeros_like(r), jnp.zeros_like(r)], -1)
        rnl, pair = eval_model.radial(rij, jnp.full(r.shape, zi), jnp.full(r.shape, zj))
        return jnp.concatenate([rnl, pair], -1)

    def values_and_slopes(r):
        r = jnp.asarray(r)
        value, slope = jax.jvp(columns, (r,), (jnp.ones_like(r),))
        return np.asarray(value), np.asarray(slope)

    return values_and_slopes


def _fit_radials(eval_model, nz: int, cutoff: float) -> tuple[np.ndarray, float]:
    """Per-interval degree-7 least-squares fits to values and slopes at Chebyshev points; checked at random r."""
    degree = RADIAL_DEGREE
    n = math.ceil((cutoff - RADIAL_R_MIN) / RADIAL_INTERVAL)
    h = (cutoff - RADIAL_R_MIN) / n
    nodes = 0.5 - 0.5 * np.cos(np.pi * (np.arange(degree + 1) + 0.5) / (degree + 1))
    powers = np.arange(degree + 1)
    value_rows = nodes[:, None] ** powers
    slope_rows = np.where(powers > 0, powers * nodes[:, None] ** np.maximum(powers - 1, 0), 0.0)
    fit = np.linalg.pinv(np.concatenate([value_rows, slope_rows]))  # (degree + 1, 2 (degree + 1))
    points = (RADIAL_R_MIN + h * (np.arange(n)[:, None] + nodes)).ravel()
    check = np.random.default_rng(0).uniform(RADIAL_R_MIN, cutoff, 512)
    tables = []
    for zi in range(nz):
        for zj in range(nz):
            columns = _radial_columns(eval_model, zi, zj)
            value, slope = (a.reshape(n, degree + 1, -1) for a in columns(points))
            table = np.einsum("qk,nkc->nqc", fit, np.concatenate([value, slope * h], 1))
            exact, exact_slope = columns(check)
            k = np.minimum(((check - RADIAL_R_MIN) / h).astype(int), n - 1)
            t = ((check - RADIAL_R_MIN) / h - k)[:, None]
            got = sum(table[k, q] * t**q for q in powers)
            got_slope = sum(q * table[k, q] * t ** (q - 1) for q in powers[1:]) / h
            scale = max(np.abs(value).max(), 1.0)
            error = max(np.abs(got - exact).max(), np.abs(got_slope - exact_slope).max()) / scale
            if error > RADIAL_CHECK:
                raise ModelError(f"radial tables of species pair ({zi}, {zj}) are off by {error:.1e} (relative)")
            tables.append(table)
    return np.ascontiguousarray(np.stack(tables)), h


def _harmonic_terms(eval_model, l_max: int) -> tuple[np.ndarray, ...]:
    """ace-jax's real solid harmonics as monomials: exponents, chain, derivatives, terms (y, monomial), weights."""
    exponents = [(a, b, d - a - b) for d in range(l_max + 1) for a in range(d, -1, -1) for b in range(d - a, -1, -1)]
    index = {e: q for q, e in enumerate(exponents)}
    chain = np.zeros((len(exponents), 2), np.int64)
    derivatives = []
    for q, e in enumerate(exponents):
        for d in range(3):
            if e[d] > 0:
                derivatives.append((q, d, index[tuple(x - (k == d) for k, x in enumerate(e))]))
                chain[q] = derivatives[-1][2], d  # built from the monomial without one factor of its last coordinate
    exponents = np.array(exponents, np.float64)
    v = np.random.default_rng(1).normal(size=(4 * len(exponents), 3))
    harmonics = np.asarray(eval_model.angular(jnp.asarray(v)))
    monomials = np.prod(v[:, None, :] ** exponents[None], axis=-1)
    weights = np.linalg.lstsq(monomials, harmonics, rcond=None)[0]
    weights[np.abs(weights) < 1e-13] = 0.0
    if np.abs(monomials @ weights - harmonics).max() > 1e-11:
        raise ModelError("the model's angular basis is not a polynomial of degree <= l_max (unsupported harmonics)")
    q, y = np.nonzero(weights)
    derivatives = np.array(derivatives, np.int64).reshape(-1, 3)
    return exponents, chain, derivatives, np.stack([y, q], 1).astype(np.int64), weights[q, y]


def tabulate(eval_model, e0: np.ndarray, elements: list[int]) -> LinearACETables:
    """The kernel form of an ace-jax linear (lean, folded) ``ACEModel`` with isolated-atom energies e0 (eV)."""
    nz = len(elements)
    cutoff = float(np.max(np.asarray(eval_model.pair_envelope)[..., 0]))
    table, h = _fit_radials(eval_model, nz, cutoff)
    l_max = int(eval_model.lmax)
    exponents, chain, derivatives, terms, weights = _harmonic_terms(eval_model, l_max)
    a_r = np.asarray(eval_model.aspec_r, np.int64)
    a_y = np.asarray(eval_model.aspec_y, np.int64)
    a_l = np.floor(np.sqrt(a_y + 0.5)).astype(np.int64)
    blocks, columns, position = [], [], {}
    for l in range(l_max + 1):
        radials = np.unique(a_r[a_l == l])
        if len(radials) == 0:
            continue
        a0 = sum(n * (2 * ll + 1) for ll, n, _, _ in blocks)
        for n, c in enumerate(radials):
            for m in range(2 * l + 1):
                position[(c, l * l + m)] = a0 + m * len(radials) + n
        blocks.append((l, len(radials), len(columns), a0))
        columns += list(radials)
    n_pair = int(np.asarray(eval_model.Wpair).shape[0])
    pair_columns = list(range(table.shape[-1] - n_pair, table.shape[-1]))
    table = np.ascontiguousarray(table[..., columns + pair_columns])
    new_index = np.array([position[(c, y)] for c, y in zip(a_r, a_y)], np.int64)
    groups = [new_index[np.asarray(g, np.int64)] for g in eval_model.aa_specs]
    if max(g.shape[1] for g in groups) > 4:
        raise ModelError("correlation orders above 4 are not supported")
    products = np.concatenate([np.pad(g, ((0, 0), (0, 4 - g.shape[1]))) for g in groups])
    orders = np.concatenate([np.full(len(g), g.shape[1], np.int64) for g in groups])
    w_pair = np.ascontiguousarray(np.asarray(eval_model.Wpair, np.float64))
    return LinearACETables(
        table=table, r_min=RADIAL_R_MIN, h=h, cutoff=cutoff, n_rnl=table.shape[-1] - w_pair.shape[0], w_pair=w_pair,
        exponents=exponents, chain=chain, derivatives=derivatives, terms=terms, weights=weights, l_max=l_max,
        blocks=np.array(blocks, np.int64).reshape(-1, 4), products=products, orders=orders,
        readout=np.ascontiguousarray(np.asarray(eval_model.ctilde, np.float64)),
        e0=np.asarray(e0, np.float64), elements=tuple(int(z) for z in elements),
    )


@dataclass
class _HalfLists:
    """Half neighbour lists (cutoff + skin) of B structures at their reference positions (B, N, 3), Å, and
    what the kernel reads of their frame: species index per atom, atoms sorted by species, where each
    species starts in that order, and the isolated-atom energy of the structure (eV)."""

    frame: Frame
    species: np.ndarray
    by_species: np.ndarray
    species_start: np.ndarray
    e0: float
    reference: np.ndarray
    pairs: list  # per structure: (first, second, shift (P, 3) Å)
    offsets: np.ndarray
    first: np.ndarray
    second: np.ndarray
    shift: np.ndarray


class ACEModel:
    """A linear ACE potential (:class:`LinearACETables`) evaluated by the compiled kernel on batches sharing one :class:`Frame`.

    Float64 throughout: a float32 kernel was measured no faster (0.65 against 0.66 ms per 56-atom structure).
    """

    def __init__(self, tables: LinearACETables, *, name: str, identity: str, skin: float):
        self.tables = tables
        self.species = frozenset(tables.elements)
        self._species_index = {z: k for k, z in enumerate(tables.elements)}
        self.cutoff = tables.cutoff
        self.name = name
        self.identity = identity
        self.dtype = torch.float64
        self.skin = float(skin)
        self.default_batch_size = 16
        self._neighbour_list = vesin.NeighborList(cutoff=self.cutoff + self.skin, full_list=False)
        self._lists: _HalfLists | None = None

    def __call__(self, frame: Frame, positions: torch.Tensor, compute_forces: bool = True) -> ModelOutput:
        """Energies (B,) in eV and, if requested, forces (B, N, 3) in eV/Å, both float64."""
        if positions.ndim != 3 or positions.shape[1:] != (frame.n_atoms, 3):
            raise ValueError(f"positions must have shape (B, {frame.n_atoms}, 3), got {tuple(positions.shape)}")
        x = np.ascontiguousarray(positions.detach().to("cpu", torch.float64).numpy())
        lists = self._refresh(frame, x)
        t = self.tables
        energies = np.empty(len(x))
        forces = np.empty_like(x) if compute_forces else np.empty((0, 0, 3))
        ace_kernel.evaluate(
            x, lists.species, lists.by_species, lists.species_start, lists.offsets, lists.first, lists.second, lists.shift, compute_forces, t.cutoff, t.table,
            t.r_min, 1.0 / t.h, t.n_rnl, t.w_pair, t.chain, t.derivatives, t.exponents, t.terms, t.weights, t.l_max, t.blocks,
            t.products, t.orders, t.readout, energies, forces,
        )
        energies += lists.e0
        device = positions.device
        return ModelOutput(torch.from_numpy(energies).to(device), torch.from_numpy(forces).to(device) if compute_forces else None)

    def _refresh(self, frame: Frame, x: np.ndarray) -> _HalfLists:
        """The half lists, rebuilt for structures that moved more than skin / 2 (all for a new frame or batch size)."""
        lists = self._lists
        if lists is None or len(lists.reference) != len(x) or not _same_frame(lists.frame, frame):
            _check_elements(self, frame)
            species = np.array([self._species_index[int(z)] for z in frame.numbers], np.int64)
            by_species = np.argsort(species, kind="stable")
            species_start = np.searchsorted(species[by_species], np.arange(len(self.tables.elements) + 1))
            e0 = float(self.tables.e0[species].sum())
            stale = np.arange(len(x))
            lists = _HalfLists(frame, species, by_species, species_start.astype(np.int64), e0, x.copy(), [None] * len(x),
                               *([None] * 4))
        else:
            stale = np.flatnonzero(_moved(lists.reference, x, self.skin))
            if len(stale) == 0:
                return lists
        for b in stale:
            i, j, s = self._neighbour_list.compute(points=x[b], box=frame.cell, periodic=list(frame.pbc), quantities="ijS")
            lists.pairs[b] = (i.astype(np.int64), j.astype(np.int64), s @ frame.cell)
            lists.reference[b] = x[b]
        lists.offsets = np.concatenate([[0], np.cumsum([len(p[0]) for p in lists.pairs])]).astype(np.int64)
        lists.first, lists.second, lists.shift = (np.ascontiguousarray(np.concatenate([p[k] for p in lists.pairs])) for k in range(3))
        self._lists = lists
        return lists


def _moved(reference: np.ndarray, x: np.ndarray, skin: float) -> np.ndarray:
    """(B,) structures of x (B, N, 3) with an atom more than skin / 2 (Å) from its reference position."""
    return np.linalg.norm(x - reference, axis=-1).max(axis=1) > skin / 2


def _check_elements(model, frame: Frame) -> None:
    unknown = {int(z) for z in frame.numbers} - model.species
    if unknown:
        raise ModelError(f"model {model.name!r} has no parameters for atomic numbers {sorted(unknown)}")


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


class PACEModel:
    """An ML-PACE (``.yace``) potential evaluated by ace-jax (jit-compiled JAX), one structure per pass."""

    def __init__(
        self, eval_model, elements: list[int], e0: np.ndarray, cutoff: float, *,
        name: str, identity: str, skin: float,
    ):
        self.eval_model = eval_model
        self.species = frozenset(int(z) for z in elements)
        self._element_index = {int(z): k for k, z in enumerate(elements)}
        self._e0 = e0  # isolated-atom energies (eV) per element, added in float64
        self.cutoff = float(cutoff)
        self.name = name
        self.identity = identity
        self.dtype = torch.float64
        self.skin = float(skin)
        self.structures_per_pass = 1
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
            _check_elements(self, frame)
            self._table = self._build(frame, x, range(len(x)), None)
            return self._table
        moved = _moved(table.reference, x, self.skin)
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


def load_ace(path: str | os.PathLike, skin: float = DEFAULT_SKIN) -> ACEModel | PACEModel:
    """Load an ace-jax linear ACE ``.npz`` (compiled kernel) or an ML-PACE ``.yace`` file (ace-jax's JAX evaluation), float64.

    skin: Verlet skin of the cached neighbour lists, Å.
    Raises :class:`ModelError` (one line) for missing or unreadable files and unsupported models.
    """
    from ace_jax.calc.point import ACECalculator
    from ace_jax.eval.model import ACEModel as LinearEvalModel

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    if skin < 0:
        raise ModelError(f"skin must be >= 0 Å, got {skin}")
    linear = path.suffix != ".yace"
    try:
        calculator = ACECalculator(str(path), dtype="float64", spline_tol=None if linear else PACE_SPLINE_TOL, energy_reference="E0")
    except Exception as exc:
        raise ModelError(f"{path.name} is not a readable ACE model: {_first_line(exc)}") from exc
    elements = [int(z) for z in calculator.meta["elements"]]
    e0 = np.asarray(calculator.model.E0, np.float64)
    digest = file_sha256(str(path))
    if isinstance(calculator.eval_model, LinearEvalModel):
        tables = tabulate(calculator.eval_model, e0, elements)
        return ACEModel(tables, name=path.name, identity=f"ace:{digest}:tables={RADIAL_DEGREE}/{tables.h:.6f}", skin=skin)
    return PACEModel(
        calculator.eval_model, elements, e0, float(calculator.cutoff),
        name=path.name, identity=f"ace:{digest}:jax:spline={PACE_SPLINE_TOL}", skin=skin,
    )
