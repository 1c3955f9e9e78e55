"""Write ``tests/data/ace_kernel_reference.npz``: energies (eV) and forces (eV/Å) of the shipped ``h2cu-ace``
and of member-by-member ``h2cu-ace-committee`` from the compiled kernel as it was at commit 7337d5e, before
the kernel's restructuring (issue 33), on structures the engine meets:

- per facet (Cu(111), (100), (110), (211), the authors' 0 K slabs with 0.05 Å thermal noise), one batch of 12:
  H2 at random sites and orientations 0.9 to 4 Å above the top layer (bonds 0.7 to 1.1 Å), H2 far away,
  dissociated H atoms at 1.0 to 1.6 Å from a top-layer Cu atom, and H atoms more than 5 Å apart
  (H without H neighbours);
- the authors' thermal 925 K Cu(111) and Cu(211) slabs with H2 from 7 Å down to 1 Å (a trajectory's approach);
- committee: every member on the first four Cu(111) structures.

Run from the repository root with the old kernel (``git worktree add ../old 7337d5e``)::

    PYTHONPATH=. python tests/data/make_ace_kernel_reference.py

Read by ``tests/test_ace_kernel_reference.py``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import ase.io
import numpy as np
import torch

from pyscatter.models import load_model
from pyscatter.models.base import Frame

ROOT = Path(__file__).resolve().parents[2]
STRUCTURES = ROOT.parent / "shared" / "structures"
OUT = Path(__file__).with_name("ace_kernel_reference.npz")
FACETS = ("111", "100", "110", "211")


def read(name: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ase's FHI-aims reader
        return ase.io.read(STRUCTURES / name)


def random_unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def facet_batch(facet: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Atomic numbers, cell (Å) and 12 positions (12, 56, 3) Å of H2/H + H over a noisy 0 K slab."""
    slab = read(f"cu{facet}_0K.in")
    cell = slab.cell.array
    top = slab.positions[:, 2].max()
    top_atoms = np.flatnonzero(slab.positions[:, 2] > top - 0.3)
    batch = []
    for k in range(12):
        cu = slab.positions + rng.normal(0.0, 0.05, slab.positions.shape)
        site = rng.uniform(0, 1, 2) @ cell[:2, :2]
        if k < 6:  # H2 at a random site, height and orientation
            height = (0.9, 1.3, 1.7, 2.2, 3.0, 4.0)[k]
            centre = np.array([*site, top + height])
            half = 0.5 * rng.uniform(0.7, 1.1) * random_unit(rng)
            h = [centre - half, centre + half]
        elif k == 6:  # H2 far from the surface: Cu atoms without H neighbours everywhere
            centre = np.array([*site, top + 7.0])
            h = [centre - [0, 0, 0.37], centre + [0, 0, 0.37]]
        elif k < 10:  # dissociated: each H 1.0-1.6 Å from a top-layer Cu atom, the two 2-4 Å apart
            a, b = rng.choice(top_atoms, 2, replace=False)
            h = [cu[a] + rng.uniform(1.0, 1.6) * np.array([0.3, 0.2, 1.0]) / np.linalg.norm([0.3, 0.2, 1.0]),
                 cu[b] + rng.uniform(1.0, 1.6) * random_unit(rng) * [1, 1, np.sign(rng.normal()) or 1]]
            h[1][2] = max(h[1][2], cu[b][2] + 0.8)
        else:  # H atoms more than 5 Å apart (no H neighbour), one 1.0 Å above a Cu atom
            a = rng.choice(top_atoms)
            first = cu[a] + [0.0, 0.0, 1.0]
            second = first + [0.0, 0.0, 5.5 + k - 10]
            h = [first, second]
        batch.append(np.concatenate([cu, np.array(h)]))
    numbers = np.concatenate([slab.numbers, [1, 1]])
    return numbers, cell, np.array(batch)


def approach_batch(facet: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The authors' 925 K slab with its H2 moved from 7 Å down to 1 Å above the top layer (8 structures)."""
    atoms = read(f"cu{facet}_h7.0_full_925K.in")
    hydrogen = np.flatnonzero(atoms.numbers == 1)
    top = atoms.positions[atoms.numbers == 29, 2].max()
    heights = np.linspace(7.0, 1.0, 8)
    x = np.repeat(atoms.positions[None], len(heights), axis=0)
    for k, height in enumerate(heights):
        x[k, hydrogen, 2] += height - (atoms.positions[hydrogen, 2].mean() - top)
    return atoms.numbers, atoms.cell.array, x


def evaluate(model, numbers, cell, x):
    frame = Frame(numbers, cell, (True, True, False))
    out = model(frame, torch.as_tensor(x))
    return out.energies.numpy(), out.forces.numpy()


def main() -> None:
    rng = np.random.default_rng(33)
    model = load_model("h2cu-ace")
    arrays = {}
    groups = [(f"facet{f}", *facet_batch(f, rng)) for f in FACETS]
    groups += [(f"approach{f}", *approach_batch(f)) for f in ("111", "211")]
    for name, numbers, cell, x in groups:
        energies, forces = evaluate(model, numbers, cell, x)
        arrays |= {f"{name}_numbers": numbers, f"{name}_cell": cell, f"{name}_positions": x,
                   f"{name}_energies": energies, f"{name}_forces": forces}
    committee = load_model("h2cu-ace-committee")
    numbers, cell, x = groups[0][1], groups[0][2], groups[0][3][:4]
    out = committee.committee_energies_forces(Frame(numbers, cell, (True, True, False)), torch.as_tensor(x))
    arrays |= {"committee_energies": out.energies.numpy(), "committee_forces": out.forces.numpy()}
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
