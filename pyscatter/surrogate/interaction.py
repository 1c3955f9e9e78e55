"""Stage 1b: teacher data on the molecule-surface interaction energy, the potential that decides sticking.

A structure and its copy with the molecule lifted out of range of every Cu atom differ in energy by exactly
the interaction energy, free of any error of the thermal slab or of the free molecule. Stage 1b,
:func:`approach`, writes such pairs (row 2k a structure, row 2k + 1 its lifted copy, both labelled by the teacher)
of H2 over the thermal slabs of stage 1 on the molecule's way in, out to where it leaves the cutoff: the
trajectories are recorded from ``initial_height`` only, but the engine starts the molecule at 7 Å.
``approach/<facet>_<T>K.npz``; ``held_out`` (M,) bool marks the pairs kept out of the fit. Å, eV, eV/Å.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from pyscatter.conditions import FACETS
from pyscatter.initial.surface import build_slab
from pyscatter.models.base import ForceModel, Frame
from pyscatter.surrogate.frames import label, save_npz, teacher_lattice_constant
from pyscatter.surrogate.settings import Progress, SurrogateSettings

APPROACH = "approach"
"""Folder of a build directory holding the :func:`approach` pairs."""
APPROACH_BONDS = (0.6, 0.95)
"""Bond lengths (Å) of the molecules of :func:`approach`: about the classical turning points of H2 v = 1."""


def lifted(positions: np.ndarray, numbers: np.ndarray, clearance: float) -> np.ndarray:
    """Copies of ``positions`` (M, N, 3) Å with the H atoms moved up together until the lowest is ``clearance`` (Å)
    above the highest Cu atom (unchanged where they already are)."""
    h = numbers == 1
    rise = np.maximum(0.0, positions[:, ~h, 2].max(axis=1) + clearance - positions[:, h, 2].min(axis=1))
    out = positions.copy()
    out[:, h, 2] += rise[:, None]
    return out


def approach(directory: Path, teacher: ForceModel, settings: SurrogateSettings, progress: Progress) -> None:
    """Stage 1b: ``approach_frames`` pairs per facet and surface temperature of H2 over the thermal slabs of stage 1.

    Structure k: thermal snapshot k (in turn), the molecule's centre of mass at a uniformly random point of
    the cell ``approach_heights`` (Å, low to high) above the top layer, a uniform orientation and a bond
    length uniform in ``APPROACH_BONDS``. Pairs with k % 4 == 3 are held out.
    """
    from pyscatter.initial.thermal import ThermalSnapshots

    if settings.approach_frames == 0:
        return
    (directory / APPROACH).mkdir(exist_ok=True)
    for facet, temperature in [(f, t) for f in settings.facets for t in settings.temperatures]:
        name = f"Cu{facet}_{temperature:g}K"
        path = directory / APPROACH / f"{name}.npz"
        if path.exists():
            continue
        started = time.perf_counter()
        snapshots = ThermalSnapshots.load(directory / "thermal" / f"{name}.npz").positions
        slab = build_slab(facet, teacher_lattice_constant(directory, teacher, temperature))
        cell = slab.atoms.cell.array
        rng = np.random.default_rng([settings.seed, FACETS.index(facet), round(temperature)])
        n = settings.approach_frames
        axis = rng.normal(size=(n, 3))
        axis /= np.linalg.norm(axis, axis=1, keepdims=True)
        bond = rng.uniform(*APPROACH_BONDS, n)
        lateral = rng.random((n, 2)) @ cell[:2, :2]
        height = rng.uniform(*settings.approach_heights, n)
        cu = snapshots[np.arange(n) % len(snapshots)]
        com = np.column_stack([lateral, cu[:, slab.top_layer, 2].mean(axis=1) + height])
        near = np.concatenate([cu, com[:, None] + (0.5 * bond)[:, None, None] * np.stack([-axis, axis], axis=1)], axis=1)
        numbers = np.concatenate([slab.atoms.numbers, [1, 1]])
        far = lifted(near, numbers, max(settings.cutoff, float(teacher.cutoff)) + 1.0)
        positions = np.stack([near, far], axis=1).reshape(2 * n, *near.shape[1:])
        energies, forces = label(teacher, Frame(numbers, cell, (True, True, False)), positions, settings.batch_size)
        save_npz(path, positions=positions, energies=energies, forces=forces, numbers=numbers, cell=cell,
                 top_height=slab.top_layer_height, facet=facet, held_out=np.repeat(np.arange(n) % 4 == 3, 2))
        progress(f"approach {name}: {n} teacher-labelled pairs, {time.perf_counter() - started:.0f} s")
