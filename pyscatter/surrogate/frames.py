"""Files of a build directory: teacher-labelled frames, written atomically, read back as :class:`Frames` or ASE Atoms.

Also the teacher's labels of given structures (:func:`label`) and its cached lattice constants
(``lattice.json``). Positions Å, energies eV, forces eV/Å.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pyscatter.initial.surface import lattice_constant
from pyscatter.models.base import ForceModel, Frame

def teacher_lattice_constant(directory: Path, teacher: ForceModel, temperature: float) -> float:
    """The teacher's lattice constant at ``temperature`` (K), Å, cached in ``lattice.json``."""
    path = directory / "lattice.json"
    table = json.loads(path.read_text()) if path.exists() else {}
    key = f"{temperature:g}"
    if key not in table:
        table[key] = lattice_constant(teacher, temperature)
        path.write_text(json.dumps(table, indent=1))
    return float(table[key])


def save_npz(path: Path, **arrays) -> None:
    partial = path.with_suffix(".partial.npz")
    np.savez(partial, **arrays)
    partial.replace(path)


@dataclass
class Frames:
    """Labelled structures of one frame layout: positions (M, N, 3) Å, energies (M,) eV, forces (M, N, 3) eV/Å."""

    numbers: np.ndarray
    cell: np.ndarray
    positions: np.ndarray
    energies: np.ndarray
    forces: np.ndarray
    top_height: np.ndarray  # (M,) Å, mean top-layer height of the ideal slab
    source: list[str] = field(default_factory=list)  # (M,) condition name
    held_out: np.ndarray | None = None  # (M,) bool, rows kept out of the fit, where the file says so


def load_frames(directory: Path, folder: str = "frames") -> list[Frames]:
    """All frames in ``directory/folder``, one :class:`Frames` per file (sorted by name)."""
    out = []
    for path in sorted((directory / folder).glob("*.npz")):
        if path.name.endswith(".partial.npz"):
            continue
        with np.load(path) as z:
            m = len(z["energies"])
            out.append(Frames(z["numbers"], z["cell"], z["positions"], z["energies"], z["forces"],
                              np.full(m, float(z["top_height"])), [path.stem] * m,
                              z["held_out"].copy() if "held_out" in z else None))
    return out



def pick(frames: list[Frames], indices: np.ndarray) -> list:
    """ASE Atoms (with energy and forces in info/arrays) of global frame ``indices``."""
    from ase import Atoms

    offsets = np.cumsum([0] + [len(f.energies) for f in frames])
    out = []
    for g in indices:
        k = int(np.searchsorted(offsets, g, side="right") - 1)
        f, i = frames[k], int(g - offsets[k])
        atoms = Atoms(numbers=f.numbers, positions=f.positions[i], cell=f.cell, pbc=(True, True, False))
        atoms.info.update(energy=float(f.energies[i]), top_height=float(f.top_height[i]), source=f.source[i])
        atoms.arrays["forces"] = f.forces[i].copy()
        out.append(atoms)
    return out



def load_mep_samples(directory: Path, facet: str) -> tuple[Frames, np.ndarray]:
    """The displaced MEP copies of ``facet`` and their held-out flags (M,)."""
    with np.load(directory / f"mep_samples_Cu{facet}.npz") as z:
        m = len(z["energies"])
        frames = Frames(z["numbers"], z["cell"], z["positions"], z["energies"], z["forces"],
                        np.full(m, float(z["top_height"])), [f"mep_Cu{facet}"] * m)
        return frames, z["held_out"].copy()


def load_neb(directory: Path, facet: str) -> Frames:
    with np.load(directory / f"neb_Cu{facet}.npz") as z:
        m = len(z["energies"])
        return Frames(z["numbers"], z["cell"], z["positions"], z["energies"], z["forces"], np.full(m, float(z["top_height"])), [f"neb_Cu{facet}"] * m)


def label(model: ForceModel, frame: Frame, positions: np.ndarray, batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Energies (M,) eV and forces (M, N, 3) eV/Å of ``positions`` (M, N, 3) Å in one ``frame``, ``batch_size`` per call."""
    energies, forces = np.empty(len(positions)), np.empty(positions.shape)
    for start in range(0, len(positions), batch_size):
        out = model(frame, torch.as_tensor(positions[start:start + batch_size], dtype=torch.float64))
        energies[start:start + batch_size] = out.energies.detach().cpu().numpy()
        forces[start:start + batch_size] = out.forces.detach().cpu().numpy()
    return energies, forces


