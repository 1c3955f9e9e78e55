"""Cu slabs for the scattering simulations and the lattice constant they are built with.

Slabs follow Radova et al. (2025) / Stark et al. (2023): 3x3 surface cells, 6 layers, the
bottom two layers fixed, the bottom layer at z = 0 and 40 Å of vacuum above the ideal top
layer (the cell heights of the authors' ``cu{111,100,110,211}_0K.in``). Lengths are in Å.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms
from ase.build import bulk, fcc100, fcc110, fcc111, fcc211
from ase.constraints import FixAtoms
from scipy.integrate import quad
from scipy.optimize import minimize_scalar

from pyscatter.conditions import FACETS
from pyscatter.models.base import ForceModel, Frame


N_LAYERS = 6
N_FIXED_LAYERS = 2
SURFACE_REPEATS = (3, 3)
VACUUM_ABOVE_TOP_LAYER = 40.0
"""Å; ≥ 15 Å above a molecule started 7 Å above the top layer, and the authors' value."""
LAYER_GAP = 0.2
"""Å; atoms whose heights differ by less than this belong to one layer (z-clustering)."""

_BUILDERS = {"111": fcc111, "100": fcc100, "110": fcc110, "211": fcc211}


@dataclass(frozen=True)
class Slab:
    """An ideal (bulk-terminated) Cu slab.

    atoms: Cu only, pbc (True, True, False), FixAtoms on the fixed atoms; atoms are ordered by
        height, bottom first, so the fixed atoms come first.
    fixed: bool mask (N,), the bottom two of the six layers.
    top_layer: indices of the atoms of the outermost layer, found by z-clustering (atoms
        within ``LAYER_GAP`` of each other in height). On the flat facets this is the 3x3
        surface layer; on (211), whose (211) planes are only 0.75 Å apart, it is the row of
        step-edge atoms (3 atoms). The molecule's height is measured from their mean z.
    surface: facet, one of ``FACETS``.
    lattice_constant: fcc lattice constant the slab was built with, Å.
    """

    atoms: Atoms
    fixed: np.ndarray
    top_layer: np.ndarray
    surface: str
    lattice_constant: float

    @property
    def top_layer_height(self) -> float:
        """Mean z of the top-layer atoms, Å."""
        return float(self.atoms.positions[self.top_layer, 2].mean())


def layer_index(z: np.ndarray, gap: float = LAYER_GAP) -> np.ndarray:
    """Layer number of each height in ``z`` (0 = lowest), splitting where sorted heights jump by > ``gap`` Å."""
    order = np.argsort(z, kind="stable")
    jumps = np.concatenate([[0], np.cumsum(np.diff(z[order]) > gap)])
    layers = np.empty(len(z), dtype=np.int64)
    layers[order] = jumps
    return layers


def build_slab(surface: str, lattice_constant: float) -> Slab:
    """The ideal 3x3, 6-layer Cu(``surface``) slab for fcc lattice constant ``lattice_constant`` (Å).

    For (211) the cell is one step period (three atomic rows) by three atoms along the step,
    6.33 x 7.75 Å at a = 3.6528 Å, 54 atoms, as in the authors' ``cu211_0K.in``; its six
    "layers" are six terraces of 9 atoms (18 (211) planes of 3 atoms).
    """
    if surface not in FACETS:
        raise ValueError(f"unknown surface {surface!r}; allowed: {', '.join(FACETS)}")
    a = float(lattice_constant)
    atoms = _BUILDERS[surface]("Cu", size=(*SURFACE_REPEATS, N_LAYERS), a=a)
    atoms = atoms[np.argsort(atoms.positions[:, 2].round(8), kind="stable")]
    atoms.positions[:, 2] -= atoms.positions[:, 2].min()
    top = atoms.positions[:, 2].max()
    atoms.cell[2] = [0.0, 0.0, top + VACUUM_ABOVE_TOP_LAYER]
    atoms.pbc = (True, True, False)
    atoms.set_tags(0)

    n_fixed = len(atoms) * N_FIXED_LAYERS // N_LAYERS
    z = atoms.positions[:, 2]
    if z[n_fixed] - z[n_fixed - 1] < LAYER_GAP:
        raise AssertionError(f"fixed/mobile boundary of Cu({surface}) cuts through a layer")
    fixed = np.zeros(len(atoms), dtype=bool)
    fixed[:n_fixed] = True
    atoms.set_constraint(FixAtoms(mask=fixed))

    layers = layer_index(z)
    top_layer = np.flatnonzero(layers == layers.max())
    return Slab(atoms, fixed, top_layer, surface, a)


def lattice_constant_0K(model: ForceModel, a_min: float = 3.2, a_max: float = 4.2, n_scan: int = 21) -> float:
    """The model's static fcc Cu lattice constant (Å): minimum of E(a) for a periodic 4-atom cubic cell.

    A coarse scan over [a_min, a_max] (one model call per lattice constant: the cell is part
    of the shared Frame, so different a cannot share a batch) brackets the minimum, which
    Brent's method then locates to 1e-7 Å.
    """
    reference = bulk("Cu", "fcc", a=1.0, cubic=True)
    scaled = torch.tensor(reference.positions, dtype=torch.float64)

    def energy(a: float) -> float:
        frame = Frame(reference.numbers, reference.cell.array * a, (True, True, True))
        return float(model(frame, (scaled * a)[None], compute_forces=False).energies[0])

    grid = np.linspace(a_min, a_max, n_scan)
    energies = np.array([energy(a) for a in grid])
    i = int(np.argmin(energies))
    if i in (0, n_scan - 1):
        raise ValueError(f"no energy minimum of fcc Cu within [{a_min}, {a_max}] Å")
    result = minimize_scalar(energy, bracket=(grid[i - 1], grid[i], grid[i + 1]), tol=1e-9)
    return float(result.x)


# Thermal expansion of copper.
#
# Linear expansion coefficient of copper SRM 736 (NIST), T. A. Hahn, "Thermal expansion of
# copper from 20 to 800 K - Standard Reference Material 736", J. Appl. Phys. 41, 5096 (1970);
# the certified fit to those measurements is NIST StRD nonlinear-regression data set "Hahn1"
# (rational function, certified parameters below), alpha in 1e-6/K:
#     alpha(T) = (b1 + b2 T + b3 T^2 + b4 T^3) / (1 + b5 T + b6 T^2 + b7 T^3).
# L(T)/L(0) = exp(integral_0^T alpha dT'). The data span 20-800 K; below 20 K the expansion
# of Cu (< 1e-6 relative) is neglected, above 800 K the fit is extrapolated up to the melting
# point. The extrapolation agrees with the independent fit of NASA CR-134806 (Fig. 21) to
# within 0.02 % in dL/L up to 1200 K and 0.04 % at 1358 K (< 0.0015 Å in a).
# Resulting recommended values, dL/L relative to 293.15 K, in %:
#     T/K    0       100     200     400    600    800    925    1000   1200   1358
#          -0.325  -0.282  -0.149   0.183  0.550  0.946  1.213  1.380  1.868  2.311
# (Touloukian et al., Thermophysical Properties of Matter vol. 12 (1975), give -0.32 % at 0 K.)
_HAHN1 = (
    1.0776351733e00,
    -1.2269296921e-01,
    4.0863750610e-03,
    -1.4262662514e-06,
    -5.7609940901e-03,
    2.4053735503e-04,
    -1.2314450199e-07,
)
_EXPANSION_DATA_FROM = 20.0
CU_MELTING_POINT = 1357.77
"""K."""


def cu_expansion_coefficient(temperature: float) -> float:
    """Linear thermal expansion coefficient of Cu (NIST SRM 736 fit), 1/K."""
    b1, b2, b3, b4, b5, b6, b7 = _HAHN1
    t = temperature
    return 1e-6 * (b1 + t * (b2 + t * (b3 + t * b4))) / (1.0 + t * (b5 + t * (b6 + t * b7)))


def thermal_expansion_factor(temperature: float) -> float:
    """a(T)/a(0 K) of Cu from experiment (see the data notes above this function); T in K."""
    t = float(temperature)
    if not 0.0 < t <= CU_MELTING_POINT:
        raise ValueError(f"temperature {t} K outside (0, {CU_MELTING_POINT}] K covered by Cu expansion data")
    if t <= _EXPANSION_DATA_FROM:
        return 1.0
    log_expansion, _ = quad(cu_expansion_coefficient, _EXPANSION_DATA_FROM, t, epsabs=1e-12, epsrel=1e-10)
    return float(np.exp(log_expansion))


def lattice_constant(model: ForceModel, temperature: float) -> float:
    """Lattice constant (Å) for a slab at ``temperature`` (K): the model's 0 K value times Cu's experimental a(T)/a(0)."""
    return lattice_constant_0K(model) * thermal_expansion_factor(temperature)
