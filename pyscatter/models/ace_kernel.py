"""Compiled (numba) kernel of a linear ACE potential: site energies and analytic forces.

Inputs are plain arrays (see :class:`pyscatter.models.ace.LinearACETables` for their meaning);
lengths in Å, energies in eV. Each structure of a batch is evaluated on its own from a half
neighbour list (every pair once, both directions used): pass 1 pools the atomic basis
A_i,(l,m,n) = sum_j R_{l,n}(r_ij; z_i, z_j) Y_lm(r_ij) over the pairs inside the cutoff (stored in blocks
of l: for each m the n_l radials of that l; the pair loops of passes 1 and 3 run over a block's live radial
columns outside and its 2l + 1 harmonics inside, short independent sums instead of long dependent ones), pass 2
evaluates the site energies sum_t c_t(z_i) prod_p A_i,idx[t,p] and their derivatives dE/dA,
vectorised over atoms, pass 3 turns dE/dA into forces pair by pair. The pair j -> i uses
R(r; z_j, z_i) and Y(-r_ij) = (-1)^l Y(r_ij). Several readouts of one basis (the members of a committee)
share passes 1 and the pair geometry of pass 3: their energies are dot products with the summed
product basis, their forces one pass 2 and one pass 3 accumulation each.

The radials of all pairs of a structure are evaluated in a function of their own with the degree-7
polynomial written out per column, which the compiler vectorises (measurements: ``docs/models.md``).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np


@nb.njit(cache=True, inline="always", fastmath=True)
def _radial(table, pair, r, r_min, inv_h, out, dout, derivative):
    """Degree-7 piecewise polynomial radial functions (and d/dr, per Å) of one species pair at r (Å); linear below r_min.

    Written out for degree 7 (the tables' degree): one statement per column, which the compiler vectorises.
    """
    u = (r - r_min) * inv_h
    if u < 0.0:
        for c in range(out.shape[0]):
            out[c] = table[pair, 0, 0, c] + u * table[pair, 0, 1, c]
            dout[c] = inv_h * table[pair, 0, 1, c]
        return
    k = min(int(u), table.shape[1] - 1)
    t = u - k
    T = table[pair, k]
    for c in range(out.shape[0]):
        out[c] = T[0, c] + t * (T[1, c] + t * (T[2, c] + t * (T[3, c] + t * (T[4, c] + t * (T[5, c] + t * (T[6, c] + t * T[7, c]))))))
    if derivative:
        for c in range(out.shape[0]):
            dout[c] = inv_h * (T[1, c] + t * (2.0 * T[2, c] + t * (3.0 * T[3, c] + t * (4.0 * T[4, c] + t * (
                5.0 * T[5, c] + t * (6.0 * T[6, c] + t * 7.0 * T[7, c]))))))


@nb.njit(cache=True, fastmath=True)
def _radials(table, species, first, second, inside, dist, r_min, inv_h, R, dR, derivative):
    """R[e, 0] (dR[e, 0]) = radials of pair inside[e] at dist[e] for (z_i, z_j), R[e, 1] for (z_j, z_i) if the
    species differ. A function of its own: the compiler vectorises its column loops here, not inlined."""
    nz = int(math.sqrt(table.shape[0]) + 0.5)
    for e in range(inside.shape[0]):
        zi, zj = species[first[inside[e]]], species[second[inside[e]]]
        _radial(table, zi * nz + zj, dist[e], r_min, inv_h, R[e, 0], dR[e, 0], derivative)
        if zi != zj:
            _radial(table, zj * nz + zi, dist[e], r_min, inv_h, R[e, 1], dR[e, 1], derivative)


@nb.njit(cache=True, inline="always", fastmath=True)
def _monomials(v, chain, mono):
    """mono[q] = x^a y^b z^c of v (Å), built as mono[chain[q, 0]] * v[chain[q, 1]] (mono[0] = 1)."""
    mono[0] = 1.0
    for q in range(1, chain.shape[0]):
        mono[q] = mono[chain[q, 0]] * v[chain[q, 1]]


@nb.njit(cache=True, inline="always", fastmath=True)
def _harmonics(v, chain, terms, weights, Y, mono):
    """Real solid harmonics Y (n_Y,) of the vector v (Å): Y[terms[n, 0]] += weights[n] * monomial terms[n, 1]."""
    _monomials(v, chain, mono)
    Y[:] = 0.0
    for n in range(terms.shape[0]):
        Y[terms[n, 0]] += weights[n] * mono[terms[n, 1]]


@nb.njit(cache=True)
def _gradient_terms(derivatives, exponents, terms, weights):
    """The harmonics' gradient as sums: d Y_y / dv_d = sum of coefficient * monomial ``lower`` over the rows
    (y, lower) of d; rows (n, 2), coefficients (n,), rows of d at starts[d]:starts[d + 1]."""
    n = 0
    for t in range(terms.shape[0]):
        for k in range(derivatives.shape[0]):
            n += derivatives[k, 0] == terms[t, 1]
    rows = np.empty((n, 2), np.uint64)  # unsigned: indexing without the negative-index check
    coefficients = np.empty(n)
    starts = np.zeros(4, np.int64)
    n = 0
    for d in range(3):
        for t in range(terms.shape[0]):
            for k in range(derivatives.shape[0]):
                if derivatives[k, 0] == terms[t, 1] and derivatives[k, 1] == d:
                    rows[n, 0], rows[n, 1] = terms[t, 0], derivatives[k, 2]
                    coefficients[n] = weights[t] * exponents[terms[t, 1], d]
                    n += 1
        starts[d + 1] = n
    return rows, coefficients, starts


@nb.njit(cache=True, inline="always", fastmath=True)
def _harmonics_gradient(rows, coefficients, starts, gY, mono, out):
    """out (3,) = d/dv sum_y gY[y] Y_y(v) from the monomials mono of v (rows, coefficients, starts: :func:`_gradient_terms`)."""
    for d in range(3):
        even = odd = 0.0  # two sums: half the chain of dependent additions
        n = starts[d]
        while n + 1 < starts[d + 1]:
            even += coefficients[n] * gY[rows[n, 0]] * mono[rows[n, 1]]
            odd += coefficients[n + 1] * gY[rows[n + 1, 0]] * mono[rows[n + 1, 1]]
            n += 2
        if n < starts[d + 1]:
            even += coefficients[n] * gY[rows[n, 0]] * mono[rows[n, 1]]
        out[d] = even + odd


@nb.njit(cache=True, fastmath=True)
def _site_energies(At, species_start, n_with, prefixes, tails, singles, parts, readout, energy, dAt, p, s):
    """energy (N,) += site energies of the product basis (see :class:`pyscatter.models.ace.ProductSchedule`);
    dAt (n_A, N) = d energy / dA. Per group: p = A[i0] A[i1], s = sum_t c_t tail_t, E += p s,
    dE/dA[i0] += A[i1] s, dE/dA[i1] += A[i0] s, and each tail's factors get c_t p times the other factor.

    Atoms (columns of At) are sorted by species, those with a split-species neighbour first: species z holds
    columns species_start[z]:species_start[z + 1], the first n_with[z] of them with one (or padded, see
    :func:`_atom_order`). p, s (N,): work space. The atom ranges are unsigned: numba then indexes without its
    negative-index check, and the compiler vectorises the loops over atoms (``docs/models.md``).
    """
    dAt[:, :] = 0.0
    for z in range(species_start.shape[0] - 1):
        start, every = np.uint64(species_start[z]), np.uint64(species_start[z + 1])
        with_split = start + np.uint64(n_with[z])
        for q in range(singles.shape[0]):
            t, i0 = singles[q, 0], singles[q, 1]
            c = readout[t, z]
            for m in range(start, every if q < parts[1] else with_split):
                energy[m] += c * At[i0, m]
                dAt[i0, m] += c
        for g in range(prefixes.shape[0]):
            stop = every if g < parts[0] else with_split
            if stop == start:
                continue
            i0, i1 = prefixes[g, 0], prefixes[g, 1]
            for m in range(start, stop):
                p[m] = At[i0, m] * At[i1, m]
                s[m] = 0.0
            for q in range(prefixes[g, 2], prefixes[g, 3]):
                t, i2, i3 = tails[q, 0], tails[q, 1], tails[q, 2]
                c = readout[t, z]
                if i2 < 0:
                    for m in range(start, stop):
                        s[m] += c
                elif i3 < 0:
                    for m in range(start, stop):
                        s[m] += c * At[i2, m]
                        dAt[i2, m] += c * p[m]
                else:
                    for m in range(start, stop):
                        a2, a3 = At[i2, m], At[i3, m]
                        s[m] += c * a2 * a3
                        dAt[i2, m] += c * p[m] * a3
                        dAt[i3, m] += c * p[m] * a2
            for m in range(start, stop):
                energy[m] += p[m] * s[m]
                dAt[i0, m] += At[i1, m] * s[m]
                dAt[i1, m] += At[i0, m] * s[m]


@nb.njit(cache=True, fastmath=True)
def _product_features(At, species_start, n_with, prefixes, tails, singles, parts, features, p):
    """features (n_AA, NZ) = sum over the atoms of each species of each product (the structure's product basis,
    which every readout turns into its energy); atoms sorted as in :func:`_site_energies`."""
    features[:, :] = 0.0
    for z in range(species_start.shape[0] - 1):
        start, every = np.uint64(species_start[z]), np.uint64(species_start[z + 1])
        with_split = start + np.uint64(n_with[z])
        for q in range(singles.shape[0]):
            acc = 0.0
            for m in range(start, every if q < parts[1] else with_split):
                acc += At[singles[q, 1], m]
            features[singles[q, 0], z] = acc
        for g in range(prefixes.shape[0]):
            stop = every if g < parts[0] else with_split
            i0, i1 = prefixes[g, 0], prefixes[g, 1]
            for m in range(start, stop):
                p[m] = At[i0, m] * At[i1, m]
            for q in range(prefixes[g, 2], prefixes[g, 3]):
                t, i2, i3 = tails[q, 0], tails[q, 1], tails[q, 2]
                acc = 0.0
                for m in range(start, stop):
                    value = p[m]
                    if i2 >= 0:
                        value *= At[i2, m]
                    if i3 >= 0:
                        value *= At[i3, m]
                    acc += value
                features[t, z] = acc


@nb.njit(cache=True, fastmath=True)
def _pairs(x, b, offsets, first, second, shift, cutoff, inside, vec, dist):
    """Pass 0: the pairs of structure b inside the cutoff: inside[:n] (pair numbers), vec[:n] = r_ij (Å),
    dist[:n] = |r_ij| (Å); returns n, or -1 for two atoms at one place."""
    cut2 = cutoff * cutoff
    n_in = 0
    for p in range(offsets[b], offsets[b + 1]):
        v = vec[n_in]
        for d in range(3):
            v[d] = x[b, second[p], d] - x[b, first[p], d] + shift[p, d]
        r2 = v[0] * v[0] + v[1] * v[1] + v[2] * v[2]
        if r2 == 0.0:
            return -1
        if r2 < cut2:
            dist[n_in] = math.sqrt(r2)
            inside[n_in] = p
            n_in += 1
    return n_in


@nb.njit(cache=True, fastmath=True)
def _radials_and_harmonics(n_in, inside, vec, dist, species, first, second, table, r_min, inv_h, chain, terms, weights,
                           R, dR, Ys, monos, derivative):
    """Pass 1a: radials R, dR (see :func:`_radials`) and harmonics Ys (with their monomials) of the pairs inside."""
    _radials(table, species, first, second, inside[:n_in], dist, r_min, inv_h, R, dR, derivative)
    for e in range(n_in):
        _harmonics(vec[e], chain, terms, weights, Ys[e], monos[e])


@nb.njit(cache=True, fastmath=True)
def _atomic_basis(n_in, inside, species, first, second, R, Ys, live, n_rnl, blocks, split_species, A, pair_features,
                  has_split):
    """Pass 1b: A (N, n_A) = the atomic basis over live columns, pair_features (n_pair, NZ) = pair radials summed
    per centre species, has_split (N,) = whether each atom has a neighbour of split_species."""
    nz = pair_features.shape[1]
    A[:, :] = 0.0
    pair_features[:, :] = 0.0
    has_split[:] = False
    for e in range(n_in):
        i, j = first[inside[e]], second[inside[e]]
        zi, zj = species[i], species[j]
        R1, R2, Y = R[e, 0], R[e, 1] if zi != zj else R[e, 0], Ys[e]
        live1, live2 = live[zi * nz + zj], live[zj * nz + zi]
        has_split[i] |= zj == split_species
        has_split[j] |= zi == split_species
        Ai, Aj = A[i], A[j]
        for blk in range(blocks.shape[0]):
            l, n_l, a0 = blocks[blk, 0], blocks[blk, 1], blocks[blk, 2]
            sign = 1.0 - 2.0 * (l % 2)
            for run in range(live1.shape[1]):
                lo, hi, k0 = live1[blk, run, 0], live1[blk, run, 1], a0 - live1[blk, run, 2]
                for c in range(lo, hi):
                    r = R1[c]
                    rs = sign * r if zi == zj else 0.0  # unlike species: j's entries come from live2 below
                    for m in range(2 * l + 1):
                        k = k0 + m * n_l + c
                        y = Y[l * l + m]
                        Ai[k] += r * y
                        Aj[k] += rs * y
            if zi != zj:
                for run in range(live2.shape[1]):
                    lo, hi, k0 = live2[blk, run, 0], live2[blk, run, 1], a0 - live2[blk, run, 2]
                    for c in range(lo, hi):
                        rs = sign * R2[c]
                        for m in range(2 * l + 1):
                            k = k0 + m * n_l + c
                            Aj[k] += rs * Y[l * l + m]
        for q in range(n_rnl, R.shape[2]):
            pair_features[q - n_rnl, zi] += R1[q]
            pair_features[q - n_rnl, zj] += R2[q]


@nb.njit(cache=True, fastmath=True)
def _pair_energy(w_pair, pair_features):
    """Pair-potential energy (eV) of one readout: sum of w_pair (n_pair, NZ) * pair_features."""
    energy = 0.0
    for q in range(pair_features.shape[0]):
        for z in range(pair_features.shape[1]):
            energy += w_pair[q, z] * pair_features[q, z]
    return energy


@nb.njit(cache=True, inline="always", fastmath=True)
def _block_gradient(dA1, dA2, w1, w2, R, dR, Y, l, n_l, k0, lo, hi, gY):
    """One l block of one pair direction in pass 3, with g = w1 dA1 + w2 dA2 (dE/dA of its A entries, eV):
    gY[l^2 + m] += sum_c g[m, c] R[c]; returns sum_c dR[c] sum_m Y[l^2 + m] g[m, c] (eV/Å). The column loop is
    outside, so the sums over m are short and independent (no long chain of dependent additions)."""
    slope = 0.0
    for c in range(lo, hi):
        r = R[c]
        w = 0.0
        for m in range(2 * l + 1):
            k = k0 + m * n_l + c
            g = w1 * dA1[k] + w2 * dA2[k]
            gY[l * l + m] += g * r
            w += Y[l * l + m] * g
        slope += w * dR[c]
    return slope


@nb.njit(cache=True, fastmath=True)
def _forces(n_in, inside, vec, dist, species, first, second, R, dR, monos, dA, w_pair, live, n_rnl, blocks,
            gradient_rows, gradient_coefficients, gradient_starts, Ys, gY, gradient, forces):
    """Pass 3: forces (N, 3) eV/Å of one readout from dA (N, n_A) = dE/dA, pair by pair, over live columns."""
    nz = w_pair.shape[1]
    forces[:, :] = 0.0
    for e in range(n_in):
        p = inside[e]
        i, j = first[p], second[p]
        zi, zj = species[i], species[j]
        R1, R2, dR1, Y = R[e, 0], R[e, 1], dR[e, 0], Ys[e]
        dR2 = dR[e, 1] if zi != zj else dR1
        live1, live2 = live[zi * nz + zj], live[zj * nz + zi]
        dAi, dAj = dA[i], dA[j]
        v = vec[e]
        gY[:] = 0.0
        dedr = 0.0
        for blk in range(blocks.shape[0]):
            l, n_l, a0 = blocks[blk, 0], blocks[blk, 1], blocks[blk, 2]
            sign = 1.0 - 2.0 * (l % 2)
            for run in range(live1.shape[1]):
                lo, hi, k0 = live1[blk, run, 0], live1[blk, run, 1], a0 - live1[blk, run, 2]
                dedr += _block_gradient(dAi, dAj, 1.0, sign if zi == zj else 0.0, R1, dR1, Y, l, n_l, k0, lo, hi, gY)
            if zi != zj:
                for run in range(live2.shape[1]):
                    lo, hi, k0 = live2[blk, run, 0], live2[blk, run, 1], a0 - live2[blk, run, 2]
                    dedr += _block_gradient(dAj, dAj, sign, 0.0, R2, dR2, Y, l, n_l, k0, lo, hi, gY)
        for q in range(n_rnl, R.shape[2]):
            dedr += dR1[q] * w_pair[q - n_rnl, zi] + dR2[q] * w_pair[q - n_rnl, zj]
        _harmonics_gradient(gradient_rows, gradient_coefficients, gradient_starts, gY, monos[e], gradient)
        for d in range(3):
            g = dedr * v[d] / dist[e] + gradient[d]
            forces[i, d] += g
            forces[j, d] -= g


@nb.njit(cache=True)
def _atom_order(by_species, species_start, has_split, order, n_with):
    """order (N,): atoms by species, within a species those with a split-species neighbour first; n_with[z]: how many
    of species z pass 2 runs its split products on: those atoms, rounded up to a multiple of 8 (if that adds at most
    4 atoms without one) because whole blocks vectorise best. Exact: on an atom without a split-species neighbour the
    split entries of A are exactly zero, so each such product adds exactly zero to its energy and to dE/dA of the
    entries its forces read (the split entries' dE/dA are read only for pairs with a split-species atom)."""
    for z in range(species_start.shape[0] - 1):
        c = species_start[z]
        for first_pass in (True, False):
            for k in range(species_start[z], species_start[z + 1]):
                if has_split[by_species[k]] == first_pass:
                    order[c] = by_species[k]
                    c += 1
            if first_pass:
                n_with[z] = c - species_start[z]
        rest = n_with[z] % 8
        if rest >= 4:
            n_with[z] = min(n_with[z] + 8 - rest, species_start[z + 1] - species_start[z])


@nb.njit(cache=True)
def _sorted_columns(A, order, At):
    """At (n_A, N) = A (N, n_A) transposed with the atoms in the kernel's order."""
    for c in range(A.shape[0]):
        At[:, c] = A[order[c]]


@nb.njit(cache=True)
def _unsorted_rows(dAt, order, dA):
    """dA (N, n_A) = dAt (n_A, N) transposed back to atom order."""
    for c in range(dA.shape[0]):
        dA[order[c]] = dAt[:, c]


@nb.njit(cache=True, fastmath=True)
def evaluate(x, species, by_species, species_start, offsets, first, second, shift, compute_forces, cutoff, table, r_min,
             inv_h, live, n_rnl, w_pair, chain, derivatives, exponents, terms, weights, l_max, blocks, split_species,
             prefixes, tails, singles, parts, readout, energies, forces):
    """Energies (B, K) in eV and forces (B, K, N, 3) in eV/Å of positions x (B, N, 3), Å, for K readouts
    (committee members) sharing one basis: readout (K, n_AA, NZ), w_pair (K, n_pair, NZ).

    Pairs of structure b are first/second/shift[offsets[b]:offsets[b + 1]], r_ij = x_j - x_i + shift.
    species (N,): species index of each atom; by_species (N,): atoms sorted by species, species z being
    by_species[species_start[z]:species_start[z + 1]].
    blocks (n_blocks, 3): l, n_l, first A index of each l block.
    The other arguments are the fields of :class:`pyscatter.models.ace.LinearACETables` (and of its
    :class:`~pyscatter.models.ace.ProductSchedule`) of the same names.
    The basis (radials, harmonics, A) is evaluated once per structure; energies alone are readouts of the
    summed product basis, forces take one backward pass (dE/dA, then pair by pair) per member.
    Energies exclude the isolated-atom energies (added by the caller); a structure with two atoms at one
    place gets NaN energy and forces.
    """
    B, N = x.shape[0], x.shape[1]
    n_members = readout.shape[0]
    nz = species_start.shape[0] - 1
    ncol = table.shape[3]
    n_A = 0
    for blk in range(blocks.shape[0]):
        n_A += blocks[blk, 1] * (2 * blocks[blk, 0] + 1)
    n_Y = (l_max + 1) * (l_max + 1)
    most = 0
    for b in range(B):
        most = max(most, offsets[b + 1] - offsets[b])
    inside = np.empty(most, np.int64)
    vec = np.empty((most, 3))
    dist = np.empty(most)
    R = np.empty((most, 2, ncol))
    dR = np.empty((most, 2, ncol))
    Ys = np.empty((most, n_Y))
    monos = np.empty((most, chain.shape[0]))
    gradient = np.empty(3)
    gradient_rows, gradient_coefficients, gradient_starts = _gradient_terms(derivatives, exponents, terms, weights)
    A = np.empty((N, n_A))
    At = np.empty((n_A, N))
    dAt = np.empty((n_A, N))
    dA = np.empty((N, n_A))
    pair_features = np.empty((ncol - n_rnl, nz))
    features = np.empty((readout.shape[1], nz))
    sorted_site = np.empty(N)
    work_p, work_s = np.empty(N), np.empty(N)
    gY = np.empty(n_Y)
    has_split = np.empty(N, np.bool_)
    order = np.empty(N, np.int64)
    n_with = np.empty(nz, np.int64)

    for b in range(B):
        n_in = _pairs(x, b, offsets, first, second, shift, cutoff, inside, vec, dist)
        if n_in < 0:  # two atoms at one place: no energy, no forces
            energies[b, :] = np.nan
            if compute_forces:
                forces[b, :, :, :] = np.nan
            continue
        _radials_and_harmonics(n_in, inside, vec, dist, species, first, second, table, r_min, inv_h, chain, terms, weights,
                               R, dR, Ys, monos, compute_forces)
        _atomic_basis(n_in, inside, species, first, second, R, Ys, live, n_rnl, blocks, split_species, A, pair_features,
                      has_split)
        _atom_order(by_species, species_start, has_split, order, n_with)
        _sorted_columns(A, order, At)
        if not compute_forces:
            _product_features(At, species_start, n_with, prefixes, tails, singles, parts, features, work_p)
            for member in range(n_members):
                energy = _pair_energy(w_pair[member], pair_features)
                for t in range(features.shape[0]):
                    for z in range(nz):
                        energy += readout[member, t, z] * features[t, z]
                energies[b, member] = energy
            continue
        for member in range(n_members):
            sorted_site[:] = 0.0
            _site_energies(At, species_start, n_with, prefixes, tails, singles, parts, readout[member], sorted_site, dAt,
                           work_p, work_s)
            energies[b, member] = _pair_energy(w_pair[member], pair_features) + sorted_site.sum()
            _unsorted_rows(dAt, order, dA)
            _forces(n_in, inside, vec, dist, species, first, second, R, dR, monos, dA, w_pair[member], live, n_rnl, blocks,
                    gradient_rows, gradient_coefficients, gradient_starts, Ys, gY, gradient, forces[b, member])
