"""fcc metal slabs for the scattering simulations and the lattice constant they are built with.

Slabs follow Radova et al. (2025) / Stark et al. (2023): 3x3 surface cells, 6 layers, the
bottom two layers fixed, the bottom layer at z = 0 and 40 Å of vacuum above the ideal top
layer (the cell heights of the authors' ``cu{111,100,110,211}_0K.in``). Lengths are in Å.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms
from ase.geometry import get_distances
from ase.io import read
from ase.build import bulk, fcc100, fcc110, fcc111, fcc211
from ase.constraints import FixAtoms
from ase.data import atomic_numbers, reference_states
from scipy.integrate import quad
from scipy.optimize import minimize_scalar

from pyscatter.conditions import FACETS, METALS, RunSpec
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
    """An ideal (bulk-terminated) fcc metal slab.

    atoms: the metal only, pbc (True, True, False), FixAtoms on the fixed atoms; atoms are ordered by
        height, bottom first, so the fixed atoms come first.
    fixed: bool mask (N,), the bottom two of the six layers.
    top_layer: indices of the atoms of the outermost layer, found by z-clustering (atoms
        within ``LAYER_GAP`` of each other in height). On the flat facets this is the 3x3
        surface layer; on (211), whose (211) planes are only 0.75 Å apart, it is the row of
        step-edge atoms (3 atoms). The molecule's height is measured from their mean z.
    surface: facet, one of ``FACETS``.
    lattice_constant: fcc lattice constant the slab was built with, Å.
    metal: chemical symbol of the metal, one of ``METALS``.
    """

    atoms: Atoms
    fixed: np.ndarray
    top_layer: np.ndarray
    surface: str
    lattice_constant: float
    metal: str = "Cu"

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


def build_slab(surface: str, lattice_constant: float, metal: str = "Cu") -> Slab:
    """The ideal 3x3, 6-layer ``metal``(``surface``) slab for fcc lattice constant ``lattice_constant`` (Å).

    For (211) the cell is one step period (three atomic rows) by three atoms along the step,
    6.33 x 7.75 Å at a = 3.6528 Å, 54 atoms, as in the authors' ``cu211_0K.in``; its six
    "layers" are six terraces of 9 atoms (18 (211) planes of 3 atoms).
    """
    if surface not in FACETS:
        raise ValueError(f"unknown surface {surface!r}; allowed: {', '.join(FACETS)}")
    if metal not in METALS:
        raise ValueError(f"unknown metal {metal!r}; allowed: {', '.join(METALS)}")
    a = float(lattice_constant)
    atoms = _BUILDERS[surface](metal, size=(*SURFACE_REPEATS, N_LAYERS), a=a)
    atoms = atoms[np.argsort(atoms.positions[:, 2].round(8), kind="stable")]
    atoms.positions[:, 2] -= atoms.positions[:, 2].min()
    top = atoms.positions[:, 2].max()
    atoms.cell[2] = [0.0, 0.0, top + VACUUM_ABOVE_TOP_LAYER]
    atoms.pbc = (True, True, False)
    atoms.set_tags(0)

    n_fixed = len(atoms) * N_FIXED_LAYERS // N_LAYERS
    z = atoms.positions[:, 2]
    if z[n_fixed] - z[n_fixed - 1] < LAYER_GAP:
        raise AssertionError(f"fixed/mobile boundary of {metal}({surface}) cuts through a layer")
    fixed = np.zeros(len(atoms), dtype=bool)
    fixed[:n_fixed] = True
    atoms.set_constraint(FixAtoms(mask=fixed))

    layers = layer_index(z)
    top_layer = np.flatnonzero(layers == layers.max())
    return Slab(atoms, fixed, top_layer, surface, a, metal)


MIN_VACUUM = 10.0
"""Å: the least vacuum gap a slab file's periodic cell must leave above its slab."""


class SlabFileError(ValueError):
    """A slab file that cannot be used; the message is one line."""


def read_slab(path: str, metal: str, surface: str, fixed_layers: int | None = None) -> Slab:
    """The slab of an ASE-readable file (extxyz, FHI-aims ``.in``, POSCAR, cif, ...; its last image) as it is.

    It must be periodic along its first two cell vectors, which lie in the xy plane, with either no third
    cell vector or at least ``MIN_VACUUM`` Å of vacuum above the slab, and be mostly ``metal``. Fixed atoms:
    the bottom ``fixed_layers`` layers if given, else the file's ``FixAtoms`` constraint. As for built slabs,
    atoms are ordered by height, the bottom layer is put at z = 0, the cell is non-periodic along z with
    ``VACUUM_ABOVE_TOP_LAYER`` Å above the top layer, and the top layer is found by z-clustering.
    ``lattice_constant`` is the file's (:func:`_file_lattice_constant`).
    """
    try:
        atoms = read(path)
    except Exception as err:  # noqa: BLE001 - ASE raises many kinds for unreadable files
        raise SlabFileError(f"slab file {path}: cannot be read ({type(err).__name__}: {err})") from None
    cell = atoms.cell.array
    if not atoms.pbc[:2].all() or abs(cell[:2, 2]).max() > 1e-9 or np.linalg.norm(np.cross(cell[0], cell[1])) < 1e-6:
        raise SlabFileError(f"slab file {path} is not periodic in x and y (its first two cell vectors must be "
                            "periodic and lie in the xy plane)")
    z = atoms.positions[:, 2]
    vacuum = cell[2, 2] - np.ptp(z)
    if atoms.pbc[2] or cell[2].any():
        if vacuum < MIN_VACUUM:
            raise SlabFileError(f"slab file {path} has {vacuum:.1f} Å of vacuum above the slab along z (need at "
                                f"least {MIN_VACUUM:g} Å): it is not a slab")
    symbols = atoms.get_chemical_symbols()
    main = max(set(symbols), key=symbols.count)
    if main != metal:
        raise SlabFileError(f"slab file {path} is mostly {main}, not {metal}: set metal to {main}")
    fixed = _fixed_atoms(atoms, path, fixed_layers)
    order = np.argsort(z.round(8), kind="stable")
    atoms, fixed = atoms[order], fixed[order]
    atoms.set_constraint()
    atoms.positions[:, 2] -= atoms.positions[:, 2].min()
    atoms.cell[2] = [0.0, 0.0, atoms.positions[:, 2].max() + VACUUM_ABOVE_TOP_LAYER]
    atoms.pbc = (True, True, False)
    atoms.set_constraint(FixAtoms(mask=fixed))
    layers = layer_index(atoms.positions[:, 2])
    top_layer = np.flatnonzero(layers == layers.max())
    return Slab(atoms, fixed, top_layer, surface, _file_lattice_constant(atoms, metal), metal)


def _fixed_atoms(atoms: Atoms, path: str, fixed_layers: int | None) -> np.ndarray:
    """Mask (N,) of the bottom ``fixed_layers`` layers, else of the file's FixAtoms constraint."""
    fixed = np.zeros(len(atoms), dtype=bool)
    if fixed_layers is not None:
        layers = layer_index(atoms.positions[:, 2])
        if fixed_layers > layers.max():
            raise SlabFileError(f"slab file {path} has {layers.max() + 1} layers: cannot fix {fixed_layers} and "
                                "keep a mobile one")
        return layers < fixed_layers
    constraints = [c for c in atoms.constraints if isinstance(c, FixAtoms)]
    if not constraints:
        raise SlabFileError(f"slab file {path} has no FixAtoms constraint: give fixed_layers")
    for c in constraints:
        fixed[c.get_indices()] = True
    return fixed


def _file_lattice_constant(atoms: Atoms, metal: str) -> float:
    """A slab's fcc lattice constant (Å): √2 times the median distance of the nearest-neighbour pairs of its
    ``metal`` atoms within a layer (those within 1.2 times the shortest such distance: a/√2 along the close-packed
    rows of (111), (100), (110) and (211) layers; unlike distances between layers, kept on average by the lateral
    cell when the surface relaxes)."""
    xyz = atoms.positions[np.array(atoms.get_chemical_symbols()) == metal]
    _, d = get_distances(xyz, cell=atoms.cell, pbc=atoms.pbc)
    layers = layer_index(xyz[:, 2])
    d[(layers[:, None] != layers[None, :]) | np.eye(len(xyz), dtype=bool)] = np.inf
    return float(np.sqrt(2.0) * np.median(d[d < 1.2 * d.min()]))


def scaled_slab(slab: Slab, lattice_constant: float) -> Slab:
    """``slab`` scaled uniformly (positions and lateral cell) from its lattice constant to ``lattice_constant`` Å,
    the vacuum above its top layer kept."""
    atoms = slab.atoms.copy()
    vacuum = atoms.cell[2, 2] - atoms.positions[:, 2].max()
    atoms.set_cell(atoms.cell.array * (lattice_constant / slab.lattice_constant), scale_atoms=True)
    atoms.cell[2] = [0.0, 0.0, atoms.positions[:, 2].max() + vacuum]
    return Slab(atoms, slab.fixed, slab.top_layer, slab.surface, float(lattice_constant), slab.metal)


def run_slab(spec: RunSpec, lattice_constant: float, slab_file: str | None = None) -> Slab:
    """The slab of a run of ``spec`` at fcc lattice constant ``lattice_constant`` (Å): built of ``spec.metal`` with
    facet ``spec.surface``, or read from ``slab_file`` (default ``spec.slab``) and scaled to it."""
    if spec.slab is None:
        return build_slab(spec.surface, lattice_constant, spec.metal)
    slab = read_slab(slab_file or spec.slab, spec.metal, spec.surface, spec.fixed_layers)
    return scaled_slab(slab, lattice_constant)


def lattice_constant_0K(model: ForceModel, metal: str = "Cu", n_scan: int = 21) -> float:
    """The model's static fcc ``metal`` lattice constant (Å): minimum of E(a) for a periodic 4-atom cubic cell.

    A coarse scan over [a_ref - 0.4, a_ref + 0.6] Å (a_ref: ASE's reference value, the scan ends
    rounded to 0.1 Å; for Cu [3.2, 4.2] Å) with one model call per lattice constant (the cell is part
    of the shared Frame, so different a cannot share a batch) brackets the minimum, which Brent's
    method then locates to 1e-7 Å.
    """
    a_reference = reference_states[atomic_numbers[metal]]["a"]
    a_min, a_max = round(a_reference - 0.4, 1), round(a_reference + 0.6, 1)
    reference = bulk(metal, "fcc", a=1.0, cubic=True)
    scaled = torch.tensor(reference.positions, dtype=torch.float64)

    def energy(a: float) -> float:
        frame = Frame(reference.numbers, reference.cell.array * a, (True, True, True))
        return float(model(frame, (scaled * a)[None], compute_forces=False).energies[0])

    grid = np.linspace(a_min, a_max, n_scan)
    energies = np.array([energy(a) for a in grid])
    i = int(np.argmin(energies))
    if i in (0, n_scan - 1):
        raise ValueError(f"no energy minimum of fcc {metal} within [{a_min}, {a_max}] Å")
    result = minimize_scalar(energy, bracket=(grid[i - 1], grid[i], grid[i + 1]), tol=1e-9)
    return float(result.x)


# Thermal expansion of copper (for the other metals see DEBYE_EXPANSION below).
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


@dataclass(frozen=True)
class DebyeExpansion:
    """Recommended thermal-expansion data of an fcc metal other than Cu for the Debye-Grüneisen form.

    alpha_293: linear expansion coefficient at 293.15 K, 1/K.  debye_temperature: K.  melting_point: K.
    """

    alpha_293: float
    debye_temperature: float
    melting_point: float

    def factor(self, temperature: float) -> float:
        """a(T)/a(0 K) of the Debye-Grüneisen form (see the notes below); T in K."""
        per_energy = self.alpha_293 / debye_heat_capacity(_ROOM_TEMPERATURE, self.debye_temperature)
        return float(np.exp(per_energy * debye_thermal_energy(temperature, self.debye_temperature)))


# Thermal expansion of the other fcc metals: the Debye-Grüneisen (quasi-harmonic) form with a
# temperature-independent Grüneisen parameter, alpha(T) = alpha_293 C_D(T) / C_D(293.15 K), C_D the
# Debye heat capacity, so that ln(a(T)/a(0)) = alpha_293 U_D(T) / C_D(293.15 K), U_D(T) = integral_0^T
# C_D = 3 T (T/theta)^3 integral_0^(theta/T) x^3 / (e^x - 1) dx.
# Data: alpha at room temperature from the CRC Handbook of Chemistry and Physics (97th ed., "Thermal
# and physical properties of pure metals"; the same values as Touloukian et al., Thermophysical
# Properties of Matter vol. 12, 1975, at 293 K); Debye temperatures from C. Kittel, Introduction to
# Solid State Physics (8th ed.), Table 5.1; melting points from the CRC Handbook.
# Range of validity, measured on Cu (theta 343 K, alpha_293 16.5e-6/K) against its NIST SRM 736 data
# above: a(T) agrees to 0.003 % up to 400 K, 0.024 % at 600 K, 0.07 % at 800 K (0.6 of the melting
# point) and 0.11 % at 925 K; the form lacks the anharmonic and vacancy expansion of the last third
# below melting (0.43 % low at Cu's melting point). Use it up to about 0.6 of the melting point.
DEBYE_EXPANSION = {
    "Al": DebyeExpansion(23.1e-6, 428.0, 933.47),
    "Ni": DebyeExpansion(13.4e-6, 450.0, 1728.0),
    "Rh": DebyeExpansion(8.2e-6, 480.0, 2237.0),
    "Pd": DebyeExpansion(11.8e-6, 274.0, 1828.05),
    "Ag": DebyeExpansion(18.9e-6, 225.0, 1234.93),
    "Ir": DebyeExpansion(6.4e-6, 420.0, 2719.0),
    "Pt": DebyeExpansion(8.8e-6, 240.0, 2041.4),
    "Au": DebyeExpansion(14.2e-6, 165.0, 1337.33),
}
_ROOM_TEMPERATURE = 293.15
_X_NEGLIGIBLE = 100.0
"""hbar omega / kT beyond which the Debye integrands (~ x^4 e^-x) add nothing in float64."""


def debye_heat_capacity(temperature: float, debye_temperature: float) -> float:
    """The Debye heat capacity in units of its classical limit 3Nk (dimensionless); T in K."""
    x_max = debye_temperature / temperature
    integral, _ = quad(lambda x: x**4 * np.exp(-x) / np.expm1(-x) ** 2, 0.0, min(x_max, _X_NEGLIGIBLE),
                       epsabs=0.0, epsrel=1e-10)
    return 3.0 * integral / x_max**3


def debye_thermal_energy(temperature: float, debye_temperature: float) -> float:
    """The Debye thermal energy above 0 K in units of 3Nk, K: the integral of :func:`debye_heat_capacity` over T."""
    x_max = debye_temperature / temperature
    integral, _ = quad(lambda x: x**3 * np.exp(-x) / -np.expm1(-x), 0.0, min(x_max, _X_NEGLIGIBLE),
                       epsabs=0.0, epsrel=1e-10)
    return 3.0 * temperature * integral / x_max**3


def melting_point(metal: str) -> float:
    """Melting point of ``metal``, K."""
    return CU_MELTING_POINT if metal == "Cu" else DEBYE_EXPANSION[metal].melting_point


def thermal_expansion_factor(temperature: float, metal: str = "Cu") -> float:
    """a(T)/a(0 K) of ``metal`` from recommended data (see the notes above this function); T in K.

    Cu: the NIST SRM 736 fit; the other metals: the Debye-Grüneisen form (valid to about 0.6 of the melting point).
    """
    t = float(temperature)
    top = melting_point(metal)
    if not 0.0 < t <= top:
        raise ValueError(f"temperature {t} K outside (0, {top}] K covered by {metal} expansion data")
    if metal != "Cu":
        return DEBYE_EXPANSION[metal].factor(t)
    if t <= _EXPANSION_DATA_FROM:
        return 1.0
    log_expansion, _ = quad(cu_expansion_coefficient, _EXPANSION_DATA_FROM, t, epsabs=1e-12, epsrel=1e-10)
    return float(np.exp(log_expansion))


def lattice_constant(model: ForceModel, temperature: float, metal: str = "Cu") -> float:
    """Lattice constant (Å) of ``metal`` at ``temperature`` (K): the model's 0 K value times the metal's
    experimental a(T)/a(0)."""
    return lattice_constant_0K(model, metal) * thermal_expansion_factor(temperature, metal)
