"""Stages 1b and 1c: teacher data where the recorded trajectories do not go, H placed on the thermal slabs of stage 1.

Stage 1b, :func:`approach`: the molecule-surface interaction energy on the way in. A structure and its copy
with the molecule lifted out of range of every Cu atom differ in energy by exactly the interaction energy,
free of any error of the thermal slab or of the free molecule. The pairs (row 2k a structure, row 2k + 1 its
lifted copy) hold H2 over the slab out to where it leaves the cutoff: the trajectories are recorded from
``initial_height`` only, but the engine starts the molecule at 7 Å. ``approach/<facet>_<T>K.npz``.

Stage 1c, :func:`atoms`: two separate H atoms in and on the slab, down to ``atom_depth`` below the top layer.
Trajectories stop at the dissociation distance, so lone H atoms and H under the top layer never appear in
their frames; without them a fit extrapolates there: the first two h2cu-ace models had wells 16-28 eV deep
about 2 Å under the top layer of every facet, which minimisations after dissociation fell into.
``atoms/<facet>_<T>K.npz``.

Both files: ``held_out`` (M,) bool marks the structures kept out of the fit. Å, eV, eV/Å.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from pyscatter.conditions import FACETS
from pyscatter.engine.geometry import minimum_image
from pyscatter.initial.surface import Slab, build_slab
from pyscatter.models.base import ForceModel, Frame
from pyscatter.surrogate.frames import label, save_npz, teacher_lattice_constant
from pyscatter.surrogate.settings import Progress, SurrogateSettings

APPROACH = "approach"
"""Folder of a build directory holding the :func:`approach` pairs."""
APPROACH_BONDS = (0.6, 0.95)
"""Bond lengths (Å) of the molecules of :func:`approach`: about the classical turning points of H2 v = 1."""
ATOMS = "atoms"
"""Folder of a build directory holding the :func:`atoms` structures."""
ATOM_CLEARANCE = 1.4
"""Shortest H-Cu distance (Å, minimum image) of an :func:`atoms` H atom; the bulk's tetrahedral site is at 1.58 Å."""
ATOM_HEIGHT = 2.0
"""Highest an :func:`atoms` H atom is placed above the top layer, Å."""
ATOM_SEPARATION = 2.25
"""Shortest H-H distance (Å, minimum image) of an :func:`atoms` structure: the README's dissociation distance."""

Placement = Callable[[np.random.Generator, np.ndarray, Slab, np.ndarray, int], tuple[np.ndarray, np.ndarray]]
"""(rng, thermal slab positions (S, N_Cu, 3) Å, ideal slab, atomic numbers of the structure (N_Cu + 2,), count)
-> (positions (M, N_Cu + 2, 3) Å, held_out (M,))."""


def lifted(positions: np.ndarray, numbers: np.ndarray, clearance: float) -> np.ndarray:
    """Copies of ``positions`` (M, N, 3) Å with the H atoms moved up together until the lowest is ``clearance`` (Å)
    above the highest Cu atom (unchanged where they already are)."""
    h = numbers == 1
    rise = np.maximum(0.0, positions[:, ~h, 2].max(axis=1) + clearance - positions[:, h, 2].min(axis=1))
    out = positions.copy()
    out[:, h, 2] += rise[:, None]
    return out


def _on_thermal_slabs(directory: Path, teacher: ForceModel, settings: SurrogateSettings, folder: str, count: int,
                      place: Placement, what: str, progress: Progress) -> None:
    """``place`` ``count`` structures per facet and surface temperature on its thermal slabs of stage 1, label them
    with the teacher and write ``folder/<facet>_<T>K.npz`` (skipped where present)."""
    from pyscatter.initial.thermal import ThermalSnapshots

    if count == 0:
        return
    (directory / folder).mkdir(exist_ok=True)
    for facet, temperature in [(f, t) for f in settings.facets for t in settings.temperatures]:
        name = f"Cu{facet}_{temperature:g}K"
        path = directory / folder / f"{name}.npz"
        if path.exists():
            continue
        started = time.perf_counter()
        snapshots = ThermalSnapshots.load(directory / "thermal" / f"{name}.npz").positions
        slab = build_slab(facet, teacher_lattice_constant(directory, teacher, temperature))
        rng = np.random.default_rng([settings.seed, FACETS.index(facet), round(temperature)])
        numbers = np.concatenate([slab.atoms.numbers, [1, 1]])
        positions, held_out = place(rng, snapshots, slab, numbers, count)
        cell = slab.atoms.cell.array
        energies, forces = label(teacher, Frame(numbers, cell, (True, True, False)), positions, settings.batch_size)
        save_npz(path, positions=positions, energies=energies, forces=forces, numbers=numbers, cell=cell,
                 top_height=slab.top_layer_height, facet=facet, held_out=held_out)
        progress(f"{folder} {name}: {len(positions)} teacher-labelled {what}, {time.perf_counter() - started:.0f} s")


def approach(directory: Path, teacher: ForceModel, settings: SurrogateSettings, progress: Progress) -> None:
    """Stage 1b: ``approach_frames`` pairs per facet and surface temperature of H2 over the thermal slabs of stage 1.

    Structure k: thermal snapshot k (in turn), the molecule's centre of mass at a uniformly random point of
    the cell ``approach_heights`` (Å, low to high) above the top layer, a uniform orientation and a bond
    length uniform in ``APPROACH_BONDS``. Pairs with k % 4 == 3 are held out.
    """
    clearance = max(settings.cutoff, float(teacher.cutoff)) + 1.0

    def place(rng, snapshots, slab, numbers, n):
        cell = slab.atoms.cell.array
        axis = rng.normal(size=(n, 3))
        axis /= np.linalg.norm(axis, axis=1, keepdims=True)
        bond = rng.uniform(*APPROACH_BONDS, n)
        lateral = rng.random((n, 2)) @ cell[:2, :2]
        height = rng.uniform(*settings.approach_heights, n)
        cu = snapshots[np.arange(n) % len(snapshots)]
        com = np.column_stack([lateral, cu[:, slab.top_layer, 2].mean(axis=1) + height])
        near = np.concatenate([cu, com[:, None] + (0.5 * bond)[:, None, None] * np.stack([-axis, axis], axis=1)], axis=1)
        far = lifted(near, numbers, clearance)
        return np.stack([near, far], axis=1).reshape(2 * n, *near.shape[1:]), np.repeat(np.arange(n) % 4 == 3, 2)

    _on_thermal_slabs(directory, teacher, settings, APPROACH, settings.approach_frames, place, "structures (in pairs)", progress)


def _distances(vectors: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Minimum-image lengths (Å) of ``vectors`` (..., 3) Å in the surface plane (exact below half a cell height)."""
    return minimum_image(torch.as_tensor(vectors), torch.as_tensor(cell), (True, True, False)).norm(dim=-1).numpy()


def atoms(directory: Path, teacher: ForceModel, settings: SurrogateSettings, progress: Progress) -> None:
    """Stage 1c: ``atom_frames`` structures per facet and surface temperature of two separate H atoms on the thermal
    slabs of stage 1.

    Structure k: thermal snapshot k (in turn), each H atom at a uniformly random point of the cell between
    ``atom_depth`` (Å) below and ``ATOM_HEIGHT`` above the top layer, at least ``ATOM_CLEARANCE`` from every Cu
    atom and ``ATOM_SEPARATION`` from the other H atom (rejection sampling). Structures with k % 4 == 3 are held out.
    """

    def place(rng, snapshots, slab, numbers, n):
        cell = slab.atoms.cell.array
        out = []
        for k in range(n):
            cu = snapshots[k % len(snapshots)]
            top = cu[slab.top_layer, 2].mean()
            h: list[np.ndarray] = []
            while len(h) < 2:
                candidates = np.column_stack([rng.random((4096, 2)) @ cell[:2, :2],
                                              top + rng.uniform(-settings.atom_depth, ATOM_HEIGHT, 4096)])
                clear = _distances(candidates[:, None] - cu[None], cell).min(axis=1) >= ATOM_CLEARANCE
                for point in candidates[clear]:
                    if not h or _distances(point - h[0], cell) >= ATOM_SEPARATION:
                        h.append(point)
                    if len(h) == 2:
                        break
            out.append(np.concatenate([cu, h]))
        return np.array(out), np.arange(n) % 4 == 3

    _on_thermal_slabs(directory, teacher, settings, ATOMS, settings.atom_frames, place, "structures", progress)
