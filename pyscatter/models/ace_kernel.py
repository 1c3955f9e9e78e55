"""Compiled (numba) kernel of a linear ACE potential: site energies and analytic forces.

Inputs are plain arrays (see :class:`pyscatter.models.ace.LinearACETables` for their meaning);
lengths in Å, energies in eV. Each structure of a batch is evaluated on its own from a half
neighbour list (every pair once, both directions used): pass 1 pools the atomic basis
A_i,(l,m,n) = sum_j R_{l,n}(r_ij; z_i, z_j) Y_lm(r_ij) over the pairs inside the cutoff (stored in blocks
of l: for each m the n_l radials of that l, so the inner loops run over contiguous memory), pass 2
evaluates the site energies sum_t c_t(z_i) prod_p A_i,idx[t,p] and their derivatives dE/dA,
vectorised over atoms, pass 3 turns dE/dA into forces pair by pair. The pair j -> i uses
R(r; z_j, z_i) and Y(-r_ij) = (-1)^l Y(r_ij).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np


@nb.njit(cache=True, inline="always", fastmath=True)
def _radial(table, pair, r, r_min, inv_h, out, dout, derivative):
    """Piecewise polynomial radial functions (and d/dr, per Å) of one species pair at r (Å); linear below r_min."""
    n_intervals, degree, ncol = table.shape[1], table.shape[2] - 1, table.shape[3]
    u = (r - r_min) * inv_h
    if u < 0.0:
        for c in range(ncol):
            out[c] = table[pair, 0, 0, c] + u * table[pair, 0, 1, c]
            dout[c] = inv_h * table[pair, 0, 1, c]
        return
    k = min(max(int(u), 0), n_intervals - 1)
    t = u - k
    T = table[pair, k]
    for c in range(ncol):
        out[c] = T[degree, c]
        dout[c] = degree * T[degree, c]
    for q in range(degree - 1, -1, -1):
        for c in range(ncol):
            out[c] = out[c] * t + T[q, c]
        if derivative and q > 0:
            for c in range(ncol):
                dout[c] = dout[c] * t + q * T[q, c]
    if derivative:
        for c in range(ncol):
            dout[c] *= inv_h


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


@nb.njit(cache=True, inline="always", fastmath=True)
def _harmonics_gradient(v, chain, lower, exponents, terms, weights, gY, mono, K, out):
    """out (3,) = d/dv sum_y gY[y] Y_y(v); d(x^a y^b z^c)/dx = a * monomial lower[q, 0], and so on."""
    _monomials(v, chain, mono)
    K[:] = 0.0
    for n in range(terms.shape[0]):
        K[terms[n, 1]] += weights[n] * gY[terms[n, 0]]
    out[:] = 0.0
    for q in range(1, chain.shape[0]):
        for d in range(3):
            out[d] += K[q] * exponents[q, d] * mono[lower[q, d]]


@nb.njit(cache=True, fastmath=True)
def _site_energies(At, species_start, products, orders, readout, energy, dAt):
    """energy (N,) += sum_t readout[t, z] prod_p At[products[t, p]]; dAt (n_A, N) = d energy / dA (orders 1-4).

    Atoms (columns of At) are sorted by species: species z holds columns species_start[z]:species_start[z + 1].
    """
    dAt[:, :] = 0.0
    for t in range(products.shape[0]):
        order = orders[t]
        i0, i1, i2, i3 = products[t, 0], products[t, 1], products[t, 2], products[t, 3]
        for z in range(species_start.shape[0] - 1):
            c = readout[t, z]
            start, stop = species_start[z], species_start[z + 1]
            if order == 1:
                for m in range(start, stop):
                    energy[m] += c * At[i0, m]
                    dAt[i0, m] += c
            elif order == 2:
                for m in range(start, stop):
                    a0, a1 = At[i0, m], At[i1, m]
                    energy[m] += c * a0 * a1
                    dAt[i0, m] += c * a1
                    dAt[i1, m] += c * a0
            elif order == 3:
                for m in range(start, stop):
                    a0, a1, a2 = At[i0, m], At[i1, m], At[i2, m]
                    energy[m] += c * a0 * a1 * a2
                    dAt[i0, m] += c * a1 * a2
                    dAt[i1, m] += c * a0 * a2
                    dAt[i2, m] += c * a0 * a1
            else:
                for m in range(start, stop):
                    a0, a1, a2, a3 = At[i0, m], At[i1, m], At[i2, m], At[i3, m]
                    energy[m] += c * a0 * a1 * a2 * a3
                    dAt[i0, m] += c * a1 * a2 * a3
                    dAt[i1, m] += c * a0 * a2 * a3
                    dAt[i2, m] += c * a0 * a1 * a3
                    dAt[i3, m] += c * a0 * a1 * a2


@nb.njit(cache=True, fastmath=True)
def evaluate(x, species, by_species, species_start, offsets, first, second, shift, compute_forces, cutoff, table, r_min, inv_h, n_rnl,
             w_pair, chain, lower, exponents, terms, weights, l_max, blocks, products, orders, readout,
             energies, forces):
    """Energies (B,) in eV and forces (B, N, 3) in eV/Å of positions x (B, N, 3), Å.

    Pairs of structure b are first/second/shift[offsets[b]:offsets[b + 1]], r_ij = x_j - x_i + shift.
    species (N,): species index of each atom; by_species (N,): atoms sorted by species, species z being
    by_species[species_start[z]:species_start[z + 1]].
    blocks (n_blocks, 4): l, n_l, first radial column, first A index of each l block.
    The other arguments are the fields of :class:`pyscatter.models.ace.LinearACETables` of the same names.
    Energies exclude the isolated-atom energies (added by the caller).
    """
    B, N = x.shape[0], x.shape[1]
    nz, ncol = w_pair.shape[1], table.shape[3]
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
    mono = np.empty(chain.shape[0])
    K = np.empty(chain.shape[0])
    gradient = np.empty(3)
    A = np.empty((N, n_A))
    At = np.empty((n_A, N))
    dAt = np.empty((n_A, N))
    dA = np.empty((N, n_A))
    site = np.empty(N)
    sorted_site = np.empty(N)
    gR1 = np.empty(ncol)
    gR2 = np.empty(ncol)
    gY = np.empty(n_Y)

    cut2 = cutoff * cutoff
    for b in range(B):
        A[:, :] = 0.0
        site[:] = 0.0
        n_in = 0
        for p in range(offsets[b], offsets[b + 1]):
            i, j = first[p], second[p]
            v = vec[n_in]
            for d in range(3):
                v[d] = x[b, j, d] - x[b, i, d] + shift[p, d]
            r2 = v[0] * v[0] + v[1] * v[1] + v[2] * v[2]
            if r2 >= cut2:
                continue
            r = math.sqrt(r2)
            dist[n_in] = r
            inside[n_in] = p
            zi, zj = species[i], species[j]
            R1, R2, Y = R[n_in, 0], R[n_in, 0], Ys[n_in]
            _radial(table, zi * nz + zj, r, r_min, inv_h, R1, dR[n_in, 0], compute_forces)
            if zi != zj:
                R2 = R[n_in, 1]
                _radial(table, zj * nz + zi, r, r_min, inv_h, R2, dR[n_in, 1], compute_forces)
            _harmonics(v, chain, terms, weights, Y, mono)
            for blk in range(blocks.shape[0]):
                l, n_l, r0, a0 = blocks[blk, 0], blocks[blk, 1], blocks[blk, 2], blocks[blk, 3]
                sign = 1.0 - 2.0 * (l % 2)
                for m in range(2 * l + 1):
                    y = Y[l * l + m]
                    ys = sign * y
                    k0 = a0 + m * n_l
                    for n in range(n_l):
                        A[i, k0 + n] += R1[r0 + n] * y
                        A[j, k0 + n] += R2[r0 + n] * ys
            for q in range(n_rnl, ncol):
                site[i] += R1[q] * w_pair[q - n_rnl, zi]
                site[j] += R2[q] * w_pair[q - n_rnl, zj]
            n_in += 1
        for c in range(N):
            m = by_species[c]
            sorted_site[c] = site[m]
            for k in range(n_A):
                At[k, c] = A[m, k]
        _site_energies(At, species_start, products, orders, readout, sorted_site, dAt)
        energies[b] = sorted_site.sum()
        if not compute_forces:
            continue
        for c in range(N):
            m = by_species[c]
            for k in range(n_A):
                dA[m, k] = dAt[k, c]
        for m in range(N):
            for d in range(3):
                forces[b, m, d] = 0.0
        for e in range(n_in):
            p = inside[e]
            i, j = first[p], second[p]
            zi, zj = species[i], species[j]
            R1, R2, dR1, Y = R[e, 0], R[e, 1], dR[e, 0], Ys[e]
            dR2 = dR[e, 1] if zi != zj else dR1
            gR1[:] = 0.0
            gY[:] = 0.0
            if zi != zj:
                gR2[:] = 0.0
            for blk in range(blocks.shape[0]):
                l, n_l, r0, a0 = blocks[blk, 0], blocks[blk, 1], blocks[blk, 2], blocks[blk, 3]
                sign = 1.0 - 2.0 * (l % 2)
                for m in range(2 * l + 1):
                    y = Y[l * l + m]
                    k0 = a0 + m * n_l
                    acc = 0.0
                    if zi == zj:
                        for n in range(n_l):
                            g = dA[i, k0 + n] + sign * dA[j, k0 + n]
                            gR1[r0 + n] += g * y
                            acc += g * R1[r0 + n]
                    else:
                        for n in range(n_l):
                            g, h = dA[i, k0 + n], sign * dA[j, k0 + n]
                            gR1[r0 + n] += g * y
                            gR2[r0 + n] += h * y
                            acc += g * R1[r0 + n] + h * R2[r0 + n]
                    gY[l * l + m] += acc
            dedr = 0.0
            for c in range(n_rnl):
                dedr += gR1[c] * dR1[c]
            if zi != zj:
                for c in range(n_rnl):
                    dedr += gR2[c] * dR2[c]
            for q in range(n_rnl, ncol):
                dedr += dR1[q] * w_pair[q - n_rnl, zi] + dR2[q] * w_pair[q - n_rnl, zj]
            v = vec[e]
            _harmonics_gradient(v, chain, lower, exponents, terms, weights, gY, mono, K, gradient)
            for d in range(3):
                g = dedr * v[d] / dist[e] + gradient[d]
                forces[b, i, d] += g
                forces[b, j, d] -= g
