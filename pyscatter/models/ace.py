"""Linear ACE force models (ace-jax ``.npz``) evaluated by a compiled kernel, and the loader of ACE files.

Positions in Å, energies in eV, forces in eV/Å, all float64. ace-jax reads the file and defines
the potential. A linear ACE model (what ace-jax fits and ``pyscatter surrogate build`` writes)
is evaluated by :mod:`pyscatter.models.ace_kernel` (numba, one thread) from tables of the
model's own functions, taken once at load: every species pair's radials and pair potential as
piecewise degree-7 polynomials (least-squares fits to ace-jax's values and r-derivatives, checked
at load), ace-jax's real solid harmonics as monomials, and the product basis with its folded
coefficients. Forces are the analytic gradient of that energy. Pairs come from per-structure half
lists with a Verlet skin (:mod:`pyscatter.models.neighbours`). ML-PACE ``.yace`` files (nonlinear
embeddings) are evaluated by ace-jax's JAX code (:mod:`pyscatter.models.pace`). Design notes and
measurements: ``docs/models.md``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp
import numpy as np
import torch

from pyscatter.models import ace_kernel
from pyscatter.models.base import Frame, ModelError, ModelOutput, check_species
from pyscatter.models.files import committee_record, file_kind, sha256
from pyscatter.models.neighbours import FrameLists, NeighbourCache, SelectsLists, positions_array

DEFAULT_SKIN = 0.5  # Å
RADIAL_INTERVAL = 0.02  # Å
RADIAL_R_MIN = 0.2
"""Å: the radial tables start here; closer pairs (H-H > 20 eV up the wall, never reached in scattering) continue linearly."""
RADIAL_DEGREE = 7  # the kernel (ace_kernel._radial) is written out for this degree
RADIAL_CHECK = 1e-9
"""Largest accepted table error at random distances, relative to the largest radial value (values and r-derivatives)."""
PACE_SPLINE_TOL = 1e-12
"""ace-jax ``spline_tol`` of the ML-PACE path: measured 1e-11 eV and 6e-10 eV/Å from analytic radials."""


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

    What the kernel skips, exactly (its zeros): live (NZ * NZ, n_blocks + 1, 2): per species pair and l block,
        the range [lo, hi) of radial columns that are not identically zero (each l block's columns are ordered by
        the neighbour species owning them, so a range holds no dead column of an ACE1-style basis), the last row
        the pair columns. split_species: the species (hydrogen, -1 if none) whose neighbours alone feed some A
        entries; products with such an entry vanish on atoms without a neighbour of that species and run only on
        the others. The product schedule (:class:`ProductSchedule`) evaluates products of order >= 2 as shared
        pair prefixes times their tails.
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
    live: np.ndarray
    split_species: int
    schedule: ProductSchedule


@dataclass(frozen=True)
class ProductSchedule:
    """The product basis as the kernel's pass 2 runs it: products of order >= 2 grouped by a shared pair of
    factors (prefix), E = sum_groups A[i0] A[i1] sum_t c_t tail_t, with dE/dA through the same graph.

    prefixes (n_groups, 4): (i0, i1, first, stop), the group's tails being tails[first:stop]; tails (n, 3):
    (product, i2, i3), tail = A[i2] A[i3] (order 4), A[i2] (order 3, i3 = -1) or 1 (order 2, i2 = i3 = -1);
    singles (n_1, 2): (product, i0) of order 1. The first parts[0] groups and parts[1] singles need no
    split-species entry and run on every atom; the rest only on atoms with a split-species neighbour.
    """

    prefixes: np.ndarray
    tails: np.ndarray
    singles: np.ndarray
    parts: np.ndarray


def _shared_prefixes(products: np.ndarray, orders: np.ndarray, chosen: np.ndarray) -> tuple[list, list]:
    """Greedy grouping of the products ``chosen`` (order >= 2) by the pair of factors most of them share:
    (prefixes, tails) rows as in :class:`ProductSchedule`, tails indexed from 0."""
    from collections import Counter, defaultdict

    factors = {t: list(products[t, : orders[t]]) for t in chosen}

    def pairs(t):
        f = factors[t]
        return {tuple(sorted((f[a], f[b]))) for a in range(len(f)) for b in range(a + 1, len(f))}

    count, holders = Counter(), defaultdict(set)
    for t in chosen:
        for pair in pairs(t):
            count[pair] += 1
            holders[pair].add(t)
    left, prefixes, tails = set(chosen), [], []
    while left:
        (i0, i1), _ = count.most_common(1)[0]
        first = len(tails)
        for t in sorted(holders[(i0, i1)] & left):
            rest = list(factors[t])
            rest.remove(i0)
            rest.remove(i1)
            tails.append((t, *(rest + [-1, -1])[:2]))
            left.discard(t)
            for pair in pairs(t):
                count[pair] -= 1
        prefixes.append((i0, i1, first, len(tails)))
    return prefixes, tails


def product_schedule(products: np.ndarray, orders: np.ndarray, needs_split: np.ndarray) -> ProductSchedule:
    """The :class:`ProductSchedule` of a product basis; needs_split (n_A,): A entries fed by split-species neighbours only."""
    split = np.array([needs_split[products[t, : orders[t]]].any() for t in range(len(orders))], bool)
    prefixes, tails, singles, parts = [], [], [], []
    for part in (~split, split):
        p, t = _shared_prefixes(products, orders, np.flatnonzero(part & (orders > 1)))
        prefixes += [(i0, i1, first + len(tails), stop + len(tails)) for i0, i1, first, stop in p]
        tails += t
        singles += [(t, products[t, 0]) for t in np.flatnonzero(part & (orders == 1))]
        parts.append((len(prefixes), len(singles)))
    as_rows = lambda rows, width: np.array(rows, np.int64).reshape(-1, width)
    return ProductSchedule(as_rows(prefixes, 4), as_rows(tails, 3), as_rows(singles, 2), np.array(parts[0], np.int64))


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


def _live_columns(table: np.ndarray, places: list[tuple[int, int]], n_rnl: int) -> tuple[np.ndarray, np.ndarray]:
    """Each species pair's table cut to its live columns (not identically zero), in the order of ``table``, padded
    with zero columns to the most any pair has, then the pair columns (all pairs keep them), and where the
    kernel finds them: table (NZ * NZ, n_intervals, degree + 1, n_live + n_pair) and live (NZ * NZ, n_blocks,
    n_runs, 3), runs (first, stop, shift) of live columns holding consecutive places of one l block, A index =
    a0 + m n_l + column - shift (empty runs pad). places[c] = (l block, place n in the block) of many-body column c."""
    alive = np.abs(table[..., :n_rnl]).max(axis=(1, 2)) > 0.0
    width = alive.sum(axis=1).max()
    n_blocks = max(blk for blk, _ in places) + 1
    cut = np.zeros((*table.shape[:3], width + table.shape[3] - n_rnl))
    runs = [[[] for _ in range(n_blocks)] for _ in alive]
    for pair, on in enumerate(alive):
        columns = np.flatnonzero(on)
        cut[pair, ..., : len(columns)] = table[pair][..., columns]
        for w, c in enumerate(columns):
            blk, n = places[c]
            run = runs[pair][blk]
            if run and run[-1][1] == w and places[columns[w - 1]] == (blk, n - 1):
                run[-1][1] += 1
            else:
                run.append([w, w + 1, w - n])
    cut[..., width:] = table[..., n_rnl:]
    live = np.zeros((len(alive), n_blocks, max(len(r) for pair in runs for r in pair), 3), np.int64)
    for pair, blocks in enumerate(runs):
        for blk, run in enumerate(blocks):
            live[pair, blk, : len(run)] = run
    return cut, live


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
    n_pair = int(np.asarray(eval_model.Wpair).shape[0])
    n_rnl = table.shape[-1] - n_pair
    alive = np.abs(table).max(axis=(1, 2)) > 0.0  # (NZ * NZ, n_cols): columns not identically zero per pair
    owners = {c: tuple(~alive[:, c]) for c in range(n_rnl)}
    blocks, position, order = [], {}, []
    for l in range(l_max + 1):
        radials = sorted(np.unique(a_r[a_l == l]), key=lambda c: (owners[c], c))
        if len(radials) == 0:
            continue
        a0 = sum(n * (2 * ll + 1) for ll, n, _ in blocks)
        for n, c in enumerate(radials):
            for m in range(2 * l + 1):
                position[(c, l * l + m)] = a0 + m * len(radials) + n
            order.append((owners[c], len(blocks), n, c))
        blocks.append((l, len(radials), a0))
    order.sort()  # table columns by owner, then l block, then place in the block: an owner's columns are one run
    columns = [c for *_, c in order]
    alive = alive[:, columns]
    table, live = _live_columns(table[..., columns + list(range(n_rnl, table.shape[-1]))], [(b, n) for _, b, n, _ in order],
                                len(columns))
    split_species = elements.index(1) if 1 in elements else -1
    fed = alive.reshape(nz, nz, -1)[:, [z for z in range(nz) if z != split_species]].any(axis=(0, 1))
    column = {(blk, n): c for c, (_, blk, n, _) in enumerate(order)}
    column_of_a = [column[blk, n] for blk, (l, n_l, _) in enumerate(blocks) for _ in range(2 * l + 1) for n in range(n_l)]
    needs_split = ~fed[column_of_a] if split_species >= 0 else np.zeros(len(column_of_a), bool)
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
        blocks=np.array(blocks, np.int64).reshape(-1, 3), products=products, orders=orders,
        readout=np.ascontiguousarray(np.asarray(eval_model.ctilde, np.float64)),
        e0=np.asarray(e0, np.float64), elements=tuple(int(z) for z in elements),
        live=live, split_species=split_species, schedule=product_schedule(products, orders, needs_split),
    )


@dataclass
class _Packed:
    """What the kernel reads of a frame's batch: species index per atom, atoms sorted by species, where each
    species starts in that order, the isolated-atom energy of a structure (eV), and the half lists of all
    structures concatenated (pairs of structure b at offsets[b]:offsets[b + 1]; shift (P, 3) Å)."""

    species: np.ndarray
    by_species: np.ndarray
    species_start: np.ndarray
    e0: float
    offsets: np.ndarray = None
    first: np.ndarray = None
    second: np.ndarray = None
    shift: np.ndarray = None

    def pack(self, lists: FrameLists) -> None:
        self.offsets, self.first, self.second, s = lists.concatenated()
        self.shift = np.ascontiguousarray(s @ lists.frame.cell)


class ACEModel(SelectsLists):
    """A linear ACE potential (:class:`LinearACETables`) evaluated by the compiled kernel on batches sharing one :class:`Frame`.

    Float64 throughout. skin: Verlet skin of the cached half lists (:mod:`pyscatter.models.neighbours`), Å.
    members: the readouts (K, n_AA, NZ) and pair readouts (K, n_pair, NZ) of a committee file's members, which
    :meth:`committee_energies_forces` evaluates together; None for a single model.
    """

    def __init__(self, tables: LinearACETables, *, name: str, identity: str, skin: float,
                 members: tuple[np.ndarray, np.ndarray] | None = None):
        self.tables = tables
        self.members = members
        self.species = frozenset(tables.elements)
        self._species_index = {z: k for k, z in enumerate(tables.elements)}
        self.cutoff = tables.cutoff
        self.name = name
        self.identity = identity
        self.dtype = torch.float64
        self.skin = float(skin)
        self.default_batch_size = 16
        self.neighbours = NeighbourCache(self.cutoff, self.skin, full_list=False, ordered=False)  # vesin's own order

    def __call__(self, frame: Frame, positions: torch.Tensor, compute_forces: bool = True) -> ModelOutput:
        """Energies (B,) in eV and, if requested, forces (B, N, 3) in eV/Å, both float64; NaN for a structure
        with non-finite positions or two atoms at one place."""
        t = self.tables
        out = self._evaluate(frame, positions, t.readout[None], t.w_pair[None], compute_forces)
        return ModelOutput(out.energies[:, 0], out.forces[:, 0] if compute_forces else None)

    def committee_energies_forces(self, frame: Frame, positions: torch.Tensor, compute_forces: bool = True) -> ModelOutput:
        """Every committee member's energies (B, K) in eV and forces (B, K, N, 3) in eV/Å from one basis
        evaluation per structure (float64; NaN as in ``__call__``). Raises :class:`ModelError` for a model
        loaded from a file without members (:func:`pyscatter.models.committee.read_members`)."""
        if self.members is None:
            raise ModelError(f"{self.name} is not an ACE committee (its file holds no committee members)")
        return self._evaluate(frame, positions, *self.members, compute_forces)

    def _evaluate(self, frame: Frame, positions: torch.Tensor, readout: np.ndarray, w_pair: np.ndarray,
                  compute_forces: bool) -> ModelOutput:
        """Energies (B, K) and forces (B, K, N, 3) of the K readouts ``readout`` (K, n_AA, NZ), ``w_pair`` (K, n_pair, NZ)."""
        x = positions_array(frame, positions)
        lists = self.neighbours.refresh(frame, x)
        p = self._packed(lists)
        t = self.tables
        energies = np.empty((len(x), len(readout)))
        forces = np.empty((len(x), len(readout), *x.shape[1:])) if compute_forces else np.empty((0, 0, 0, 3))
        s = t.schedule
        ace_kernel.evaluate(
            x, p.species, p.by_species, p.species_start, p.offsets, p.first, p.second, p.shift, compute_forces, t.cutoff,
            t.table, t.r_min, 1.0 / t.h, t.live, t.n_rnl, w_pair, t.chain, t.derivatives, t.exponents, t.terms, t.weights,
            t.l_max, t.blocks, t.split_species, s.prefixes, s.tails, s.singles, s.parts, readout, energies, forces,
        )
        energies += p.e0
        energies[~lists.finite] = np.nan
        if compute_forces:
            forces[~lists.finite] = np.nan
        device = positions.device
        return ModelOutput(torch.from_numpy(energies).to(device), torch.from_numpy(forces).to(device) if compute_forces else None)

    def _packed(self, lists: FrameLists) -> _Packed:
        """The kernel's form of ``lists``, brought up to date."""
        if lists.state is None:
            check_species(self, lists.frame.numbers)
            species = np.array([self._species_index[int(z)] for z in lists.frame.numbers], np.int64)
            by_species = np.argsort(species, kind="stable")
            species_start = np.searchsorted(species[by_species], np.arange(len(self.tables.elements) + 1))
            lists.state = _Packed(species, by_species, species_start.astype(np.int64), float(self.tables.e0[species].sum()))
            lists.state.pack(lists)
        elif len(lists.changed[0]):
            lists.state.pack(lists)
        return lists.state


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _member_readouts(eval_model, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Kernel readouts (K, n_AA, NZ) and pair readouts (K, n_pair, NZ) of the members of committee file ``path``
    (``eval_model``: its folded model with unfolded pair readout)."""
    from ace_jax.eval.model import fold_readout

    with np.load(path, allow_pickle=False) as z:
        wb, wpair = z["committee_WB"], z["committee_Wpair"]
    if wb.shape[1:] != np.shape(eval_model.WB) or wpair.shape[1:] != np.shape(eval_model.Wpair) or len(wb) != len(wpair):
        raise ModelError(f"{path.name}: committee arrays {wb.shape}, {wpair.shape} do not fit the model's readouts")
    readouts = [np.asarray(fold_readout(dataclasses.replace(eval_model, WB=jnp.asarray(w), folded=False)).ctilde) for w in wb]
    return np.ascontiguousarray(np.stack(readouts), np.float64), np.ascontiguousarray(wpair, np.float64)


def load_ace(path: str | os.PathLike, skin: float = DEFAULT_SKIN, kind: str | None = None, member: int | None = None):
    """Load an ace-jax linear ACE ``.npz`` (compiled kernel: :class:`ACEModel`) or an ML-PACE ``.yace`` file
    (ace-jax's JAX evaluation: :class:`~pyscatter.models.pace.PACEModel`), float64, whatever the file's name.

    skin: Verlet skin of the cached neighbour lists, Å. kind: ``"npz"`` or ``"yace"`` (default: read from
    the file, :func:`pyscatter.models.files.file_kind`). Both kinds load without running code from the
    file (``np.load`` without pickles, safe YAML). A committee file (:data:`~pyscatter.models.files.COMMITTEE_ARRAYS`) loads as its
    mean, able to evaluate all members at once (:meth:`ACEModel.committee_energies_forces`); ``member=k`` loads
    member k alone as an ordinary model.
    Raises :class:`ModelError` (one line) for missing or unreadable files, unsupported models and a member
    number that the file does not have.
    """
    from ace_jax.calc.point import ACECalculator
    from ace_jax.eval.model import ACEModel as LinearEvalModel
    from ace_jax.eval.model import fold_readout, lean_keep_basis

    from pyscatter.models.pace import PACEModel

    path = Path(path)
    kind = kind or file_kind(path)
    if kind not in ("npz", "yace"):
        raise ModelError(f"{path} is a {kind} file, not an ACE model")
    if skin < 0:
        raise ModelError(f"skin must be >= 0 Å, got {skin}")
    digest = sha256(path.read_bytes())
    with tempfile.TemporaryDirectory() as directory:
        named = Path(directory) / f"model.{kind}"  # ace-jax tells the kinds apart by suffix
        os.symlink(path.resolve(), named)
        try:
            spline_tol = None if kind == "npz" else PACE_SPLINE_TOL
            calculator = ACECalculator(str(named), dtype="float64", spline_tol=spline_tol, energy_reference="E0")
        except Exception as exc:
            raise ModelError(f"{path.name} is not a readable ACE model: {_first_line(exc)}") from exc
    elements = [int(z) for z in calculator.meta["elements"]]
    e0 = np.asarray(calculator.model.E0, np.float64)
    record = committee_record(path) if kind == "npz" else None
    if member is not None and (record is None or not 0 <= member < record["members"]):
        held = "no committee members" if record is None else f"members 0-{record['members'] - 1}"
        raise ModelError(f"{path.name} has {held}, not member #{member}")
    eval_model = calculator.eval_model
    if record is not None and isinstance(eval_model, LinearEvalModel):
        # members differ in their pair readouts too: keep them out of the pair radials (n_pair pair columns)
        eval_model = lean_keep_basis(fold_readout(calculator.model), spline_tol=None)
    if isinstance(eval_model, LinearEvalModel):
        tables = tabulate(eval_model, e0, elements)
        members = _member_readouts(eval_model, path) if record is not None else None
        name, identity = path.name, f"ace:{digest}:tables={RADIAL_DEGREE}/{tables.h:.6f}"
        if member is not None:
            tables = dataclasses.replace(tables, readout=members[0][member], w_pair=members[1][member])
            members, name, identity = None, f"{name}#{member}", f"{identity}#{member}"
        return ACEModel(tables, name=name, identity=identity, skin=skin, members=members)
    if member is not None:
        raise ModelError(f"{path.name} is not a linear ACE model: it has no committee members")
    return PACEModel(
        calculator.eval_model, elements, e0, float(calculator.cutoff),
        name=path.name, identity=f"ace:{digest}:jax:spline={PACE_SPLINE_TOL}", skin=skin,
    )
