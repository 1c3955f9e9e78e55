"""The free-atom electron densities of pyscatter's LDFA independent-atom approximation
(``pyscatter/data/free_atom_density.json``): one all-electron, spherically averaged Kohn-Sham atom per metal.

PySCF (``pyscf.scf.atom_ks.get_atm_nrks``: restricted Kohn-Sham with fractional occupations averaged over each
shell, ground-state configuration of ``pyscf.data.elements``), PBE, non-relativistic, all-electron Gaussian basis
``BASIS``. The density is averaged over a 302-point Lebedev sphere at each radius of a logarithmic grid and cut where
it falls below ``pyscatter.models.friction.RHO_FREE`` (there the LDFA friction is zero). Regenerate with

    pip install -e ".[friction-data]" && python benchmarks/free_atom_density.py [--metals Cu Ag ...]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from ase.data import atomic_numbers
from ase.units import Bohr

from pyscatter.models.friction import RHO_FREE

BASIS = {"Cu": "def2-qzvppd", "Ni": "def2-qzvppd", "Al": "def2-qzvppd"}
"""All-electron basis per metal (def2 is all-electron up to Kr; the 4d/5d metals would need an ECP there)."""
OUT = Path(__file__).resolve().parents[1] / "pyscatter" / "data" / "free_atom_density.json"
GRID = np.geomspace(1e-4, 12.0, 1200)  # Å


def spherical_density(metal: str) -> tuple[np.ndarray, float, str]:
    """Spherically averaged density (e/bohr³) on :data:`GRID`, the total energy (Hartree) and the pyscf version."""
    import pyscf
    from pyscf import dft, gto
    from pyscf.scf import atom_ks

    z = atomic_numbers[metal]
    mol = gto.M(atom=f"{metal} 0 0 0", basis=BASIS[metal], spin=z % 2, verbose=0)
    energy, _, coefficients, occupations = atom_ks.get_atm_nrks(mol, xc="pbe")[metal]
    dm = (coefficients * occupations) @ coefficients.T
    sphere = dft.gen_grid.MakeAngularGrid(302)  # unit vectors and weights summing to 4π
    rho = np.empty(len(GRID))
    for i, r in enumerate(GRID):
        ao = dft.numint.eval_ao(mol, sphere[:, :3] * (r / Bohr))
        rho[i] = dft.numint.eval_rho(mol, ao, dm) @ sphere[:, 3] / sphere[:, 3].sum()
    return rho, float(energy), pyscf.__version__


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metals", nargs="+", default=sorted(BASIS))
    args = parser.parse_args()
    table = json.loads(OUT.read_text()) if OUT.is_file() else {"metals": {}}
    for metal in args.metals:
        rho, energy, version = spherical_density(metal)
        keep = int(np.nonzero(rho >= RHO_FREE)[0][-1]) + 1
        r, rho = GRID[:keep], rho[:keep]
        shells = 4 * math.pi * np.trapezoid(r**2 * rho, r) / Bohr**3
        table["metals"][metal] = {
            "Z": atomic_numbers[metal], "electrons_in_table": round(float(shells), 6),
            "cutoff_radius": float(r[-1]), "total_energy_hartree": energy,
            "provenance": f"pyscf {version} atom_ks.get_atm_nrks, PBE, non-relativistic, basis {BASIS[metal]}, "
                          "spherically averaged (302-point Lebedev), all electrons",
            "r": [float(x) for x in r], "rho": [float(f"{x:.6g}") for x in rho],
        }
        print(f"{metal}: {shells:.5f} electrons within {r[-1]:.3f} Å, E = {energy:.6f} Ha")
    table["units"] = "r: Å; rho: electrons/bohr³ (atomic units, as cube files hold densities)"
    table["command"] = "python benchmarks/free_atom_density.py"
    table["metals"] = dict(sorted(table["metals"].items()))
    OUT.write_text(json.dumps(table, indent=1) + "\n")


if __name__ == "__main__":
    main()
